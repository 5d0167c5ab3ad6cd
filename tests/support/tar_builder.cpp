// Implementation pending (see tar_builder.hpp).
