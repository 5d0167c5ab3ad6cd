// The one way edgefleet writes a value into a key=value log line (the agent's and the
// collector's logs alike).
//
// Thread safety: a pure function.
#pragma once

#include <string>
#include <string_view>

namespace edgefleet::manifests {

// Bare when `value` is a plain token (printable ASCII without space, '"', '=' or '\'), else
// double-quoted with '"' '\' escaped, newline as \n and other control bytes as \xNN, so a log line
// always splits back into its fields and a hostile value (a request id, a URL, a server's error
// text, an MQTT topic) cannot forge another line or field.
std::string LogValue(std::string_view value);

}  // namespace edgefleet::manifests
