#include "deploy/bundle_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "manifests/crypto.hpp"
#include "updater/utf8_locale.hpp"

namespace edgefleet::deploy {
namespace {

using ArchiveWriter = std::unique_ptr<archive, decltype(&archive_write_free)>;
using EntryHandle = std::unique_ptr<archive_entry, decltype(&archive_entry_free)>;

constexpr std::size_t kChunk = 1 << 20;

}  // namespace

Result<Compression> ParseCompression(std::string_view text) {
  if (text == "none") return Compression::kNone;
  if (text == "gzip") return Compression::kGzip;
  if (text == "zstd") return Compression::kZstd;
  return Fail(ErrorCode::kInvalidArgument,
              "compression: expected one of none, gzip, zstd, found '" + std::string(text) + "'");
}

std::string_view ToString(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "?";
}

Result<Compression> DetectCompression(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<unsigned char, 4> magic{};
  in.read(reinterpret_cast<char*>(magic.data()), magic.size());
  if (!in && in.gcount() == 0) {
    return Fail(ErrorCode::kIo, path.string() + ": cannot read: " + std::strerror(errno));
  }
  if (magic[0] == 0x28 && magic[1] == 0xB5 && magic[2] == 0x2F && magic[3] == 0xFD) {
    return Compression::kZstd;
  }
  if (magic[0] == 0x1F && magic[1] == 0x8B) return Compression::kGzip;
  return Compression::kNone;
}

struct BundleWriter::Impl {
  ArchiveWriter archive{nullptr, &archive_write_free};
  int fd = -1;
  std::filesystem::path target;
  std::filesystem::path temp;
  std::int64_t mtime = 0;
  std::uint64_t entry_left = 0;  // bytes still owed to the current entry
  bool committed = false;

  Unexpected ArchiveError(std::string_view what) const {
    const char* detail = archive_error_string(archive.get());
    return Fail(ErrorCode::kIo, target.string() + ": " + std::string(what) + ": " +
                                    (detail != nullptr ? detail : "unknown libarchive error"));
  }

  ~Impl() {
    if (!committed) {
      archive.reset();  // closes the stream before the file goes away
      if (fd >= 0) close(fd);
      std::error_code ec;
      std::filesystem::remove(temp, ec);
    }
  }
};

BundleWriter::BundleWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BundleWriter::BundleWriter(BundleWriter&&) noexcept = default;
BundleWriter& BundleWriter::operator=(BundleWriter&&) noexcept = default;
BundleWriter::~BundleWriter() = default;

Result<BundleWriter> BundleWriter::Create(const std::filesystem::path& path,
                                          Compression compression, std::int64_t mtime) {
  auto impl = std::make_unique<Impl>();
  impl->target = path;
  impl->mtime = mtime;
  std::string temp = (path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path())
                         .append("." + path.filename().string() + ".XXXXXX")
                         .string();
  impl->fd = mkstemp(temp.data());
  if (impl->fd < 0) {
    return Fail(ErrorCode::kIo, path.string() + ": cannot create a temporary file beside it: " +
                                    std::strerror(errno));
  }
  impl->temp = temp;
  fchmod(impl->fd, 0644);
  impl->archive.reset(archive_write_new());
  if (!impl->archive) return Fail(ErrorCode::kInternal, "archive_write_new failed");
  archive* a = impl->archive.get();
  int rc = archive_write_set_format_pax_restricted(a);
  if (rc == ARCHIVE_OK) {
    if (compression == Compression::kZstd) rc = archive_write_add_filter_zstd(a);
    if (compression == Compression::kGzip) rc = archive_write_add_filter_gzip(a);
  }
  if (rc == ARCHIVE_OK) rc = archive_write_set_bytes_in_last_block(a, 1);
  if (rc == ARCHIVE_OK) rc = archive_write_open_fd(a, impl->fd);
  if (rc != ARCHIVE_OK) return impl->ArchiveError("cannot start the archive");
  return BundleWriter(std::move(impl));
}

Status BundleWriter::Begin(std::string_view name, std::uint64_t size) {
  if (impl_->entry_left != 0) {
    return Fail(ErrorCode::kInternal, "bundle writer: previous entry is missing " +
                                          std::to_string(impl_->entry_left) + " bytes");
  }
  updater::ScopedUtf8Locale utf8_locale;  // pax names are UTF-8 whatever the process locale
  EntryHandle entry(archive_entry_new(), &archive_entry_free);
  archive_entry_set_pathname(entry.get(), std::string(name).c_str());
  archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), 0644);
  archive_entry_set_mtime(entry.get(), impl_->mtime, 0);
  if (archive_write_header(impl_->archive.get(), entry.get()) != ARCHIVE_OK) {
    return impl_->ArchiveError("cannot add entry '" + std::string(name) + "'");
  }
  impl_->entry_left = size;
  return Ok();
}

Status BundleWriter::Write(std::span<const std::byte> data) {
  if (data.size() > impl_->entry_left) {
    return Fail(ErrorCode::kInternal, "bundle writer: entry data exceeds its declared size");
  }
  la_ssize_t n = archive_write_data(impl_->archive.get(), data.data(), data.size());
  if (n < 0 || static_cast<std::size_t>(n) != data.size()) {
    return impl_->ArchiveError("write failed");
  }
  impl_->entry_left -= data.size();
  return Ok();
}

Status BundleWriter::AddBytes(std::string_view name, std::string_view data) {
  EF_RETURN_IF_ERROR(Begin(name, data.size()));
  return Write(std::as_bytes(std::span(data.data(), data.size())));
}

Result<std::string> BundleWriter::AddFile(std::string_view name,
                                          const std::filesystem::path& source) {
  std::error_code ec;
  auto size = std::filesystem::file_size(source, ec);
  if (ec) return Fail(ErrorCode::kIo, source.string() + ": " + ec.message());
  std::ifstream in(source, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, source.string() + ": cannot open for reading");
  EF_RETURN_IF_ERROR(Begin(name, size));
  manifests::Sha256 hash;
  std::vector<char> buffer(kChunk);
  std::uint64_t done = 0;
  while (done < size) {
    in.read(buffer.data(),
            static_cast<std::streamsize>(std::min<std::uint64_t>(kChunk, size - done)));
    auto got = static_cast<std::size_t>(in.gcount());
    if (got == 0) {
      return Fail(ErrorCode::kIo, source.string() + ": file shrank while bundling (read " +
                                      std::to_string(done) + " of " + std::to_string(size) +
                                      " bytes)");
    }
    auto chunk = std::as_bytes(std::span(buffer.data(), got));
    hash.Update(chunk);
    EF_RETURN_IF_ERROR(Write(chunk));
    done += got;
  }
  return hash.FinishHex();
}

Status BundleWriter::Commit() {
  if (impl_->entry_left != 0) {
    return Fail(ErrorCode::kInternal, "bundle writer: last entry is incomplete");
  }
  if (archive_write_close(impl_->archive.get()) != ARCHIVE_OK) {
    return impl_->ArchiveError("cannot finish the archive");
  }
  if (fsync(impl_->fd) != 0) {
    return Fail(ErrorCode::kIo, impl_->temp.string() + ": fsync: " + std::strerror(errno));
  }
  close(impl_->fd);
  impl_->fd = -1;
  std::error_code ec;
  std::filesystem::rename(impl_->temp, impl_->target, ec);
  if (ec) {
    return Fail(ErrorCode::kIo, impl_->target.string() +
                                    ": cannot move the finished archive into "
                                    "place: " +
                                    ec.message());
  }
  impl_->committed = true;
  return Ok();
}

}  // namespace edgefleet::deploy
