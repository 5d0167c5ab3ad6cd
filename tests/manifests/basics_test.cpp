// Result, timestamps, semantic versions and canonical JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "manifests/canonical.hpp"
#include "manifests/result.hpp"
#include "manifests/semver.hpp"
#include "manifests/time.hpp"
#include "tests/manifests/test_util.hpp"

namespace edgefleet::manifests {
namespace {

using testing::ParseFailsWith;

TEST(ResultTest, WrapPrefixesEveryLine) {
  const Error e{ErrorCode::kParse, "a: one\na: two"};
  const Error wrapped = e.Wrap("bundle.efb");
  EXPECT_EQ(wrapped.code, ErrorCode::kParse);
  EXPECT_EQ(wrapped.message, "bundle.efb: a: one\nbundle.efb: a: two");
  EXPECT_EQ(Error{}.Wrap("x").message, "x: ");
}

TEST(ResultTest, ErrorCodesHaveNames) {
  EXPECT_EQ(ToString(ErrorCode::kSignature), "signature error");
  EXPECT_EQ(ToString(ErrorCode::kExpired), "expired");
  EXPECT_EQ(ToString(ErrorCode::kInternal), "internal error");
}

TEST(TimestampTest, ParsesAndFormatsRoundTrip) {
  for (const char* text : {"2026-11-21T05:00:00Z", "1970-01-01T00:00:00Z", "2024-02-29T23:59:59Z",
                           "2000-02-29T12:34:56Z", "9999-12-31T23:59:59Z"}) {
    auto t = ParseTimestamp(text);
    ASSERT_TRUE(t) << text << ": " << t.error().message;
    EXPECT_EQ(FormatTimestamp(*t), text);
  }
  EXPECT_EQ(ParseTimestamp("1970-01-01T00:00:01Z")->time_since_epoch().count(), 1);
  EXPECT_EQ(ParseTimestamp("2026-11-21T05:00:00Z")->time_since_epoch().count(), 1795237200);
}

TEST(TimestampTest, RefusesOtherSpellings) {
  const std::string form = "expected RFC 3339 UTC time like 2026-11-21T05:00:00Z, found ";
  for (const char* text :
       {"2026-11-21T05:00:00", "2026-11-21 05:00:00Z", "2026-11-21T05:00:00z",
        "2026-11-21t05:00:00Z", "2026-11-21T05:00:00.5Z", "2026-11-21T05:00:00+00:00",
        "26-11-21T05:00:00Z", "", "2026-1-21T05:00:00Z", "+026-11-21T05:00:00Z"}) {
    auto t = ParseTimestamp(text);
    ASSERT_FALSE(t) << text;
    EXPECT_EQ(t.error().code, ErrorCode::kParse);
    EXPECT_EQ(t.error().message, form + "\"" + text + "\"");
  }
}

TEST(TimestampTest, RefusesImpossibleDatesAndTimes) {
  EXPECT_EQ(ParseTimestamp("2025-02-29T00:00:00Z").error().message,
            "expected a valid calendar date, found \"2025-02-29T00:00:00Z\"");
  EXPECT_FALSE(ParseTimestamp("1900-02-29T00:00:00Z"));  // not a leap year
  EXPECT_FALSE(ParseTimestamp("2026-04-31T00:00:00Z"));
  EXPECT_FALSE(ParseTimestamp("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(ParseTimestamp("2026-00-10T00:00:00Z"));
  EXPECT_FALSE(ParseTimestamp("2026-01-00T00:00:00Z"));
  EXPECT_EQ(ParseTimestamp("2026-01-01T24:00:00Z").error().message,
            "expected a time of day from 00:00:00 to 23:59:59, found \"2026-01-01T24:00:00Z\"");
  EXPECT_FALSE(ParseTimestamp("2026-01-01T00:60:00Z"));
  EXPECT_FALSE(ParseTimestamp("2016-12-31T23:59:60Z"));  // leap second
}

TEST(TimestampTest, NowIsRecent) {
  EXPECT_GT(Now(), ParseTimestamp("2024-01-01T00:00:00Z").value());
}

SemVer V(std::string_view text) {
  auto v = SemVer::Parse(text);
  EXPECT_TRUE(v) << text;
  return v ? *v : SemVer{};
}

TEST(SemVerTest, ParsesAndPrints) {
  const SemVer v = V("1.22.333-rc.1");
  EXPECT_EQ(v.major, 1u);
  EXPECT_EQ(v.minor, 22u);
  EXPECT_EQ(v.patch, 333u);
  EXPECT_EQ(v.prerelease, "rc.1");
  EXPECT_EQ(v.ToString(), "1.22.333-rc.1");
  EXPECT_EQ(V("0.0.0").ToString(), "0.0.0");
  EXPECT_EQ(V("18446744073709551615.0.0").major, 18446744073709551615ull);
}

TEST(SemVerTest, RefusesMalformed) {
  for (const char* text : {"1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "v1.2.3", "1.2.3-",
                           "1.2.3-rc..1", "1.2.3-01", "1.2.3+build", "1.2.3-rc_1", "", "a.b.c",
                           " 1.2.3", "18446744073709551616.0.0"}) {
    auto v = SemVer::Parse(text);
    ASSERT_FALSE(v) << text;
    EXPECT_EQ(v.error().message,
              std::string("expected a semantic version like 1.2.3 or 1.2.3-rc.1, found \"") + text +
                  "\"");
  }
}

TEST(SemVerTest, ErrorsShowHostileTextEscaped) {
  // A version from a manifest may hold a newline or a terminal escape: the message shows them
  // escaped, so it cannot forge a log line, and cuts a long one short.
  auto v = SemVer::Parse("1.2.3\n\x1b[2Jevent=forged");
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message,
            "expected a semantic version like 1.2.3 or 1.2.3-rc.1, found "
            "\"1.2.3\\n\\x1b[2Jevent=forged\"");
  auto range = VersionRange::Parse(
      ">=1.0.0 <\x01"
      "2");
  ASSERT_FALSE(range);
  EXPECT_NE(range.error().message.find("found bad comparator \"<\\x012\""), std::string::npos)
      << range.error().message;
  auto when = ParseTimestamp("2026-01-01T00:00:00Z\r\nx");
  ASSERT_FALSE(when);
  EXPECT_NE(when.error().message.find("Z\\x0d\\nx\""), std::string::npos) << when.error().message;
  EXPECT_EQ(
      SemVer::Parse(std::string(300, '9') + "x").error().message.size(),
      std::string_view("expected a semantic version like 1.2.3 or 1.2.3-rc.1, found ").size() +
          120 + 5);
}

TEST(SemVerTest, OrdersBySemverPrecedence) {
  // The example chain from semver.org section 11, plus numeric components.
  const std::vector<const char*> ordered = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                            "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                                            "1.0.0-rc.1",  "1.0.0",         "1.0.1",
                                            "1.2.0",       "1.10.0",        "2.0.0-0",
                                            "2.0.0",       "10.0.0"};
  for (std::size_t i = 0; i + 1 < ordered.size(); ++i) {
    EXPECT_LT(V(ordered[i]), V(ordered[i + 1])) << ordered[i] << " < " << ordered[i + 1];
    EXPECT_GT(V(ordered[i + 1]), V(ordered[i]));
  }
  EXPECT_EQ(V("1.2.3-rc.1"), V("1.2.3-rc.1"));
  EXPECT_NE(V("1.2.3-rc.1"), V("1.2.3"));
  EXPECT_TRUE((V("1.0.0-99999999999999999999") <=> V("1.0.0-100")) > 0);  // no overflow
}

TEST(VersionRangeTest, ConjunctionOfComparators) {
  auto range = VersionRange::Parse(">=4.5.0 <5.0.0");
  ASSERT_TRUE(range);
  EXPECT_EQ(range->text(), ">=4.5.0 <5.0.0");
  EXPECT_TRUE(range->Contains(V("4.5.0")));
  EXPECT_TRUE(range->Contains(V("4.6.0")));
  EXPECT_TRUE(range->Contains(V("4.99.99")));
  EXPECT_FALSE(range->Contains(V("4.4.9")));
  EXPECT_FALSE(range->Contains(V("5.0.0")));
  EXPECT_FALSE(range->Contains(V("5.0.1")));
}

TEST(VersionRangeTest, OperatorsPartialVersionsAndStar) {
  EXPECT_TRUE(VersionRange::Parse("=4.6.0")->Contains(V("4.6.0")));
  EXPECT_FALSE(VersionRange::Parse("=4.6.0")->Contains(V("4.6.1")));
  EXPECT_TRUE(VersionRange::Parse("4.6")->Contains(V("4.6.0")));
  EXPECT_FALSE(VersionRange::Parse("4.6")->Contains(V("4.6.1")));
  EXPECT_TRUE(VersionRange::Parse(">4")->Contains(V("4.0.1")));
  EXPECT_FALSE(VersionRange::Parse(">4")->Contains(V("4.0.0")));
  EXPECT_TRUE(VersionRange::Parse("<=4.6")->Contains(V("4.6.0")));
  EXPECT_FALSE(VersionRange::Parse("<=4.6")->Contains(V("4.6.1")));
  EXPECT_TRUE(VersionRange::Parse("<4.6.0")->Contains(V("4.6.0-rc.1")));
  EXPECT_TRUE(VersionRange::Parse("*")->Contains(V("0.0.1")));
  EXPECT_TRUE(VersionRange::Parse("  >=1.0.0   <2.0.0 ")->Contains(V("1.5.0")));
}

TEST(VersionRangeTest, NamesTheBadComparator) {
  auto range = VersionRange::Parse(">=4.5.0 <five");
  ASSERT_FALSE(range);
  EXPECT_EQ(range.error().code, ErrorCode::kParse);
  EXPECT_EQ(range.error().message,
            "expected a version range of comparators like \">=4.5.0 <5.0.0\" (operators =, <, "
            "<=, >, >=, or *), found bad comparator \"<five\"");
  EXPECT_FALSE(VersionRange::Parse(">="));
  EXPECT_FALSE(VersionRange::Parse("~4.5"));
  EXPECT_FALSE(VersionRange::Parse("4.5.0.1"));
  EXPECT_EQ(VersionRange::Parse("  ").error().message,
            "expected a version range like \">=4.5.0 <5.0.0\" or \"*\", found an empty string");
}

TEST(CanonicalTest, SortedKeysNoWhitespaceIndependentOfInsertionOrder) {
  nlohmann::json a = nlohmann::json::object();
  a["zeta"] = 1;
  a["alpha"] = {{"b", 2}, {"a", 1}};
  a["mid"] = nlohmann::json::array({3, "x", nullptr, true, 0.5});
  nlohmann::json b = nlohmann::json::object();
  b["mid"] = nlohmann::json::array({3, "x", nullptr, true, 0.5});
  b["alpha"] = {{"a", 1}, {"b", 2}};
  b["zeta"] = 1;
  EXPECT_EQ(Canonical(a), R"({"alpha":{"a":1,"b":2},"mid":[3,"x",null,true,0.5],"zeta":1})");
  EXPECT_EQ(Canonical(a), Canonical(b));
  // Re-parsing the canonical text yields the same bytes (numbers round-trip).
  const auto c = nlohmann::json::parse(R"({"s":0.00392156862745098,"t":1e-4,"u":"é\n"})");
  EXPECT_EQ(Canonical(nlohmann::json::parse(Canonical(c))), Canonical(c));
  EXPECT_EQ(Canonical(c), "{\"s\":0.00392156862745098,\"t\":0.0001,\"u\":\"é\\n\"}");
}

}  // namespace
}  // namespace edgefleet::manifests
