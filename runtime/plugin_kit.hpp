// What every in-tree backend plugin (runtime/opencv, runtime/torch, runtime/onnxruntime) does
// the same way at the C boundary: a failed step as a status and a reason, the reason copied into
// the caller's `err` buffer, the model file read whole, the manifest's tensor specs copied out of
// the call, and every exception turned into a status. Header-only and built on the ABI header
// and the standard library alone, so a plugin that includes it still needs nothing else of
// edgefleet (no library to link).
//
// Thread safety: free functions without shared state.
#pragma once

#include <edgefleet/backend_plugin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace edgefleet::runtime::plugin_kit {

// A failed step: the ABI status and the reason.
struct Failure {
  std::int32_t status = EF_INTERNAL;
  std::string message;
};
using Check = std::optional<Failure>;  // nullopt: fine

// Writes the reason into `err` (truncated to `err_size`, NUL-terminated) and returns the status.
inline std::int32_t Report(const Failure& failure, char* err, std::size_t err_size) {
  if (err != nullptr && err_size > 0) {
    const std::size_t n = std::min(failure.message.size(), err_size - 1);
    std::memcpy(err, failure.message.data(), n);
    err[n] = '\0';
  }
  return failure.status;
}

// An ef_dtype's name as manifests spell it ("float32"), for messages; "dtype <n>" for a value
// the ABI does not define.
inline std::string DTypeName(std::int32_t dtype) {
  switch (dtype) {
    case EF_FLOAT32:
      return "float32";
    case EF_UINT8:
      return "uint8";
    case EF_INT8:
      return "int8";
    case EF_INT16:
      return "int16";
    case EF_INT32:
      return "int32";
    case EF_INT64:
      return "int64";
    case EF_BOOL:
      return "bool";
    case EF_FLOAT16:
      return "float16";
    case EF_FLOAT64:
      return "float64";
    default:
      return "dtype " + std::to_string(dtype);
  }
}

// One declared tensor, owning its strings (the spec the agent passed lives only for the call).
struct Declared {
  std::string name;
  std::int32_t dtype = EF_FLOAT32;
  std::vector<std::int64_t> shape;
};

inline std::vector<Declared> CopySpecs(const ef_tensor_spec* specs, std::size_t count) {
  std::vector<Declared> out;
  for (std::size_t i = 0; i < count; ++i) {
    out.push_back({specs[i].name, specs[i].dtype,
                   std::vector<std::int64_t>(specs[i].shape, specs[i].shape + specs[i].rank)});
  }
  return out;
}

// Models are verified by SHA-256 before a plugin reads them; the cap only keeps a corrupt slot
// from turning into an allocation of arbitrary size (protobuf cannot parse more than 2 GiB).
inline constexpr std::uintmax_t kMaxModelBytes = std::uintmax_t{2} << 30;

// Reads a model file whole into `bytes` (a std::string or a std::vector of bytes): EF_IO naming
// the file, or EF_LIMIT over the cap.
template <typename Bytes>
Check ReadModelFile(const char* path, Bytes& bytes) {
  const std::string where(path);
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Failure{EF_IO, where + ": " + ec.message()};
  if (size > kMaxModelBytes) {
    return Failure{EF_LIMIT, where + ": " + std::to_string(size) + " bytes, over 2 GiB"};
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Failure{EF_IO, where + ": cannot open"};
  bytes.assign(static_cast<std::size_t>(size), 0);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::size_t>(in.gcount()) != bytes.size()) {
    return Failure{EF_IO, where + ": short read"};
  }
  return std::nullopt;
}

// Runs `step` (returning a Check) and turns every exception into a failure whose message is
// `prefix` and the reason: bad_alloc is EF_LIMIT, anything else EF_INTERNAL. `reason` gives the
// text of a std::exception (an engine's exception type may carry a better one than what()).
// (The agent puts the backend's name in front of every message.)
template <typename Step, typename Reason>
std::int32_t Guarded(Step&& step, const std::string& prefix, char* err, std::size_t err_size,
                     Reason&& reason) {
  try {
    if (auto failed = step()) return Report(*failed, err, err_size);
    return EF_OK;
  } catch (const std::bad_alloc&) {
    return Report({EF_LIMIT, prefix + "out of memory"}, err, err_size);
  } catch (const std::exception& e) {
    return Report({EF_INTERNAL, prefix + reason(e)}, err, err_size);
  } catch (...) {
    return Report({EF_INTERNAL, prefix + "unknown exception"}, err, err_size);
  }
}

}  // namespace edgefleet::runtime::plugin_kit

// The exports every in-tree plugin defines alike, expanded once at file scope of its source:
// abi_version, describe (returns &backend->info), run (calls the file's own Guarded and Run) and
// destroy. load and release_session stay the plugin's own; create and self_test too, or the
// second macro below.
// NOLINTBEGIN(cppcoreguidelines-macro-usage)
#define EDGEFLEET_PLUGIN_KIT_COMMON_EXPORTS()                                                     \
  extern "C" EF_BACKEND_EXPORT uint32_t edgefleet_backend_abi_version(void) {                     \
    return EDGEFLEET_BACKEND_ABI_VERSION;                                                         \
  }                                                                                               \
  extern "C" EF_BACKEND_EXPORT const ef_backend_info* edgefleet_backend_describe(                 \
      const ef_backend* backend) {                                                                \
    return &backend->info;                                                                        \
  }                                                                                               \
  extern "C" EF_BACKEND_EXPORT int32_t edgefleet_backend_run(                                     \
      ef_session* session, const ef_tensor* inputs, size_t input_count,                           \
      const ef_output_sink* sink, char* err, size_t err_size) {                                   \
    return Guarded([&] { return Run(*session, inputs, input_count, *sink); }, "", err, err_size); \
  }                                                                                               \
  extern "C" EF_BACKEND_EXPORT void edgefleet_backend_destroy(ef_backend* backend) {              \
    delete backend;                                                                               \
  }

// create and self_test for a plugin whose file defines, in scope of the expansion,
//   Check Create(const char* options_json, std::unique_ptr<ef_backend>& made) and
//   Check SelfTest(ef_backend& backend)
// (onnxruntime, tflite): create reports a failure as "create: <reason>" and hands the backend
// over only on success.
#define EDGEFLEET_PLUGIN_KIT_CREATE_EXPORTS()                                                      \
  extern "C" EF_BACKEND_EXPORT int32_t edgefleet_backend_create(                                   \
      const char* options_json, ef_backend** backend, char* err, size_t err_size) {                \
    std::unique_ptr<ef_backend> made;                                                              \
    const std::int32_t status =                                                                    \
        Guarded([&] { return Create(options_json, made); }, "create: ", err, err_size);            \
    if (status == EF_OK) *backend = made.release();                                                \
    return status;                                                                                 \
  }                                                                                                \
  extern "C" EF_BACKEND_EXPORT int32_t edgefleet_backend_self_test(ef_backend* backend, char* err, \
                                                                   size_t err_size) {              \
    return Guarded([&] { return SelfTest(*backend); }, "", err, err_size);                         \
  }
// NOLINTEND(cppcoreguidelines-macro-usage)
