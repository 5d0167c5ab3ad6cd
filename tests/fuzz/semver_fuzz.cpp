// Fuzzes semantic versions and version ranges (manifest versions, backend requirements). The
// input's first line is a version, the rest a range. A parsed version must print and parse back
// to itself, and order equal to itself.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "manifests/semver.hpp"

namespace manifests = edgefleet::manifests;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = text.find('\n');
  const std::string_view version_text = text.substr(0, newline);
  const std::string_view range_text =
      newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);

  auto version = manifests::SemVer::Parse(version_text);
  if (version) {
    const std::string printed = version->ToString();
    auto again = manifests::SemVer::Parse(printed);
    if (!again || !(*again == *version) || (*again <=> *version) != 0) {
      std::fprintf(stderr, "semver '%s' does not round-trip\n", printed.c_str());
      std::abort();
    }
  }
  auto range = manifests::VersionRange::Parse(range_text);
  if (range && version) (void)range->Contains(*version);
  return 0;
}
