// Joining strings with a separator: the one copy every module uses for messages and log values.
//
// Thread safety: a pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace edgefleet {

// "a, b, c" for Join({"a", "b", "c"}, ", "); "" for no items.
inline std::string Join(const std::vector<std::string>& items, std::string_view separator) {
  std::string text;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) text += separator;
    text += items[i];
  }
  return text;
}

}  // namespace edgefleet
