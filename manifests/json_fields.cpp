// Implementation pending (see manifests/json_fields.hpp).
