// Implementation pending (see manifests/desired_state.hpp).
