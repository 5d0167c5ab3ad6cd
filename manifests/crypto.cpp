// Implementation pending (see manifests/crypto.hpp).
