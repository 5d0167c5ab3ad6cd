// A temporary directory removed (recursively) when the object goes out of scope.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace edgefleet::testing {

class TempDir final {
 public:
  TempDir();  // under $TMPDIR (or /tmp), named edgefleet-test-XXXXXX; aborts the test on failure
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Small file helpers for tests; they fail the current test (ADD_FAILURE) on I/O errors.
void WriteFile(const std::filesystem::path& path, std::string_view contents);
std::string ReadFile(const std::filesystem::path& path);

}  // namespace edgefleet::testing
