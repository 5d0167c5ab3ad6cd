// Implementation pending (see manifests/result.hpp).
