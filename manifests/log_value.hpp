// The one way edgefleet shows text that came from outside (a bundle's entry names, a manifest's
// fields, an MQTT topic or payload, a request id, a server's error text) in a log line, a message
// on stderr or a JSON document.
//
// Every function here returns valid UTF-8 without control characters (C0, DEL, C1), bidirectional
// controls (U+061C, U+200E/F, U+202A-E, U+2066-9), zero-width characters (U+200B-D, U+FEFF) or line
// separators (U+2028/9): such code points are written as \uXXXX, control and invalid UTF-8 bytes
// as \xNN (newline as \n), and the backslash itself is doubled, so the escaped text reads back
// unambiguously and a hostile name can neither forge a line nor display as another name.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace edgefleet::manifests {

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view text);

// `text` escaped as above, without quotes. At most `max_bytes` of the input are shown (cut at a
// character boundary), followed by "..." when more was there.
std::string EscapeText(std::string_view text, std::size_t max_bytes = std::string_view::npos);

// A name for a message: quoted with `quote` and escaped (that quote inside becomes \'), the
// first 120 bytes shown: `entry 'model/a.onnx'`.
std::string QuoteName(std::string_view name, char quote = '\'');

// A composed message (an error text, a journaled reason) made fit to show: returned unchanged
// when it holds nothing EscapeText would escape except backslashes (names in it were already
// quoted with QuoteName), else EscapeText of it. So it is idempotent, and a message read back
// from an older journal with raw bytes in it still prints as valid UTF-8.
std::string SafeText(std::string_view message);

// A value for a key=value log line: bare when it is a plain token (printable ASCII without space,
// '"', '=' or '\'), else double-quoted and escaped (a " inside becomes \"), so a log line always
// splits back into its fields.
std::string LogValue(std::string_view value);

}  // namespace edgefleet::manifests
