// Implementation pending (see runtime/preprocess.hpp).
