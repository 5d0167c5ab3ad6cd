// Implementation pending (see manifests/canonical.hpp).
