#include "updater/decompress.hpp"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace edgefleet::updater {
namespace {

// libzstd's recommended input size is 128 KiB (ZSTD_DStreamInSize); zlib needs nothing special.
// Output goes straight into the caller's buffer, so this is the only buffer of this layer.
constexpr std::size_t kInputBytes = 128 * 1024;
// Enough to tell every format below apart.
constexpr std::size_t kMagicBytes = 6;

enum class Format { kUnknown, kPlain, kZstd, kGzip };

struct Magic {
  std::string_view bytes;
  const char* what;
};

// Formats people might mistake for a bundle; naming them beats "corrupt archive".
constexpr std::array kOtherFormats{
    Magic{std::string_view("\xFD\x37\x7A\x58\x5A\x00", 6), "an xz stream"},
    Magic{std::string_view("\x42\x5A\x68", 3), "a bzip2 stream"},
    Magic{std::string_view("\x50\x4B\x03\x04", 4), "a zip archive"},
    Magic{std::string_view("\x50\x4B\x05\x06", 4), "a zip archive"},
    Magic{std::string_view("\x50\x4B\x07\x08", 4), "a zip archive"},
    Magic{std::string_view("\x37\x7A\xBC\xAF\x27\x1C", 6), "a 7z archive"},
    Magic{std::string_view("\x04\x22\x4D\x18", 4), "an lz4 stream"},
    Magic{std::string_view("\x4C\x5A\x49\x50", 4), "an lzip stream"},
    Magic{std::string_view("\x1F\x9D", 2), "a compress (.Z) stream"},
};
constexpr std::string_view kZstdMagic("\x28\xB5\x2F\xFD", 4);
constexpr std::string_view kGzipMagic("\x1F\x8B", 2);

bool StartsWith(std::span<const std::byte> bytes, std::string_view magic) {
  return bytes.size() >= magic.size() && std::memcmp(bytes.data(), magic.data(), magic.size()) == 0;
}

std::string Hex(std::span<const std::byte> bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < 8; ++i) {
    char text[4];
    std::snprintf(text, sizeof text, "%s%02x", i == 0 ? "" : " ", static_cast<unsigned>(bytes[i]));
    out += text;
  }
  return out;
}

}  // namespace

struct DecompressingSource::Impl {
  explicit Impl(ByteSource& source) : inner(source), input(new std::byte[kInputBytes]) {}
  ~Impl() {
    if (zstd != nullptr) ZSTD_freeDCtx(zstd);
    if (gzip_ready) inflateEnd(&gzip);
  }

  ByteSource& inner;
  std::unique_ptr<std::byte[]> input;
  std::size_t in_pos = 0;
  std::size_t in_len = 0;
  std::uint64_t consumed = 0;  // compressed bytes taken from `inner` and used
  bool inner_eof = false;
  Format format = Format::kUnknown;
  ZSTD_DCtx* zstd = nullptr;
  z_stream gzip{};
  bool gzip_ready = false;
  bool stream_ended = false;         // the frame or member is complete
  std::optional<StreamFault> fault;  // once set, every later Read fails with it

  std::span<const std::byte> Unused() const { return {input.get() + in_pos, in_len - in_pos}; }

  Error Raise(StreamFault::Kind kind, std::string detail, ErrorCode code = ErrorCode::kIntegrity) {
    fault = StreamFault{kind, code, std::move(detail), std::nullopt, false};
    return Error{code, fault->detail};
  }

  // Reads more compressed input when all of it was used. Inner errors pass through unchanged.
  Status Refill() {
    if (in_pos < in_len || inner_eof) return Ok();
    in_pos = 0;
    in_len = 0;
    Result<std::size_t> n = inner.Read(std::span(input.get(), kInputBytes));
    if (!n) return n.error();
    if (*n > kInputBytes) return Fail(ErrorCode::kInternal, "byte source returned too much");
    in_len = *n;
    if (in_len == 0) inner_eof = true;
    return Ok();
  }

  Status Sniff() {
    while (in_len < kMagicBytes && !inner_eof) {
      Result<std::size_t> n = inner.Read(std::span(input.get() + in_len, kInputBytes - in_len));
      if (!n) return n.error();
      if (*n > kInputBytes - in_len) {
        return Fail(ErrorCode::kInternal, "byte source returned too much");
      }
      if (*n == 0) inner_eof = true;
      in_len += *n;
    }
    const std::span<const std::byte> head(input.get(), in_len);
    if (in_len == 0) return Raise(StreamFault::Kind::kNotATar, "is empty");
    for (const Magic& magic : kOtherFormats) {
      if (StartsWith(head, magic.bytes)) {
        return Raise(StreamFault::Kind::kNotATar,
                     std::string("is ") + magic.what + "; bundles are tar, tar+zstd or tar+gzip",
                     ErrorCode::kUnsupported);
      }
    }
    if (StartsWith(head, kZstdMagic)) {
      zstd = ZSTD_createDCtx();
      if (zstd == nullptr) return Fail(ErrorCode::kInternal, "cannot create a zstd decoder");
      const std::size_t rc = ZSTD_DCtx_setParameter(zstd, ZSTD_d_windowLogMax, kMaxZstdWindowLog);
      if (ZSTD_isError(rc)) {
        return Fail(ErrorCode::kInternal,
                    std::string("zstd: cannot limit the window: ") + ZSTD_getErrorName(rc));
      }
      format = Format::kZstd;
    } else if (StartsWith(head, kGzipMagic)) {
      // 16 + 15: a gzip wrapper (not zlib's), 32 KiB window, one member per inflate stream.
      if (inflateInit2(&gzip, 16 + MAX_WBITS) != Z_OK) {
        return Fail(ErrorCode::kInternal, "cannot create a gzip decoder");
      }
      gzip_ready = true;
      format = Format::kGzip;
    } else {
      format = Format::kPlain;
    }
    return Ok();
  }

  // After the frame or member: nothing may follow it.
  Result<std::size_t> AtStreamEnd() {
    EF_RETURN_IF_ERROR(Refill());
    if (in_pos == in_len) return std::size_t{0};  // the clean end
    const std::span<const std::byte> next = Unused();
    const bool zstd_format = format == Format::kZstd;
    std::string what;
    if (zstd_format && StartsWith(next, kZstdMagic)) {
      what = "a second zstd frame";
    } else if (zstd_format && next.size() >= 4 &&
               (static_cast<unsigned>(next[0]) & 0xF0u) == 0x50u &&
               StartsWith(next.subspan(1), std::string_view("\x2A\x4D\x18", 3))) {
      what = "a zstd skippable frame";
    } else if (!zstd_format && StartsWith(next, kGzipMagic)) {
      what = "a second gzip member";
    } else {
      what = "other bytes (" + Hex(next) + " ...)";
    }
    return Raise(StreamFault::Kind::kTrailingData,
                 std::string(zstd_format ? "the zstd frame" : "the gzip member") +
                     " ends at byte " + std::to_string(consumed) + " of the file and " + what +
                     " follows; a bundle is one " + (zstd_format ? "frame" : "member"));
  }

  // No byte offset: the decoders read ahead of the damage they report (zlib holds up to 8
  // bytes in its bit buffer), so any number would be a guess.
  Error Corrupt(std::string detail) {
    return Raise(StreamFault::Kind::kCorrupt, "in the compressed stream: " + std::move(detail));
  }

  Error Truncated() {
    return Raise(StreamFault::Kind::kTruncated,
                 std::string("the ") + (format == Format::kZstd ? "zstd frame" : "gzip member") +
                     " ends early, after " + std::to_string(consumed) + " bytes of the file");
  }

  // One call: fills `out` with at least one byte, or reaches the end, or fails.
  Result<std::size_t> Zstd(std::span<std::byte> out) {
    ZSTD_outBuffer output{out.data(), out.size(), 0};
    while (output.pos == 0) {
      if (stream_ended) return AtStreamEnd();
      EF_RETURN_IF_ERROR(Refill());
      ZSTD_inBuffer in{input.get(), in_len, in_pos};
      const std::size_t rc = ZSTD_decompressStream(zstd, &output, &in);
      consumed += in.pos - in_pos;
      in_pos = in.pos;
      if (ZSTD_isError(rc)) {
        if (ZSTD_getErrorCode(rc) == ZSTD_error_frameParameter_windowTooLarge) {
          return Raise(StreamFault::Kind::kRefused,
                       "the zstd frame needs a window over the " +
                           std::to_string((1u << kMaxZstdWindowLog) >> 20) +
                           " MiB limit (compress at level 19 or lower, without --long)",
                       ErrorCode::kLimit);
        }
        if (ZSTD_getErrorCode(rc) == ZSTD_error_checksum_wrong) {
          Error error = Raise(StreamFault::Kind::kCorrupt,
                              "at the end of the compressed stream: the zstd frame's checksum "
                              "does not match the restored data");
          fault->at_stream_end = true;
          return error;
        }
        return Corrupt(std::string("zstd: ") + ZSTD_getErrorName(rc));
      }
      if (rc == 0) {
        stream_ended = true;  // decoded and flushed
        continue;
      }
      // Wants more input: only an error when there is none and it had room to write.
      if (output.pos == 0 && in_pos == in_len && inner_eof) return Truncated();
    }
    return output.pos;
  }

  Result<std::size_t> Gzip(std::span<std::byte> out) {
    gzip.next_out = reinterpret_cast<Bytef*>(out.data());
    gzip.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size(), 1u << 30));
    const uInt room = gzip.avail_out;
    while (gzip.avail_out == room) {
      if (stream_ended) return AtStreamEnd();
      EF_RETURN_IF_ERROR(Refill());
      gzip.next_in = reinterpret_cast<Bytef*>(input.get() + in_pos);
      gzip.avail_in = static_cast<uInt>(in_len - in_pos);
      const int rc = inflate(&gzip, Z_NO_FLUSH);
      const std::size_t used = (in_len - in_pos) - gzip.avail_in;
      consumed += used;
      in_pos += used;
      const std::size_t produced = room - gzip.avail_out;
      if (rc == Z_STREAM_END) {
        stream_ended = true;
        continue;
      }
      if (rc == Z_OK) continue;
      if (rc == Z_BUF_ERROR && in_pos == in_len && !inner_eof) continue;  // needs input
      Error error = rc == Z_BUF_ERROR
                        ? Truncated()
                        : Corrupt(std::string("gzip: ") +
                                  (gzip.msg != nullptr ? gzip.msg : "inflate failed"));
      // The bytes before the damage go first (the fault comes with the next Read), so the tar
      // layer has seen them and knows where the damage sits.
      if (produced == 0) return error;
      return produced;
    }
    return std::size_t{room - gzip.avail_out};
  }

  Result<std::size_t> Read(std::span<std::byte> out) {
    if (fault) return Error{fault->code, fault->detail};
    if (out.empty()) return std::size_t{0};
    if (format == Format::kUnknown) EF_RETURN_IF_ERROR(Sniff());
    switch (format) {
      case Format::kPlain: {
        if (in_pos < in_len) {
          const std::size_t n = std::min(out.size(), in_len - in_pos);
          std::memcpy(out.data(), input.get() + in_pos, n);
          in_pos += n;
          consumed += n;
          return n;
        }
        if (inner_eof) return std::size_t{0};
        Result<std::size_t> n = inner.Read(out);
        if (n) consumed += *n;
        if (n && *n == 0) inner_eof = true;
        return n;
      }
      case Format::kZstd:
        return Zstd(out);
      case Format::kGzip:
        return Gzip(out);
      case Format::kUnknown:
        break;
    }
    return Fail(ErrorCode::kInternal, "decompressor: unknown format");
  }
};

DecompressingSource::DecompressingSource(ByteSource& inner)
    : impl_(std::make_unique<Impl>(inner)) {}

DecompressingSource::~DecompressingSource() = default;

Result<std::size_t> DecompressingSource::Read(std::span<std::byte> buffer) {
  return impl_->Read(buffer);
}

const std::optional<StreamFault>& DecompressingSource::fault() const { return impl_->fault; }

}  // namespace edgefleet::updater
