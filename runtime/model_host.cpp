// Implementation pending (see runtime/model_host.hpp).
