// Compression and raw tar blocks for hostile-archive tests: zstd frames and gzip members made
// directly with libzstd and zlib (so a test can concatenate them, append garbage or damage a
// trailer), a streaming zstd compressor for archives far larger than the test may hold, and
// hand-made tar header blocks of any type (pax, GNU long names, old GNU sparse).
#pragma once

#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace edgefleet::updater::test {

// One zstd frame holding `data`; `checksum` adds the frame's content checksum.
inline std::string ZstdFrame(std::string_view data, bool checksum = false) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, checksum ? 1 : 0);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t n = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) {
    ADD_FAILURE() << "zstd: " << ZSTD_getErrorName(n);
    return {};
  }
  out.resize(n);
  return out;
}

// One gzip member holding `data`.
inline std::string GzipMember(std::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    ADD_FAILURE() << "deflateInit2 failed";
    return {};
  }
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) ADD_FAILURE() << "deflate: " << rc;
  return out;
}

// A zstd frame built piece by piece: hundreds of MiB of repetitive input become a few KiB
// without the input ever existing whole.
class ZstdStream {
 public:
  ZstdStream() : cctx_(ZSTD_createCCtx()) {
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, 1);
  }
  ~ZstdStream() { ZSTD_freeCCtx(cctx_); }
  ZstdStream(const ZstdStream&) = delete;
  ZstdStream& operator=(const ZstdStream&) = delete;

  void Add(std::string_view data) { Run(data, ZSTD_e_continue); }
  void Repeat(std::string_view data, std::uint64_t times) {
    for (std::uint64_t i = 0; i < times; ++i) Add(data);
  }
  std::string Finish() {
    Run({}, ZSTD_e_end);
    return std::move(out_);
  }
  std::uint64_t added() const { return added_; }

 private:
  void Run(std::string_view data, ZSTD_EndDirective mode) {
    added_ += data.size();
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    char buffer[1 << 16];
    while (true) {
      ZSTD_outBuffer out{buffer, sizeof buffer, 0};
      const std::size_t left = ZSTD_compressStream2(cctx_, &out, &in, mode);
      if (ZSTD_isError(left)) {
        ADD_FAILURE() << "zstd: " << ZSTD_getErrorName(left);
        return;
      }
      out_.append(buffer, out.pos);
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) return;
    }
  }

  ZSTD_CCtx* cctx_;
  std::string out_;
  std::uint64_t added_ = 0;
};

// A tar header block with a valid checksum. `gnu` writes the old GNU magic ("ustar  \0"), which
// old-style sparse ('S') headers use; else POSIX ustar.
inline std::string TarHeader(std::string_view name, char type, std::uint64_t size,
                             bool gnu = false) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<std::size_t>(name.size(), 100));
  std::memcpy(h.data() + 100, "0000644", 7);
  std::memcpy(h.data() + 108, "0000000", 7);
  std::memcpy(h.data() + 116, "0000000", 7);
  std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::memcpy(h.data() + 136, "14537266400", 11);
  h[156] = type;
  if (gnu) {
    std::memcpy(h.data() + 257, "ustar  ", 8);
  } else {
    std::memcpy(h.data() + 257, "ustar", 6);
    std::memcpy(h.data() + 263, "00", 2);
  }
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

// Recomputes the checksum after a test changed header bytes.
inline void FixChecksum(std::string& h) {
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (std::size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>(h[i]);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
}

// A pax record: "<length> key=value\n", the length counting itself.
inline std::string PaxRecord(std::string_view key, std::string_view value) {
  const std::size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  std::size_t length = body + 1;
  while (std::to_string(length).size() + body != length) ++length;
  return std::to_string(length) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

inline std::string Pad512(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

}  // namespace edgefleet::updater::test
