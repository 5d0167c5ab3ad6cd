// RFC 3339 UTC timestamps (see manifests/time.hpp).
#include "manifests/time.hpp"

#include <cstdio>

#include "manifests/log_value.hpp"

namespace edgefleet::manifests {
namespace {

constexpr std::string_view kExpectedForm = "expected RFC 3339 UTC time like 2026-11-21T05:00:00Z";

bool Digits(std::string_view text, std::size_t pos, std::size_t count, int* out) {
  int value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  *out = value;
  return true;
}

}  // namespace

Result<Timestamp> ParseTimestamp(std::string_view text) {
  // Only one spelling is accepted (upper-case T and Z, no offset, no fractions) so that a
  // signed document has exactly one textual form for each instant.
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  const bool shape_ok = text.size() == 20 && Digits(text, 0, 4, &year) && text[4] == '-' &&
                        Digits(text, 5, 2, &month) && text[7] == '-' && Digits(text, 8, 2, &day) &&
                        text[10] == 'T' && Digits(text, 11, 2, &hour) && text[13] == ':' &&
                        Digits(text, 14, 2, &minute) && text[16] == ':' &&
                        Digits(text, 17, 2, &second) && text[19] == 'Z';
  if (!shape_ok) {
    return Fail(ErrorCode::kParse, std::string(kExpectedForm) + ", found " + QuoteName(text, '"'));
  }
  const std::chrono::year_month_day date{std::chrono::year{year},
                                         std::chrono::month{static_cast<unsigned>(month)},
                                         std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) {
    return Fail(ErrorCode::kParse, "expected a valid calendar date, found " + QuoteName(text, '"'));
  }
  // Leap seconds (":60") cannot be represented by sys_seconds; refusing them is the honest option.
  if (hour > 23 || minute > 59 || second > 59) {
    return Fail(ErrorCode::kParse,
                "expected a time of day from 00:00:00 to 23:59:59, found " + QuoteName(text, '"'));
  }
  return Timestamp{std::chrono::sys_days{date}} + std::chrono::hours{hour} +
         std::chrono::minutes{minute} + std::chrono::seconds{second};
}

std::string FormatTimestamp(Timestamp t) {
  const auto days = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day date{days};
  const std::chrono::hh_mm_ss<std::chrono::seconds> tod{t - days};
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02d:%02d:%02dZ",
                static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                static_cast<unsigned>(date.day()), static_cast<int>(tod.hours().count()),
                static_cast<int>(tod.minutes().count()), static_cast<int>(tod.seconds().count()));
  return buffer;
}

Timestamp Now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace edgefleet::manifests
