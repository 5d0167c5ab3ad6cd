// Implementation pending (see runtime/parity.hpp).
