#include "manifests/log_value.hpp"

#include <cstdint>

namespace edgefleet::manifests {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::size_t kMaxNameShown = 120;

// Decodes one strict UTF-8 sequence at `text[i]`. Returns its length (0 when invalid) and the
// code point in `cp`.
std::size_t DecodeUtf8(std::string_view text, std::size_t i, std::uint32_t& cp) {
  const auto c = static_cast<unsigned char>(text[i]);
  std::size_t len = 0;
  if (c < 0x80) {
    cp = c;
    return 1;
  } else if ((c & 0xe0) == 0xc0) {
    len = 2;
    cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(text[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return len;
}

// Code points that change how the text around them displays, or display as nothing.
bool IsInvisibleOrBidi(std::uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) ||                      // C1 controls
         cp == 0x061c || cp == 0x200e || cp == 0x200f ||    // Arabic letter mark, LRM, RLM
         (cp >= 0x202a && cp <= 0x202e) ||                  // embeddings and overrides
         (cp >= 0x2066 && cp <= 0x2069) ||                  // isolates
         (cp >= 0x200b && cp <= 0x200d) || cp == 0xfeff ||  // zero-width characters, BOM
         cp == 0x2028 || cp == 0x2029;                      // line and paragraph separators
}

void AppendByte(std::string& out, unsigned char c) {
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

void AppendEscaped(std::string& out, std::string_view text, std::size_t max_bytes, char quote) {
  std::size_t i = 0;
  while (i < text.size()) {
    if (i >= max_bytes) {
      out += "...";
      return;
    }
    std::uint32_t cp = 0;
    const std::size_t len = DecodeUtf8(text, i, cp);
    const auto c = static_cast<unsigned char>(text[i]);
    if (len == 0) {
      AppendByte(out, c);
      ++i;
      continue;
    }
    if (cp == '\n') {
      out += "\\n";
    } else if (cp < 0x20 || cp == 0x7f) {
      AppendByte(out, c);
    } else if (cp == '\\' || (quote != 0 && cp == static_cast<unsigned char>(quote))) {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (IsInvisibleOrBidi(cp)) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xf];
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp = 0;
    const std::size_t len = DecodeUtf8(text, i, cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string EscapeText(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(text.size());
  AppendEscaped(out, text, max_bytes, 0);
  return out;
}

std::string SafeText(std::string_view message) {
  for (std::size_t i = 0; i < message.size();) {
    std::uint32_t cp = 0;
    const std::size_t len = DecodeUtf8(message, i, cp);
    if (len == 0 || cp < 0x20 || cp == 0x7f || IsInvisibleOrBidi(cp)) return EscapeText(message);
    i += len;
  }
  return std::string(message);
}

std::string QuoteName(std::string_view name, char quote) {
  std::string out(1, quote);
  AppendEscaped(out, name, kMaxNameShown, quote);
  out += quote;
  return out;
}

std::string LogValue(std::string_view value) {
  bool plain = !value.empty();
  for (unsigned char c : value) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) plain = false;
  }
  if (plain) return std::string(value);
  std::string out = "\"";
  AppendEscaped(out, value, std::string_view::npos, '"');
  return out + "\"";
}

}  // namespace edgefleet::manifests
