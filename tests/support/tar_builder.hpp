// Builds tar archives entry by entry with libarchive's writer, hostile ones included (links,
// devices, FIFOs, "../x", "/etc/x", duplicates), so tests can hand real archives to the reader.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "manifests/envelope.hpp"

namespace edgefleet::testing {

enum class Compression { kNone, kZstd, kGzip };

class TarBuilder {
 public:
  explicit TarBuilder(Compression compression = Compression::kNone) : compression_(compression) {}

  TarBuilder& File(std::string path, std::string contents);
  TarBuilder& Directory(std::string path);
  TarBuilder& Symlink(std::string path, std::string target);
  TarBuilder& Hardlink(std::string path, std::string target);
  TarBuilder& Fifo(std::string path);
  TarBuilder& CharDevice(std::string path);

  // The archive bytes (aborts the test with a failure when libarchive refuses).
  std::string Bytes() const;
  void WriteTo(const std::filesystem::path& path) const;

 private:
  enum class Kind { kFile, kDir, kSymlink, kHardlink, kFifo, kCharDev };
  struct Entry {
    Kind kind;
    std::string path;
    std::string data;  // contents, or link target
  };
  Compression compression_;
  std::vector<Entry> entries_;
};

// A bundle archive: manifest.json (the envelope's JSON) first, then `files` in order.
std::string BuildBundle(const manifests::SignedEnvelope& manifest,
                        const std::vector<std::pair<std::string, std::string>>& files,
                        Compression compression = Compression::kNone);

}  // namespace edgefleet::testing
