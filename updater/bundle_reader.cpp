// Implementation pending (see updater/bundle_reader.hpp).
