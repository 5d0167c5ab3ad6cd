// Implementation pending (see manifests/semver.hpp).
