// The one copy of the small file helpers every module uses: a bounded whole-file read, and an
// atomic write (temp file beside the target, fsync, rename, directory fsync).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "manifests/result.hpp"

namespace edgefleet::manifests {

// The whole file, at most `max_bytes` of it: kLimit naming the path when it is larger, kIo
// naming the path when it cannot be opened or read.
Result<std::string> ReadSmallFile(const std::filesystem::path& path, std::size_t max_bytes);

// Writes `contents` to `path` so that readers see the old file or the new one, never a half:
// a temporary file in the same directory created with `mode` (so a private key is never
// readable by others, not even briefly), written, fsynced, renamed over `path`, and the
// directory fsynced. On failure the temporary file is removed and `path` is untouched; kIo
// names the path and the step that failed.
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view contents,
                           mode_t mode = 0644);

}  // namespace edgefleet::manifests
