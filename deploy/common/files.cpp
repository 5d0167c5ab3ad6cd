#include "deploy/common/files.hpp"

#include <charconv>
#include <map>

namespace edgefleet::deploy {

// "HOST:PORT" or "[IPv6]:PORT"; the port in [min_port, 65535].
Result<HostPort> ParseHostPort(std::string_view flag, const std::string& text, int min_port) {
  auto refuse = [&] {
    return Fail(ErrorCode::kInvalidArgument, std::string(flag) + ": expected HOST:PORT (port " +
                                                 std::to_string(min_port) + "..65535), found '" +
                                                 text + "'");
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return refuse();
  HostPort out;
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, out.port);
  if (ec != std::errc() || ptr != end || out.port < min_port || out.port > 65535 ||
      out.host.empty()) {
    return refuse();
  }
  return out;
}

Result<std::chrono::seconds> ParseDuration(std::string_view text) {
  if (text.size() >= 2) {
    std::int64_t amount = 0;
    const char* begin = text.data();
    const char* unit = text.data() + text.size() - 1;
    auto [ptr, ec] = std::from_chars(begin, unit, amount);
    // At most 100 years, so adding it to a time point cannot overflow.
    if (ec == std::errc() && ptr == unit && amount > 0) {
      static const std::map<char, std::int64_t> kSeconds = {
          {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
      auto it = kSeconds.find(*unit);
      if (it != kSeconds.end() && amount <= 36500LL * 86400 / it->second) {
        return std::chrono::seconds(amount * it->second);
      }
    }
  }
  return Fail(ErrorCode::kInvalidArgument,
              "expected a duration like 90d/12h/30m/45s, found '" + std::string(text) + "'");
}

}  // namespace edgefleet::deploy
