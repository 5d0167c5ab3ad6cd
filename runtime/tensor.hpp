// Tensors as the runtime passes them around, and ONNX TensorProto files (golden data).
//
// A Tensor owns its bytes (row-major, little-endian, the layout ONNX and OpenCV use). No backend
// or protobuf type appears here.
//
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::runtime {

enum class DType { kFloat32, kFloat64, kFloat16, kInt8, kUInt8, kInt16, kInt32, kInt64, kBool };

// Names as in manifests ("float32", "int64", ...). Parse fails with kParse naming the value.
Result<DType> ParseDType(std::string_view name);
std::string_view ToString(DType dtype);
std::size_t ElementSize(DType dtype);

// Product of dimensions; fails with kInvalidArgument on a negative dimension or overflow.
Result<std::size_t> ElementCount(std::span<const std::int64_t> shape);
// "[360,1,8,8]"
std::string ShapeToString(std::span<const std::int64_t> shape);
// True when `shape` fits `pattern`, where -1 in the pattern matches any size.
bool ShapeMatches(std::span<const std::int64_t> shape, std::span<const std::int64_t> pattern);

struct Tensor {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;  // ElementCount(shape) * ElementSize(dtype) bytes

  // Builds a float32 tensor; fails with kInvalidArgument when the value count does not fit shape.
  static Result<Tensor> FromFloats(std::string name, std::vector<std::int64_t> shape,
                                   std::span<const float> values);
  // Views the data as T; empty when dtype does not match T (float, double, int64_t, ...).
  template <typename T>
  std::span<const T> As() const;
  template <typename T>
  std::span<T> AsMutable();
  // kInvalidArgument when data size disagrees with shape and dtype.
  Status Validate() const;
};

// TensorProto (onnx.proto) files as in ONNX's test data (input_0.pb, output_0.pb): raw_data or
// typed fields, any dtype above. Fails with kParse naming `source` and what is wrong (bad
// protobuf, unsupported data type, data size not matching dims), kLimit over `max_bytes`.
Result<Tensor> ParseTensorProto(std::string_view bytes, std::string_view source);
Result<Tensor> ReadTensorProto(const std::filesystem::path& path,
                               std::size_t max_bytes = 512u << 20);
Result<std::string> SerializeTensorProto(const Tensor& tensor);

// Explicit specialisations of a variable template are not implicitly inline: without `inline`
// clang emits one definition per translation unit and the link fails on duplicate symbols.
template <typename T>
inline constexpr bool kHasDType = false;
template <typename T>
inline constexpr DType kDTypeOf = DType::kFloat32;
#define EF_DTYPE_OF_(type, value)               \
  template <>                                   \
  inline constexpr bool kHasDType<type> = true; \
  template <>                                   \
  inline constexpr DType kDTypeOf<type> = value;
EF_DTYPE_OF_(float, DType::kFloat32)
EF_DTYPE_OF_(double, DType::kFloat64)
EF_DTYPE_OF_(std::int8_t, DType::kInt8)
EF_DTYPE_OF_(std::uint8_t, DType::kUInt8)
EF_DTYPE_OF_(std::int16_t, DType::kInt16)
EF_DTYPE_OF_(std::int32_t, DType::kInt32)
EF_DTYPE_OF_(std::int64_t, DType::kInt64)
#undef EF_DTYPE_OF_

template <typename T>
std::span<const T> Tensor::As() const {
  static_assert(kHasDType<T>, "no DType for this element type");
  if (dtype != kDTypeOf<T> || data.size() % sizeof(T) != 0) return {};
  return {reinterpret_cast<const T*>(data.data()), data.size() / sizeof(T)};
}

template <typename T>
std::span<T> Tensor::AsMutable() {
  static_assert(kHasDType<T>, "no DType for this element type");
  if (dtype != kDTypeOf<T> || data.size() % sizeof(T) != 0) return {};
  return {reinterpret_cast<T*>(data.data()), data.size() / sizeof(T)};
}

}  // namespace edgefleet::runtime
