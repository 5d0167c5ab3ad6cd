// Tensors and ONNX TensorProto files (see runtime/tensor.hpp).
//
// TensorProto goes through libonnx's generated protobuf classes; nothing protobuf-shaped leaves
// this file. Every size the file declares is checked (overflow included) before anything is
// allocated from it, so a hostile golden file costs an error, not memory.
#include "runtime/tensor.hpp"
#include "manifests/log_value.hpp"

#include <onnx/onnx_pb.h>

#include <array>
#include <bit>
#include <climits>
#include <cstring>
#include <fstream>
#include <limits>
#include <type_traits>

namespace edgefleet::runtime {

// Tensor data is "little-endian, the layout ONNX and OpenCV use"; we copy raw_data verbatim.
static_assert(std::endian::native == std::endian::little,
              "runtime/tensor.cpp assumes a little-endian host");

namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
  int onnx_type;  // onnx::TensorProto_DataType
};

constexpr std::array<DTypeInfo, 9> kDTypes = {{
    {DType::kFloat32, "float32", 4, onnx::TensorProto_DataType_FLOAT},
    {DType::kFloat64, "float64", 8, onnx::TensorProto_DataType_DOUBLE},
    {DType::kFloat16, "float16", 2, onnx::TensorProto_DataType_FLOAT16},
    {DType::kInt8, "int8", 1, onnx::TensorProto_DataType_INT8},
    {DType::kUInt8, "uint8", 1, onnx::TensorProto_DataType_UINT8},
    {DType::kInt16, "int16", 2, onnx::TensorProto_DataType_INT16},
    {DType::kInt32, "int32", 4, onnx::TensorProto_DataType_INT32},
    {DType::kInt64, "int64", 8, onnx::TensorProto_DataType_INT64},
    {DType::kBool, "bool", 1, onnx::TensorProto_DataType_BOOL},
}};

const DTypeInfo& Info(DType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[0];  // unreachable for valid enum values
}

const DTypeInfo* InfoFromOnnx(int onnx_type) {
  for (const auto& info : kDTypes) {
    if (info.onnx_type == onnx_type) return &info;
  }
  return nullptr;
}

std::string OnnxTypeName(int onnx_type) {
  if (onnx::TensorProto_DataType_IsValid(onnx_type)) {
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(onnx_type));
  }
  return "unknown";
}

// Narrows the int32_data values ONNX stores for small types, refusing values that do not fit
// rather than wrapping them silently (a wrapped golden value would fail parity for no reason
// anyone could see).
template <typename T>
Status CopyInt32Field(const google::protobuf::RepeatedField<std::int32_t>& field, std::int64_t lo,
                      std::int64_t hi, std::byte* out, std::string_view what) {
  for (int i = 0; i < field.size(); ++i) {
    const std::int32_t v = field.Get(i);
    if (v < lo || v > hi) {
      return Fail(ErrorCode::kParse, std::string(what) + "[" + std::to_string(i) + "] = " +
                                         std::to_string(v) + " does not fit the data type");
    }
    const T narrow = static_cast<T>(v);
    std::memcpy(out + static_cast<std::size_t>(i) * sizeof(T), &narrow, sizeof(T));
  }
  return Ok();
}

template <typename Field>
void CopyField(const Field& field, std::byte* out) {
  if (field.size() > 0) {
    std::memcpy(out, field.data(), static_cast<std::size_t>(field.size()) * sizeof(field.Get(0)));
  }
}

// Fills tensor.data from whichever typed field the data type uses; `count` is the element
// count from dims (already checked to fit memory).
Status ReadTypedField(const onnx::TensorProto& proto, std::size_t count, Tensor& tensor) {
  std::size_t have = 0;
  std::string_view field_name;
  switch (tensor.dtype) {
    case DType::kFloat32:
      have = static_cast<std::size_t>(proto.float_data_size());
      field_name = "float_data";
      break;
    case DType::kFloat64:
      have = static_cast<std::size_t>(proto.double_data_size());
      field_name = "double_data";
      break;
    case DType::kInt64:
      have = static_cast<std::size_t>(proto.int64_data_size());
      field_name = "int64_data";
      break;
    default:
      have = static_cast<std::size_t>(proto.int32_data_size());
      field_name = "int32_data";
      break;
  }
  if (have != count) {
    return Fail(ErrorCode::kParse, std::string(field_name) + " holds " + std::to_string(have) +
                                       " values, dims " + ShapeToString(tensor.shape) + " need " +
                                       std::to_string(count));
  }
  tensor.data.resize(count * ElementSize(tensor.dtype));
  std::byte* out = tensor.data.data();
  const auto& i32 = proto.int32_data();
  switch (tensor.dtype) {
    case DType::kFloat32:
      CopyField(proto.float_data(), out);
      return Ok();
    case DType::kFloat64:
      CopyField(proto.double_data(), out);
      return Ok();
    case DType::kInt64:
      CopyField(proto.int64_data(), out);
      return Ok();
    case DType::kInt32:
      CopyField(i32, out);
      return Ok();
    case DType::kInt16:
      return CopyInt32Field<std::int16_t>(i32, INT16_MIN, INT16_MAX, out, field_name);
    case DType::kInt8:
      return CopyInt32Field<std::int8_t>(i32, INT8_MIN, INT8_MAX, out, field_name);
    case DType::kUInt8:
      return CopyInt32Field<std::uint8_t>(i32, 0, UINT8_MAX, out, field_name);
    case DType::kBool:
      return CopyInt32Field<std::uint8_t>(i32, 0, 1, out, field_name);
    case DType::kFloat16:
      // ONNX keeps the IEEE half bit pattern in the low 16 bits of each int32.
      return CopyInt32Field<std::uint16_t>(i32, 0, UINT16_MAX, out, field_name);
  }
  return Fail(ErrorCode::kInternal, "unhandled data type");
}

Result<Tensor> FromProto(const onnx::TensorProto& proto) {
  if (proto.has_data_location() &&
      proto.data_location() == onnx::TensorProto_DataLocation_EXTERNAL) {
    return Fail(ErrorCode::kParse, "external data is not supported (data must be in the file)");
  }
  if (proto.has_segment()) {
    return Fail(ErrorCode::kParse, "segmented tensors are not supported");
  }
  const DTypeInfo* info = InfoFromOnnx(proto.data_type());
  if (info == nullptr) {
    return Fail(ErrorCode::kParse, "unsupported data type " + std::to_string(proto.data_type()) +
                                       " (" + OnnxTypeName(proto.data_type()) + ")");
  }
  Tensor tensor;
  tensor.name = proto.name();
  tensor.dtype = info->dtype;
  tensor.shape.assign(proto.dims().begin(), proto.dims().end());
  auto count = ElementCount(tensor.shape);
  if (!count) {
    return Fail(ErrorCode::kParse,
                "dims " + ShapeToString(tensor.shape) + ": " + count.error().message);
  }
  // Refuse byte counts that overflow size_t (ElementCount only guards the product of dims).
  if (*count > std::numeric_limits<std::size_t>::max() / info->size) {
    return Fail(ErrorCode::kParse, "dims " + ShapeToString(tensor.shape) + " are too large");
  }
  const std::size_t bytes = *count * info->size;
  if (proto.has_raw_data()) {
    if (proto.raw_data().size() != bytes) {
      return Fail(ErrorCode::kParse, "raw_data holds " + std::to_string(proto.raw_data().size()) +
                                         " bytes, dims " + ShapeToString(tensor.shape) + " of " +
                                         std::string(info->name) + " need " +
                                         std::to_string(bytes));
    }
    const auto* raw = reinterpret_cast<const std::byte*>(proto.raw_data().data());
    tensor.data.assign(raw, raw + bytes);
    if (tensor.dtype == DType::kBool) {
      for (std::size_t i = 0; i < bytes; ++i) {
        if (std::to_integer<unsigned>(tensor.data[i]) > 1) {
          return Fail(ErrorCode::kParse,
                      "raw_data[" + std::to_string(i) + "] is not a bool (0 or 1)");
        }
      }
    }
    return tensor;
  }
  EF_RETURN_IF_ERROR(ReadTypedField(proto, *count, tensor));
  return tensor;
}

}  // namespace

Result<DType> ParseDType(std::string_view name) {
  for (const auto& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return Fail(ErrorCode::kParse,
              "unknown dtype \"" + std::string(name) +
                  "\" (expected float32, float64, float16, int8, uint8, int16, int32, int64 "
                  "or bool)");
}

std::string_view ToString(DType dtype) { return Info(dtype).name; }

std::size_t ElementSize(DType dtype) { return Info(dtype).size; }

Result<std::size_t> ElementCount(std::span<const std::int64_t> shape) {
  std::size_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const std::int64_t dim = shape[i];
    if (dim < 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "dimension " + std::to_string(i) + " is negative (" + std::to_string(dim) + ")");
    }
    const auto udim = static_cast<std::uint64_t>(dim);
    if (udim != 0 && count > std::numeric_limits<std::size_t>::max() / udim) {
      return Fail(ErrorCode::kInvalidArgument,
                  "element count of " + ShapeToString(shape) + " overflows");
    }
    count *= static_cast<std::size_t>(udim);
  }
  return count;
}

std::string ShapeToString(std::span<const std::int64_t> shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);
  }
  out += ']';
  return out;
}

bool ShapeMatches(std::span<const std::int64_t> shape, std::span<const std::int64_t> pattern) {
  if (shape.size() != pattern.size()) return false;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (pattern[i] != -1 && pattern[i] != shape[i]) return false;
  }
  return true;
}

Result<Tensor> Tensor::FromFloats(std::string name, std::vector<std::int64_t> shape,
                                  std::span<const float> values) {
  auto count = ElementCount(shape);
  if (!count) return Unexpected(count.error().Wrap("tensor " + manifests::QuoteName(name, '"')));
  if (*count != values.size()) {
    return Fail(ErrorCode::kInvalidArgument, "tensor " + manifests::QuoteName(name, '"') +
                                                 ": shape " + ShapeToString(shape) + " needs " +
                                                 std::to_string(*count) + " values, found " +
                                                 std::to_string(values.size()));
  }
  Tensor tensor;
  tensor.name = std::move(name);
  tensor.dtype = DType::kFloat32;
  tensor.shape = std::move(shape);
  const auto bytes = std::as_bytes(values);
  tensor.data.assign(bytes.begin(), bytes.end());
  return tensor;
}

Status Tensor::Validate() const {
  auto count = ElementCount(shape);
  if (!count) return Unexpected(count.error().Wrap("tensor " + manifests::QuoteName(name, '"')));
  const std::size_t size = ElementSize(dtype);
  if (*count > std::numeric_limits<std::size_t>::max() / size || data.size() != *count * size) {
    return Fail(ErrorCode::kInvalidArgument,
                "tensor " + manifests::QuoteName(name, '"') + ": " + std::string(ToString(dtype)) +
                    " " + ShapeToString(shape) + " needs " + std::to_string(*count) + " x " +
                    std::to_string(size) + " bytes, found " + std::to_string(data.size()));
  }
  return Ok();
}

Result<Tensor> ParseTensorProto(std::string_view bytes, std::string_view source) {
  const std::string where(source);
  // protobuf's parsers take an int size.
  if (bytes.size() > static_cast<std::size_t>(INT_MAX)) {
    return Fail(ErrorCode::kLimit, where + ": " + std::to_string(bytes.size()) +
                                       " bytes is over protobuf's 2 GiB message limit");
  }
  onnx::TensorProto proto;
  bool parsed = false;
  try {
    parsed = proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  } catch (const std::exception& e) {  // protobuf reports by return value; bad_alloc can escape
    return Fail(ErrorCode::kParse, where + ": not an ONNX TensorProto (" + e.what() + ")");
  }
  if (!parsed) return Fail(ErrorCode::kParse, where + ": not an ONNX TensorProto (bad protobuf)");
  auto tensor = FromProto(proto);
  if (!tensor) return Fail(ErrorCode::kParse, where + ": " + tensor.error().message);
  return tensor;
}

Result<Tensor> ReadTensorProto(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::string where = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, where + ": cannot open");
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Fail(ErrorCode::kIo, where + ": " + ec.message());
  if (size > max_bytes) {
    return Fail(ErrorCode::kLimit, where + ": " + std::to_string(size) + " bytes, over the " +
                                       std::to_string(max_bytes) + "-byte limit");
  }
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  // A file that shrank or grew between stat and read is refused rather than half-parsed.
  if (static_cast<std::size_t>(in.gcount()) != bytes.size() || in.peek() != EOF) {
    return Fail(ErrorCode::kIo, where + ": changed size while reading");
  }
  return ParseTensorProto(bytes, where);
}

Result<std::string> SerializeTensorProto(const Tensor& tensor) {
  EF_RETURN_IF_ERROR(tensor.Validate());
  onnx::TensorProto proto;
  proto.set_name(tensor.name);
  proto.set_data_type(Info(tensor.dtype).onnx_type);
  for (const std::int64_t dim : tensor.shape) proto.add_dims(dim);
  // raw_data, as ONNX's own test data does: one copy, exact bits for every dtype.
  proto.set_raw_data(reinterpret_cast<const char*>(tensor.data.data()), tensor.data.size());
  std::string out;
  try {
    if (!proto.SerializeToString(&out)) {
      return Fail(ErrorCode::kInternal,
                  "tensor " + manifests::QuoteName(tensor.name, '"') + ": serialization failed");
    }
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kInternal, "tensor " + manifests::QuoteName(tensor.name, '"') +
                                          ": serialization failed: " + e.what());
  }
  return out;
}

}  // namespace edgefleet::runtime
