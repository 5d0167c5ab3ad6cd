// Implementation pending (see manifests/time.hpp).
