// Semantic versions and ranges (see manifests/semver.hpp).
#include "manifests/semver.hpp"

#include <algorithm>
#include <limits>

#include "manifests/log_value.hpp"

namespace edgefleet::manifests {
namespace {

constexpr std::string_view kExpectedSemVer = "expected a semantic version like 1.2.3 or 1.2.3-rc.1";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsIdentChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}
bool AllDigits(std::string_view s) {
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return !s.empty();
}

// A numeric core component: digits, no leading zero, fits in 64 bits.
bool ParseNumber(std::string_view s, std::uint64_t* out) {
  if (!AllDigits(s) || (s.size() > 1 && s[0] == '0')) return false;
  std::uint64_t value = 0;
  for (char c : s) {
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

bool ValidPrerelease(std::string_view pre) {
  if (pre.empty()) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = pre.find('.', start);
    const std::string_view ident =
        pre.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (ident.empty()) return false;
    for (char c : ident) {
      if (!IsIdentChar(c)) return false;
    }
    // semver 9: numeric identifiers must not include leading zeroes.
    if (AllDigits(ident) && ident.size() > 1 && ident[0] == '0') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::strong_ordering CompareIdentifiers(std::string_view a, std::string_view b) {
  const bool a_num = AllDigits(a);
  const bool b_num = AllDigits(b);
  if (a_num && b_num) {
    // No leading zeros, so the longer one is larger; this avoids overflow on huge identifiers.
    if (a.size() != b.size()) return a.size() <=> b.size();
    return a.compare(b) <=> 0;
  }
  if (a_num != b_num) return a_num ? std::strong_ordering::less : std::strong_ordering::greater;
  return a.compare(b) <=> 0;
}

}  // namespace

Result<SemVer> SemVer::Parse(std::string_view text) {
  const auto fail = [&] {
    return Fail(ErrorCode::kParse,
                std::string(kExpectedSemVer) + ", found " + QuoteName(text, '"'));
  };
  std::string_view core = text;
  std::string_view pre;
  if (const std::size_t dash = text.find('-'); dash != std::string_view::npos) {
    core = text.substr(0, dash);
    pre = text.substr(dash + 1);
    if (!ValidPrerelease(pre)) return fail();
  }
  const auto parts = Split(core, '.');
  SemVer v;
  if (parts.size() != 3 || !ParseNumber(parts[0], &v.major) || !ParseNumber(parts[1], &v.minor) ||
      !ParseNumber(parts[2], &v.patch)) {
    return fail();
  }
  v.prerelease = std::string(pre);
  return v;
}

std::string SemVer::ToString() const {
  std::string out =
      std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (!prerelease.empty()) out += "-" + prerelease;
  return out;
}

std::strong_ordering SemVer::operator<=>(const SemVer& other) const {
  if (auto c = major <=> other.major; c != 0) return c;
  if (auto c = minor <=> other.minor; c != 0) return c;
  if (auto c = patch <=> other.patch; c != 0) return c;
  // semver 11.3: a prerelease has lower precedence than the release.
  if (prerelease.empty() || other.prerelease.empty()) {
    if (prerelease.empty() && other.prerelease.empty()) return std::strong_ordering::equal;
    return prerelease.empty() ? std::strong_ordering::greater : std::strong_ordering::less;
  }
  const auto mine = Split(prerelease, '.');
  const auto theirs = Split(other.prerelease, '.');
  for (std::size_t i = 0; i < mine.size() && i < theirs.size(); ++i) {
    if (auto c = CompareIdentifiers(mine[i], theirs[i]); c != 0) return c;
  }
  return mine.size() <=> theirs.size();
}

bool SemVer::operator==(const SemVer& other) const {
  return major == other.major && minor == other.minor && patch == other.patch &&
         prerelease == other.prerelease;
}

Result<VersionRange> VersionRange::Parse(std::string_view text) {
  VersionRange range;
  range.text_ = std::string(text);
  std::size_t pos = 0;
  bool any = false;
  while (pos < text.size()) {
    if (text[pos] == ' ') {
      ++pos;
      continue;
    }
    std::size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view token = text.substr(pos, end - pos);
    pos = end;
    any = true;
    if (token == "*") continue;  // matches everything; contributes no comparator

    Comparator comparator{Op::kEq, {}};
    std::string_view version = token;
    if (token.starts_with(">=")) {
      comparator.op = Op::kGe;
      version.remove_prefix(2);
    } else if (token.starts_with("<=")) {
      comparator.op = Op::kLe;
      version.remove_prefix(2);
    } else if (token.starts_with(">")) {
      comparator.op = Op::kGt;
      version.remove_prefix(1);
    } else if (token.starts_with("<")) {
      comparator.op = Op::kLt;
      version.remove_prefix(1);
    } else if (token.starts_with("=")) {
      version.remove_prefix(1);
    }
    // Partial versions ("4", "4.6") are completed with zeros; a prerelease needs all three parts.
    std::string full(version);
    if (version.find('-') == std::string_view::npos) {
      const auto dots = std::count(version.begin(), version.end(), '.');
      if (dots == 0) full += ".0.0";
      if (dots == 1) full += ".0";
    }
    auto parsed = SemVer::Parse(full);
    if (!parsed || version.empty()) {
      return Fail(ErrorCode::kParse,
                  "expected a version range of comparators like \">=4.5.0 <5.0.0\" (operators "
                  "=, <, <=, >, >=, or *), found bad comparator " +
                      QuoteName(token, '"'));
    }
    comparator.version = std::move(parsed).value();
    range.comparators_.push_back(std::move(comparator));
  }
  if (!any) {
    return Fail(ErrorCode::kParse,
                "expected a version range like \">=4.5.0 <5.0.0\" or \"*\", found an empty string");
  }
  return range;
}

bool VersionRange::Contains(const SemVer& version) const {
  for (const auto& c : comparators_) {
    const auto order = version <=> c.version;
    bool ok = false;
    switch (c.op) {
      case Op::kEq:
        ok = order == 0;
        break;
      case Op::kLt:
        ok = order < 0;
        break;
      case Op::kLe:
        ok = order <= 0;
        break;
      case Op::kGt:
        ok = order > 0;
        break;
      case Op::kGe:
        ok = order >= 0;
        break;
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace edgefleet::manifests
