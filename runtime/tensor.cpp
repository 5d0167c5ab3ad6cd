// Implementation pending (see runtime/tensor.hpp).
