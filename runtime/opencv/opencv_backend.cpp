// Implementation pending (see runtime/opencv/opencv_backend.hpp).
