// Free-space checks on the file system that will hold a download or a slot.
//
// The updater refuses to start writing when the bytes it still needs plus a reserve do not fit:
// a box whose disk fills up mid-update can no longer write its journal or its logs, which is
// worse than not updating at all.
//
// Thread safety: the functions are self-contained and thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>

#include "manifests/result.hpp"

namespace edgefleet::updater {

// Bytes available to an unprivileged writer (statvfs f_bavail * f_frsize) on the file system
// that holds `dir`. Fails with kIo naming the path and the errno text.
Result<std::uint64_t> FreeBytes(const std::filesystem::path& dir);

// Succeeds when `needed + reserve` bytes are free under `dir`. Fails with kIo naming the
// directory, free, needed and reserve (e.g. "/var/lib/edgefleet: not enough free disk: 1000 bytes
// free, 5000 needed + 100 reserve"), or with FreeBytes' error.
Status CheckFreeSpace(const std::filesystem::path& dir, std::uint64_t needed,
                      std::uint64_t reserve);

}  // namespace edgefleet::updater
