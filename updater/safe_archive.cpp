// Implementation pending (see updater/safe_archive.hpp).
