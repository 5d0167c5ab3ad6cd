// Implementation pending (see manifests/trust.hpp).
