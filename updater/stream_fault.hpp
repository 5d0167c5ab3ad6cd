// What the safe archive reader's own stream layers (decompress.hpp, tar_guard.hpp) found wrong
// with an archive's bytes. It is kept apart from the errors of the ByteSource they read from (a
// download's connection reset, a disk error), which pass through those layers unchanged; the
// reader turns a fault into the message the caller sees, adding the archive's name and where in
// the archive the fault sits.
//
// Thread safety: a plain value.
#pragma once

#include <optional>
#include <string>

#include "manifests/result.hpp"

namespace edgefleet::updater {

struct StreamFault {
  enum class Kind {
    kNotATar,       // empty, or another format (xz, zip, ...): `detail` says what it is
    kTruncated,     // the stream ends before the archive does
    kCorrupt,       // a damaged compressed stream or tar header
    kTrailingData,  // bytes after the end of the archive or of the compressed stream
    kRefused,       // an entry or header never accepted (sparse, unknown type, over a cap)
  };
  Kind kind = Kind::kCorrupt;
  ErrorCode code = ErrorCode::kIntegrity;
  std::string detail;                // e.g. "zstd: Corrupted block detected"
  std::optional<std::string> entry;  // the entry it concerns, raw, when known (kRefused)
  // Found at the very end of the compressed stream (zstd's frame checksum): the tar layer's
  // position then says nothing about where the damage is, since the decoder dropped the output
  // of the call that failed.
  bool at_stream_end = false;
};

}  // namespace edgefleet::updater
