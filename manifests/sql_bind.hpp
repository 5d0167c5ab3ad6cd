// One Bind for the project's two SQL layers (manifests/sqlite_db.hpp, deploy/collector/pg_db.hpp):
// a value of any type they take goes to the statement's own BindInt, BindReal, BindText or Null.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

namespace edgefleet::manifests {

// Statement derives from SqlBinder<Statement> and befriends it.
template <class Statement>
class SqlBinder {
 public:
  // Integers (as int64; unsigned values above INT64_MAX are the caller's to refuse), floating
  // point, anything convertible to std::string_view, std::optional of those (nullopt: NULL).
  template <typename T>
  Statement& Bind(int index, const T& value) {
    Statement& self = static_cast<Statement&>(*this);
    if constexpr (IsOptional<T>::value) {
      return value ? Bind(index, *value) : self.Null(index);
    } else if constexpr (std::is_same_v<T, bool>) {
      return self.BindInt(index, value ? 1 : 0);
    } else if constexpr (std::is_integral_v<T> || std::is_enum_v<T>) {
      return self.BindInt(index, static_cast<std::int64_t>(value));
    } else if constexpr (std::is_floating_point_v<T>) {
      return self.BindReal(index, static_cast<double>(value));
    } else {
      return self.BindText(index, std::string_view(value));
    }
  }

 private:
  template <typename T>
  struct IsOptional : std::false_type {};
  template <typename T>
  struct IsOptional<std::optional<T>> : std::true_type {};
};

}  // namespace edgefleet::manifests
