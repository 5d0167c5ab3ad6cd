// Implementation pending (see manifests/manifest.hpp).
