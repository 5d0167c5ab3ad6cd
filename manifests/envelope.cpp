// Implementation pending (see manifests/envelope.hpp).
