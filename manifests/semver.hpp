// Semantic versions (https://semver.org, without build metadata) and version ranges.
//
// Thread safety: plain values.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::manifests {

struct SemVer {
  std::uint64_t major = 0;
  std::uint64_t minor = 0;
  std::uint64_t patch = 0;
  std::string prerelease;  // empty for a release; "rc.1" etc. sorts before the release

  // Parses "1.2.3" or "1.2.3-rc.1". Fails with kParse.
  static Result<SemVer> Parse(std::string_view text);
  std::string ToString() const;

  // Semver precedence (prerelease identifiers compared numerically or lexically, per semver 11).
  std::strong_ordering operator<=>(const SemVer& other) const;
  bool operator==(const SemVer& other) const;
};

// A conjunction of comparators separated by spaces: ">=4.5.0 <5.0.0", "=4.6.0", "*".
// Partial versions are allowed in a range ("4.6" means "4.6.0").
class VersionRange {
 public:
  // Fails with kParse naming the bad comparator.
  static Result<VersionRange> Parse(std::string_view text);
  bool Contains(const SemVer& version) const;
  const std::string& text() const { return text_; }

 private:
  enum class Op { kEq, kLt, kLe, kGt, kGe };
  struct Comparator {
    Op op;
    SemVer version;
  };
  std::string text_;
  std::vector<Comparator> comparators_;
};

}  // namespace edgefleet::manifests
