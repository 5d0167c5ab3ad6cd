#include "updater/safe_archive.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "manifests/log_value.hpp"
#include "updater/decompress.hpp"
#include "updater/tar_guard.hpp"
#include "updater/utf8_locale.hpp"

namespace edgefleet::updater {
namespace {

using manifests::IsValidUtf8;
using manifests::QuoteName;

// Large enough that libarchive rarely waits on us, small enough that a box with little RAM can
// read a multi-gigabyte bundle.
constexpr std::size_t kReadBufferBytes = 256 * 1024;

using ArchiveReader = std::unique_ptr<archive, decltype(&archive_read_free)>;

// Returns the normalised path, or why the path may never be unpacked. Directories may carry one
// trailing '/', as tar writes them.
Result<std::string> NormalisePath(std::string_view raw, bool is_dir) {
  auto refuse = [](std::string reason) { return Fail(ErrorCode::kUnsafeArchive, reason); };
  if (raw.size() > manifests::kMaxPathBytes) {
    return Fail(ErrorCode::kUnsafeArchive, "path is " + std::to_string(raw.size()) +
                                               " bytes, the limit is " +
                                               std::to_string(manifests::kMaxPathBytes));
  }
  for (char ch : raw) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return refuse("control character in path");
    if (c == '\\') return refuse("backslash in path");
  }
  if (!IsValidUtf8(raw)) return refuse("path is not valid UTF-8");
  if (!raw.empty() && raw.front() == '/') return refuse("absolute path");
  std::string_view path = raw;
  // "./model/a.onnx" is what `tar -C dir .` writes; it means the same as "model/a.onnx".
  if (path.starts_with("./")) path.remove_prefix(2);
  if (is_dir && path.ends_with('/')) path.remove_suffix(1);
  if (path.empty()) return refuse("empty path");
  std::size_t start = 0;
  while (true) {
    const std::size_t end = path.find('/', start);
    const std::string_view segment =
        path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (segment == "..") return refuse("path escapes the bundle (\"..\" segment)");
    if (segment == ".") return refuse("\".\" segment in path");
    if (segment.empty()) return refuse("empty segment in path");
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return std::string(path);
}

// What kind of entry this is, when it is one we refuse; nullopt for files and directories.
std::optional<std::string> RefusedKind(archive_entry* entry) {
  if (const char* target = archive_entry_hardlink(entry); target != nullptr) {
    return "hardlink (to " + QuoteName(target) + ")";
  }
  switch (archive_entry_filetype(entry)) {
    case AE_IFREG:
    case AE_IFDIR:
      break;
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(entry);
      return "symlink (to " + QuoteName(target != nullptr ? target : "") + ")";
    }
    case AE_IFCHR:
      return std::string("character device");
    case AE_IFBLK:
      return std::string("block device");
    case AE_IFIFO:
      return std::string("FIFO");
    case AE_IFSOCK:
      return std::string("socket");
    default:
      return std::string("unknown entry type");
  }
  // A sparse file's holes would be filled with zeros the archive never carried; nothing in a
  // bundle needs them, and refusing keeps "declared size == bytes delivered" exact.
  if (archive_entry_sparse_count(entry) > 0) return std::string("sparse file");
  return std::nullopt;
}

// Detects duplicates, including a file and a directory with the same name and a file used as
// a parent directory: on unpacking, the later entry would replace or redirect the earlier one.
class PathRegistry {
 public:
  // Returns why `path` conflicts with what came before, or nullopt after recording it.
  std::optional<std::string> Add(const std::string& path, bool is_dir) {
    if (files_.contains(path)) {
      return is_dir ? "directory has the same name as an earlier file" : "duplicate entry";
    }
    // A directory repeated is harmless (it carries no bytes); a file over a directory is not.
    if (!is_dir && dirs_.contains(path)) return "file has the same name as an earlier directory";
    for (std::size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      const std::string parent = path.substr(0, slash);
      if (files_.contains(parent)) return "parent " + QuoteName(parent) + " is a file";
    }
    for (std::size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      dirs_.insert(path.substr(0, slash));
    }
    (is_dir ? dirs_ : files_).insert(path);
    return std::nullopt;
  }

 private:
  std::set<std::string> files_;
  std::set<std::string> dirs_;  // explicit directories and every parent of an entry
};

// State shared with libarchive's read callback.
struct SourceContext {
  ByteSource* source = nullptr;
  std::unique_ptr<std::byte[]> buffer;
  // The ByteSource's own error, handed back to the caller unchanged instead of libarchive's
  // paraphrase of it.
  std::optional<Error> error;
  bool eof = false;
};

la_ssize_t ReadCallback(archive* a, void* client, const void** out) {
  auto* ctx = static_cast<SourceContext*>(client);
  if (ctx->error) {
    archive_set_error(a, EIO, "%s", "byte source failed");
    return -1;
  }
  // Exceptions must not cross libarchive's C frames.
  try {
    Result<std::size_t> n =
        ctx->source->Read(std::span<std::byte>(ctx->buffer.get(), kReadBufferBytes));
    if (!n) {
      ctx->error = n.error();
    } else if (*n > kReadBufferBytes) {
      ctx->error = Error{ErrorCode::kInternal, "byte source returned more than its buffer"};
    } else {
      if (*n == 0) ctx->eof = true;
      *out = ctx->buffer.get();
      return static_cast<la_ssize_t>(*n);
    }
  } catch (const std::exception& e) {
    ctx->error = Error{ErrorCode::kInternal, std::string("byte source threw: ") + e.what()};
  } catch (...) {
    ctx->error = Error{ErrorCode::kInternal, "byte source threw"};
  }
  archive_set_error(a, EIO, "%s", "byte source failed");
  return -1;
}

class SafeReader {
 public:
  SafeReader(ByteSource& source, const ArchiveLimits& limits, EntryVisitor& visitor,
             std::string_view source_name)
      : limits_(limits),
        visitor_(visitor),
        name_(source_name),
        decompress_(source),
        guard_(decompress_) {
    ctx_.source = &guard_;
    ctx_.buffer = std::make_unique<std::byte[]>(kReadBufferBytes);
  }

  Status Run() {
    ScopedUtf8Locale utf8_locale;
    ArchiveReader reader(archive_read_new(), &archive_read_free);
    if (!reader) return Fail(ErrorCode::kInternal, name_ + ": cannot create an archive reader");
    archive* a = reader.get();
    // Only tar, and no filters: libarchive gets the plain tar stream from our own layers
    // (decompress.hpp decides where the compressed stream ends, tar_guard.hpp checks each header
    // before libarchive parses it), and can never start an external decompressor.
    if (archive_read_support_format_tar(a) != ARCHIVE_OK) {
      return Fail(ErrorCode::kUnsupported,
                  name_ + ": libarchive lacks tar support: " + ErrorText(a));
    }
    if (archive_read_open(a, &ctx_, nullptr, &ReadCallback, nullptr) != ARCHIVE_OK) {
      return ArchiveFailure(a, "");
    }
    while (true) {
      archive_entry* entry = nullptr;
      const int rc = archive_read_next_header(a, &entry);
      if (rc == ARCHIVE_EOF) return ReadToTheEnd(a);
      // ARCHIVE_WARN covers malformed pax attributes and names that do not convert; an entry
      // whose header libarchive had to guess at is not one we unpack.
      if (rc != ARCHIVE_OK) return ArchiveFailure(a, "");
      EF_RETURN_IF_ERROR(Entry(a, entry));
      if (stopped_) return Ok();
    }
  }

 private:
  Status Entry(archive* a, archive_entry* entry) {
    // pax stores names as UTF-8; the _utf8 accessor avoids a round trip through the C locale.
    const char* utf8 = archive_entry_pathname_utf8(entry);
    const char* raw = utf8 != nullptr ? utf8 : archive_entry_pathname(entry);
    const std::string raw_path = raw != nullptr ? raw : "";
    current_ = raw_path;

    if (++entries_ > limits_.max_entries) {
      return Fail(ErrorCode::kLimit, Prefix(raw_path) + "more than " +
                                         std::to_string(limits_.max_entries) + " entries");
    }
    if (auto kind = RefusedKind(entry)) {
      return Fail(ErrorCode::kUnsafeArchive, Prefix(raw_path) + *kind);
    }
    const bool is_dir = archive_entry_filetype(entry) == AE_IFDIR;
    Result<std::string> path = NormalisePath(raw_path, is_dir);
    if (!path) return Fail(path.error().code, Prefix(raw_path) + path.error().message);
    if (auto conflict = registry_.Add(*path, is_dir)) {
      return Fail(ErrorCode::kUnsafeArchive, Prefix(raw_path) + *conflict);
    }
    if (is_dir) return visitor_.Directory(*path);

    current_ = *path;
    if (archive_entry_size_is_set(entry) == 0 || archive_entry_size(entry) < 0) {
      return Fail(ErrorCode::kUnsafeArchive, Prefix(*path) + "no size in the header");
    }
    // Both caps are checked against the header, so an endless entry costs one header read.
    const auto size = static_cast<std::uint64_t>(archive_entry_size(entry));
    if (size > limits_.max_file_bytes) {
      return Fail(ErrorCode::kLimit, Prefix(*path) + "file is " + std::to_string(size) +
                                         " bytes, the limit is " +
                                         std::to_string(limits_.max_file_bytes));
    }
    if (size > limits_.max_total_bytes || total_ > limits_.max_total_bytes - size) {
      return Fail(ErrorCode::kLimit, Prefix(*path) + "files total " +
                                         std::to_string(total_ + size) + " bytes, the limit is " +
                                         std::to_string(limits_.max_total_bytes));
    }
    total_ += size;

    EF_RETURN_IF_ERROR(visitor_.BeginFile(*path, size));
    std::uint64_t delivered = 0;
    while (true) {
      const void* block = nullptr;
      std::size_t length = 0;
      la_int64_t offset = 0;
      const int rc = archive_read_data_block(a, &block, &length, &offset);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK) return ArchiveFailure(a, *path);
      // A gap between blocks is a hole libarchive would have us fill with zeros.
      if (offset < 0 || static_cast<std::uint64_t>(offset) != delivered) {
        return Fail(ErrorCode::kUnsafeArchive, Prefix(*path) + "sparse file");
      }
      if (length > size - delivered) {
        return Fail(ErrorCode::kIntegrity, Prefix(*path) + "more data than the declared " +
                                               std::to_string(size) + " bytes");
      }
      delivered += length;
      if (length > 0) {
        EF_RETURN_IF_ERROR(visitor_.Data(std::span(static_cast<const std::byte*>(block), length)));
      }
    }
    if (delivered != size) {
      return Fail(ErrorCode::kIntegrity, Prefix(*path) + "declared " + std::to_string(size) +
                                             " bytes, the archive held " +
                                             std::to_string(delivered));
    }
    EF_RETURN_IF_ERROR(visitor_.EndFile());
    stopped_ = !visitor_.WantsMore();
    return Ok();
  }

  // libarchive stops at the end-of-archive marker. Whatever follows (in the tar stream, and in
  // the compressed stream after that) is read here, through the same checks, so that nothing a
  // `tar -i` or a decompressor reading concatenated frames would find goes unexamined.
  Status ReadToTheEnd(archive* a) {
    while (true) {
      Result<std::size_t> n = guard_.Read(std::span(ctx_.buffer.get(), kReadBufferBytes));
      if (!n) {
        ctx_.error = n.error();
        return ArchiveFailure(a, "");
      }
      if (*n == 0) return Ok();
    }
  }

  // The message for a fault our stream layers found, naming where in the archive it sits.
  Status Describe(const StreamFault& fault) const {
    const std::string where = fault.at_stream_end ? "" : guard_.Where();
    switch (fault.kind) {
      case StreamFault::Kind::kNotATar:
        return Fail(fault.code, name_ + ": " + fault.detail);
      case StreamFault::Kind::kTruncated:
        return Fail(fault.code, name_ + ": truncated archive" + where + " (" + fault.detail + ")");
      case StreamFault::Kind::kCorrupt:
        return Fail(fault.code, name_ + ": corrupt archive" + where + " (" + fault.detail + ")");
      case StreamFault::Kind::kTrailingData:
        return Fail(fault.code,
                    name_ + ": data after the end of the archive (" + fault.detail + ")");
      case StreamFault::Kind::kRefused:
        break;
    }
    if (fault.entry) return Fail(fault.code, Prefix(*fault.entry) + fault.detail);
    return Fail(fault.code, name_ + ": " + fault.detail);
  }

  // Turns a libarchive failure into our error: the ByteSource's own error when it caused it, a
  // fault of our stream layers, else kIntegrity naming the entry being read (`path`) or the last
  // one read.
  Status ArchiveFailure(archive* a, const std::string& path) {
    if (ctx_.error) {
      // The guard reads from the decompressor, so a fault of the guard is the first one found.
      if (guard_.fault()) return Describe(*guard_.fault());
      if (decompress_.fault()) return Describe(*decompress_.fault());
      return Unexpected(*ctx_.error);
    }
    const std::string reason = ErrorText(a);
    // Only a stream that really ended can be truncated; libarchive says "Truncated ..." then.
    const bool truncated = ctx_.eof && (reason.find("runcated") != std::string::npos ||
                                        reason.find("Premature end") != std::string::npos);
    std::string where;
    if (!path.empty()) {
      where = " while reading " + QuoteName(path);
    } else if (entries_ > 0) {
      where = " after entry " + QuoteName(current_);
    }
    return Fail(ErrorCode::kIntegrity, name_ + ": " +
                                           (truncated ? "truncated archive" : "corrupt archive") +
                                           where + " (" + reason + ")");
  }

  std::string Prefix(std::string_view path) const {
    return name_ + ": entry " + QuoteName(path) + ": ";
  }

  static std::string ErrorText(archive* a) {
    const char* text = archive_error_string(a);
    return text != nullptr ? text : "unknown libarchive error";
  }

  const ArchiveLimits& limits_;
  EntryVisitor& visitor_;
  std::string name_;
  DecompressingSource decompress_;  // the caller's bytes -> plain tar
  TarGuard guard_;                  // plain tar, each header checked -> libarchive
  SourceContext ctx_;
  PathRegistry registry_;
  std::size_t entries_ = 0;
  std::uint64_t total_ = 0;
  std::string current_;  // the entry being read, for messages
  bool stopped_ = false;
};

std::string FileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a file";
}

}  // namespace

Result<FileByteSource> FileByteSource::Open(const std::filesystem::path& path) {
  // O_NONBLOCK: open() of a FIFO would otherwise wait for a writer, and a bundle path that
  // someone replaced by a FIFO would hang the agent. It is cleared again once the file is known
  // to be regular (where it changes nothing for reads anyway).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return Fail(ErrorCode::kIo, "cannot open '" + path.string() + "': " + std::strerror(errno));
  }
  FileByteSource source(fd, path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Fail(ErrorCode::kIo, "cannot stat '" + path.string() + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kIo, "cannot open '" + path.string() + "': is not a regular file (" +
                                    FileTypeName(st.st_mode) + ")");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return Fail(ErrorCode::kIo,
                "cannot open '" + path.string() + "': fcntl: " + std::strerror(errno));
  }
  return source;
}

FileByteSource::FileByteSource(FileByteSource&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

FileByteSource& FileByteSource::operator=(FileByteSource&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

FileByteSource::~FileByteSource() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::size_t> FileByteSource::Read(std::span<std::byte> buffer) {
  if (fd_ < 0) return Fail(ErrorCode::kInternal, "read from a moved-from FileByteSource");
  while (true) {
    const ssize_t n = ::read(fd_, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) {
      return Fail(ErrorCode::kIo, "cannot read '" + path_.string() + "': " + std::strerror(errno));
    }
  }
}

Status ReadSafeArchive(ByteSource& source, const ArchiveLimits& limits, EntryVisitor& visitor,
                       std::string_view source_name) {
  SafeReader reader(source, limits, visitor, source_name);
  return reader.Run();
}

}  // namespace edgefleet::updater
