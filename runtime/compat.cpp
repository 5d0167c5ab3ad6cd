// Implementation pending (see runtime/compat.hpp).
