#include "deploy/files.hpp"

#include <charconv>

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

}  // namespace edgefleet::deploy
