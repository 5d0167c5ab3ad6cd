#include "tests/support/tar_builder.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <memory>

#include <gtest/gtest.h>

#include "manifests/bundle_layout.hpp"
#include "updater/utf8_locale.hpp"

namespace edgefleet::testing {
namespace {

using ArchiveWriter = std::unique_ptr<archive, decltype(&archive_write_free)>;
using ArchiveEntry = std::unique_ptr<archive_entry, decltype(&archive_entry_free)>;

la_ssize_t AppendToString(archive* /*a*/, void* client, const void* buffer, size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
  return static_cast<la_ssize_t>(length);
}

std::string ErrorText(archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "unknown libarchive error";
}

}  // namespace

TarBuilder& TarBuilder::File(std::string path, std::string contents) {
  entries_.push_back({Kind::kFile, std::move(path), std::move(contents)});
  return *this;
}
TarBuilder& TarBuilder::Directory(std::string path) {
  entries_.push_back({Kind::kDir, std::move(path), {}});
  return *this;
}
TarBuilder& TarBuilder::Symlink(std::string path, std::string target) {
  entries_.push_back({Kind::kSymlink, std::move(path), std::move(target)});
  return *this;
}
TarBuilder& TarBuilder::Hardlink(std::string path, std::string target) {
  entries_.push_back({Kind::kHardlink, std::move(path), std::move(target)});
  return *this;
}
TarBuilder& TarBuilder::Fifo(std::string path) {
  entries_.push_back({Kind::kFifo, std::move(path), {}});
  return *this;
}
TarBuilder& TarBuilder::CharDevice(std::string path) {
  entries_.push_back({Kind::kCharDev, std::move(path), {}});
  return *this;
}

std::string TarBuilder::Bytes() const {
  updater::ScopedUtf8Locale utf8_locale;
  std::string out;
  ArchiveWriter writer(archive_write_new(), &archive_write_free);
  archive* a = writer.get();
  // pax keeps long and UTF-8 names exact. libarchive's writer stores names verbatim ("../x",
  // "/etc/x"): only bsdtar and archive_write_disk strip them, so hostile archives come out as
  // an attacker would write them.
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK) {
    ADD_FAILURE() << "pax format: " << ErrorText(a);
    return {};
  }
  int rc = ARCHIVE_OK;
  switch (compression_) {
    case Compression::kNone:
      break;
    case Compression::kZstd:
      rc = archive_write_add_filter_zstd(a);
      break;
    case Compression::kGzip:
      rc = archive_write_add_filter_gzip(a);
      break;
  }
  if (rc != ARCHIVE_OK) {
    ADD_FAILURE() << "compression filter: " << ErrorText(a);
    return {};
  }
  // Without this libarchive pads the compressed stream with zeros to 10 KiB, which zstd readers
  // (libarchive's included, and `zstd -d`) reject as a broken frame.
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open2(a, &out, nullptr, &AppendToString, nullptr, nullptr) != ARCHIVE_OK) {
    ADD_FAILURE() << "open: " << ErrorText(a);
    return {};
  }
  for (const Entry& e : entries_) {
    ArchiveEntry entry(archive_entry_new(), &archive_entry_free);
    // The _utf8 setters keep UTF-8 names intact whatever the process locale (tests run in "C").
    archive_entry_set_pathname_utf8(entry.get(), e.path.c_str());
    archive_entry_set_mtime(entry.get(), 1700000000, 0);
    archive_entry_set_size(entry.get(), 0);
    switch (e.kind) {
      case Kind::kFile:
        archive_entry_set_filetype(entry.get(), AE_IFREG);
        archive_entry_set_perm(entry.get(), 0644);
        archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.data.size()));
        break;
      case Kind::kDir:
        archive_entry_set_filetype(entry.get(), AE_IFDIR);
        archive_entry_set_perm(entry.get(), 0755);
        break;
      case Kind::kSymlink:
        archive_entry_set_filetype(entry.get(), AE_IFLNK);
        archive_entry_set_perm(entry.get(), 0777);
        archive_entry_set_symlink_utf8(entry.get(), e.data.c_str());
        break;
      case Kind::kHardlink:
        archive_entry_set_filetype(entry.get(), AE_IFREG);
        archive_entry_set_perm(entry.get(), 0644);
        archive_entry_set_hardlink_utf8(entry.get(), e.data.c_str());
        break;
      case Kind::kFifo:
        archive_entry_set_filetype(entry.get(), AE_IFIFO);
        archive_entry_set_perm(entry.get(), 0644);
        break;
      case Kind::kCharDev:
        archive_entry_set_filetype(entry.get(), AE_IFCHR);
        archive_entry_set_perm(entry.get(), 0666);
        archive_entry_set_rdevmajor(entry.get(), 1);  // /dev/null
        archive_entry_set_rdevminor(entry.get(), 3);
        break;
    }
    if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
      ADD_FAILURE() << "header of '" << e.path << "': " << ErrorText(a);
      return {};
    }
    if (e.kind == Kind::kFile && !e.data.empty()) {
      const la_ssize_t n = archive_write_data(a, e.data.data(), e.data.size());
      if (n != static_cast<la_ssize_t>(e.data.size())) {
        ADD_FAILURE() << "data of '" << e.path << "': " << ErrorText(a);
        return {};
      }
    }
  }
  if (archive_write_close(a) != ARCHIVE_OK) {
    ADD_FAILURE() << "close: " << ErrorText(a);
    return {};
  }
  return out;
}

void TarBuilder::WriteTo(const std::filesystem::path& path) const {
  const std::string bytes = Bytes();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

std::string BuildBundle(const manifests::SignedEnvelope& manifest,
                        const std::vector<std::pair<std::string, std::string>>& files,
                        Compression compression) {
  TarBuilder builder(compression);
  builder.File(std::string(manifests::kManifestFile), manifest.ToJson().dump());
  for (const auto& [path, contents] : files) builder.File(path, contents);
  return builder.Bytes();
}

}  // namespace edgefleet::testing
