// The project-wide error channel: Result<T> holds a value or an Error.
//
// Shaped like C++23's std::expected (has_value, value, error, operator*, operator->) so it can
// become that later. Every fallible operation in edgefleet returns one; exceptions from
// third-party code are caught at the module edge and turned into an Error.
//
// Thread safety: a Result is a plain value; the usual rules for values apply.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace edgefleet {

enum class ErrorCode {
  kInvalidArgument,  // the caller passed something unusable
  kParse,            // a document is not well-formed or violates its schema
  kSignature,        // signatures missing, wrong, unknown key or below threshold
  kExpired,          // a signed document is past its expiry
  kIntegrity,        // a size or hash does not match what was declared
  kUnsafeArchive,    // an archive entry that must never be unpacked
  kLimit,            // a size, count or time cap was exceeded
  kIo,               // the file system or a stream failed
  kNotFound,         // a named thing does not exist
  kUnsupported,      // a format, version or feature this build does not handle
  kInternal,         // a bug or an unexpected library failure
  kAborted,          // stopped on purpose before the end (cancelled, superseded), not a fault
};

std::string_view ToString(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  // Human text with context, e.g. "manifest.json: signed.files[3].sha256: expected 64 hex
  // digits, found 12". Several problems are separated by newlines.
  std::string message;

  // Returns a copy whose message is prefixed with `context + ": "` (on every line).
  Error Wrap(std::string_view context) const;
};

// The error side of a Result, spelled like std::unexpected.
class Unexpected {
 public:
  explicit Unexpected(Error error) : error_(std::move(error)) {}
  Error& error() & { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
};

inline Unexpected Fail(ErrorCode code, std::string message) {
  return Unexpected(Error{code, std::move(message)});
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Unexpected unexpected)                                         // NOLINT: implicit
      : data_(std::in_place_index<1>, std::move(unexpected).error()) {}
  Result(Error error) : data_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool has_value() const { return data_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(data_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(data_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(data_));
  }
  const Error& error() const {
    assert(!has_value());
    return std::get<1>(data_);
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> data_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected unexpected) : error_(std::move(unexpected).error()), ok_(false) {}  // NOLINT
  Result(Error error) : error_(std::move(error)), ok_(false) {}                         // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const { assert(ok_); }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return Status(); }

}  // namespace edgefleet

// Propagates the error of a Result-returning expression; evaluates to nothing on success.
#define EF_RETURN_IF_ERROR(expr)                                         \
  do {                                                                   \
    auto ef_status_ = (expr);                                            \
    if (!ef_status_) return ::edgefleet::Unexpected(ef_status_.error()); \
  } while (0)

// Declares `lhs` from a Result-returning expression, or returns its error.
#define EF_CONCAT_INNER_(a, b) a##b
#define EF_CONCAT_(a, b) EF_CONCAT_INNER_(a, b)
#define EF_ASSIGN_OR_RETURN(lhs, expr) \
  EF_ASSIGN_OR_RETURN_IMPL_(EF_CONCAT_(ef_result_, __LINE__), lhs, expr)
#define EF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)        \
  auto tmp = (expr);                                     \
  if (!tmp) return ::edgefleet::Unexpected(tmp.error()); \
  lhs = std::move(tmp).value()
