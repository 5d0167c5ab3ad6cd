// Error codes and context wrapping for Result<T> (see manifests/result.hpp).
#include "manifests/result.hpp"

namespace edgefleet {

std::string_view ToString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kParse:
      return "parse error";
    case ErrorCode::kSignature:
      return "signature error";
    case ErrorCode::kExpired:
      return "expired";
    case ErrorCode::kIntegrity:
      return "integrity error";
    case ErrorCode::kUnsafeArchive:
      return "unsafe archive";
    case ErrorCode::kLimit:
      return "limit exceeded";
    case ErrorCode::kIo:
      return "I/O error";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kInternal:
      return "internal error";
    case ErrorCode::kAborted:
      return "aborted";
  }
  // Reachable only through a cast of an out-of-range integer; still return something printable.
  return "unknown error";
}

Error Error::Wrap(std::string_view context) const {
  // Every line gets the prefix so a multi-problem error stays greppable line by line.
  std::string prefix(context);
  prefix += ": ";
  std::string out;
  out.reserve(message.size() + prefix.size());
  std::size_t start = 0;
  while (true) {
    const std::size_t end = message.find('\n', start);
    out += prefix;
    if (end == std::string::npos) {
      out.append(message, start, std::string::npos);
      break;
    }
    out.append(message, start, end - start + 1);
    start = end + 1;
  }
  return Error{code, std::move(out)};
}

}  // namespace edgefleet
