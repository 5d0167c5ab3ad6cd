// Reading TensorFlow Lite model files (runtime/tflite_model.hpp): the few tables of TFLite's
// schema.fbs edgefleet needs, through the bounds-checked reader of runtime/tflite/flatbuffer.hpp.
#include "runtime/tflite_model.hpp"

#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <type_traits>
#include <utility>

#include "manifests/files.hpp"
#include "manifests/log_value.hpp"
#include "runtime/tflite/flatbuffer.hpp"

namespace edgefleet::runtime {
namespace {

constexpr std::string_view kBuiltinNames[] = {
#include "runtime/tflite_builtin_ops.inc"
};
static_assert(std::size(kBuiltinNames) == 162 && kBuiltinNames[kTfliteCustomCode] == "CUSTOM");

// Field numbers of the tables read (schema.fbs; a field's vtable entry is at 4 + 2 * number).
constexpr int kModelVersion = 0;
constexpr int kModelOperatorCodes = 1;
constexpr int kModelSubgraphs = 2;
constexpr int kCodeDeprecatedBuiltin = 0;  // byte
constexpr int kCodeCustomCode = 1;         // string
constexpr int kCodeVersion = 2;            // int, default 1
constexpr int kCodeBuiltin = 3;            // int (BuiltinOperator)
constexpr int kSubgraphTensors = 0;
constexpr int kSubgraphInputs = 1;
constexpr int kSubgraphOutputs = 2;
constexpr int kSubgraphOperators = 3;
constexpr int kTensorShape = 0;  // [int]
constexpr int kTensorType = 1;   // byte (TensorType)
constexpr int kTensorName = 3;
constexpr int kTensorShapeSignature = 7;  // [int], -1 for a dynamic dimension
constexpr int kOperatorOpcodeIndex = 0;   // uint

constexpr std::string_view kIdentifier = "TFL3";  // bytes 4-7

// TensorType values 0-18 (schema.fbs): the name, and the dtype edgefleet tensors hold it as (none
// for strings, complex numbers, resources, ...).
struct TensorType {
  std::string_view name;
  std::optional<DType> dtype;
};
constexpr TensorType kTensorTypes[] = {
    {"FLOAT32", DType::kFloat32}, {"FLOAT16", DType::kFloat16}, {"INT32", DType::kInt32},
    {"UINT8", DType::kUInt8},     {"INT64", DType::kInt64},     {"STRING", std::nullopt},
    {"BOOL", DType::kBool},       {"INT16", DType::kInt16},     {"COMPLEX64", std::nullopt},
    {"INT8", DType::kInt8},       {"FLOAT64", DType::kFloat64}, {"COMPLEX128", std::nullopt},
    {"UINT64", std::nullopt},     {"RESOURCE", std::nullopt},   {"VARIANT", std::nullopt},
    {"UINT32", std::nullopt},     {"UINT16", std::nullopt},     {"INT4", std::nullopt},
    {"BFLOAT16", std::nullopt}};

std::optional<TensorType> FindTensorType(std::int8_t type) {
  if (type < 0 || static_cast<std::size_t>(type) >= std::size(kTensorTypes)) return std::nullopt;
  return kTensorTypes[type];
}

std::string Index(std::string_view path, std::size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

std::string Child(std::string_view path, std::string_view name) {
  return std::string(path) + "." + std::string(name);
}

using Table = tflite::FlatTable;
using Vector = tflite::FlatVector;

// tflite::FlatBytes (runtime/tflite/flatbuffer.hpp, the checks) with edgefleet's Result: every
// error names the file, the schema path and the byte offset.
class FlatReader {
 public:
  FlatReader(std::string_view bytes, std::string_view where) : bytes_(bytes), where_(where) {}

  Unexpected Problem(std::string_view path, const std::string& what,
                     ErrorCode code = ErrorCode::kParse) const {
    return Fail(code, std::string(where_) + ": " + std::string(path) + ": " + what);
  }

  Result<std::uint64_t> Follow(std::uint64_t slot, std::string_view path) const {
    std::uint64_t pos = 0;
    if (!bytes_.Follow(slot, path, pos)) return Failed();
    return pos;
  }

  Result<Table> TableAt(std::uint64_t pos, std::string_view path) const {
    Table table;
    if (!bytes_.TableAt(pos, path, table)) return Failed();
    return table;
  }

  template <typename T>
  Result<T> Scalar(const Table& table, int field, T fallback, std::string_view path) const {
    T value{};
    if (!bytes_.Scalar(table, field, fallback, path, value)) return Failed();
    return value;
  }

  Result<std::optional<Vector>> VectorField(const Table& table, int field, std::size_t element,
                                            std::string_view path) const {
    std::optional<Vector> vector;
    if (!bytes_.VectorField(table, field, element, path, vector)) return Failed();
    return vector;
  }

  Result<std::optional<std::string_view>> StringField(const Table& table, int field,
                                                      std::string_view path) const {
    std::optional<std::string_view> text;
    if (!bytes_.StringField(table, field, path, text)) return Failed();
    return text;
  }

  Result<Table> TableElement(const Vector& vector, std::uint32_t i, std::string_view path) const {
    Table table;
    if (!bytes_.TableElement(vector, i, path, table)) return Failed();
    return table;
  }

  template <typename T>
  T Element(const Vector& vector, std::uint32_t i) const {
    return bytes_.Element<T>(vector, i);
  }

 private:
  Unexpected Failed() const {
    return Fail(ErrorCode::kParse, std::string(where_) + ": " + bytes_.problem());
  }

  tflite::FlatBytes bytes_;
  std::string_view where_;
};

// A name from the file (a custom operator's, a tensor's): within the cap and valid UTF-8, so it
// can go into a manifest (JSON) and print escaped.
Status CheckName(const FlatReader& reader, std::string_view name, std::string_view path) {
  if (name.size() > kMaxTfliteNameBytes) {
    return reader.Problem(path,
                          std::to_string(name.size()) + " bytes, over the limit of " +
                              std::to_string(kMaxTfliteNameBytes) + " (" +
                              manifests::QuoteName(name) + ")",
                          ErrorCode::kLimit);
  }
  if (!manifests::IsValidUtf8(name)) {
    return reader.Problem(path, manifests::QuoteName(name) + " is not valid UTF-8");
  }
  return Ok();
}

// kLimit when `vector` holds more than `cap` items (`noun`), before anything is read from it.
Status CheckCap(const FlatReader& reader, const Vector& vector, std::size_t cap,
                std::string_view noun, std::string_view path) {
  if (vector.count <= cap) return Ok();
  return reader.Problem(path,
                        std::to_string(vector.count) + " " + std::string(noun) +
                            ", over the limit of " + std::to_string(cap),
                        ErrorCode::kLimit);
}

struct OperatorCode {
  std::int32_t code = 0;
  std::int32_t version = 1;
  std::string name;
  bool custom = false;
};

Result<OperatorCode> ReadOperatorCode(const FlatReader& reader, const Table& table,
                                      const std::string& path) {
  OperatorCode out;
  EF_ASSIGN_OR_RETURN(auto deprecated,
                      reader.Scalar<std::int8_t>(table, kCodeDeprecatedBuiltin, 0,
                                                 Child(path, "deprecated_builtin_code")));
  EF_ASSIGN_OR_RETURN(auto builtin, reader.Scalar<std::int32_t>(table, kCodeBuiltin, 0,
                                                                Child(path, "builtin_code")));
  EF_ASSIGN_OR_RETURN(out.version,
                      reader.Scalar<std::int32_t>(table, kCodeVersion, 1, Child(path, "version")));
  const std::string custom_path = Child(path, "custom_code");
  EF_ASSIGN_OR_RETURN(auto custom_code, reader.StringField(table, kCodeCustomCode, custom_path));
  // Old writers set only the byte field, new ones both (the byte one capped at 127); TFLite
  // reads the larger.
  out.code = std::max<std::int32_t>(deprecated, builtin);
  out.custom = out.code == kTfliteCustomCode;
  if (!out.custom) {
    out.name = TfliteBuiltinName(out.code);
    return out;
  }
  if (!custom_code || custom_code->empty()) {
    return reader.Problem(path, "a CUSTOM operator without a custom_code name");
  }
  EF_RETURN_IF_ERROR(CheckName(reader, *custom_code, custom_path));
  out.name = std::string(*custom_code);
  return out;
}

Result<std::vector<OperatorCode>> ReadOperatorCodes(const FlatReader& reader, const Table& model) {
  const std::string path = "operator_codes";
  EF_ASSIGN_OR_RETURN(auto codes, reader.VectorField(model, kModelOperatorCodes, 4, path));
  std::vector<OperatorCode> out;
  if (!codes) return out;
  EF_RETURN_IF_ERROR(CheckCap(reader, *codes, kMaxTfliteOperatorCodes, "entries", path));
  for (std::uint32_t i = 0; i < codes->count; ++i) {
    const std::string item = Index(path, i);
    EF_ASSIGN_OR_RETURN(auto table, reader.TableElement(*codes, i, item));
    EF_ASSIGN_OR_RETURN(auto code, ReadOperatorCode(reader, table, item));
    out.push_back(std::move(code));
  }
  return out;
}

Result<std::vector<std::int64_t>> ReadShape(const FlatReader& reader, const Table& tensor,
                                            const std::string& path) {
  // shape_signature keeps the dynamic dimensions (-1) that shape has filled in with 1.
  std::string shape_path = Child(path, "shape_signature");
  EF_ASSIGN_OR_RETURN(auto dims, reader.VectorField(tensor, kTensorShapeSignature, 4, shape_path));
  if (!dims) {
    shape_path = Child(path, "shape");
    EF_ASSIGN_OR_RETURN(dims, reader.VectorField(tensor, kTensorShape, 4, shape_path));
  }
  std::vector<std::int64_t> shape;
  if (!dims) return shape;
  EF_RETURN_IF_ERROR(CheckCap(reader, *dims, kMaxTfliteRank, "dimensions", shape_path));
  for (std::uint32_t k = 0; k < dims->count; ++k) {
    const std::int32_t dim = reader.Element<std::int32_t>(*dims, k);
    if (dim < -1) {
      return reader.Problem(Index(shape_path, k), "dimension " + std::to_string(dim) +
                                                      " (expected -1 for dynamic, or 0 or more)");
    }
    shape.push_back(dim);
  }
  return shape;
}

// Subgraph 0's inputs or outputs (`field`): tensor indices into `tensors`.
Result<std::vector<TensorInfo>> ReadGraphTensors(const FlatReader& reader, const Table& subgraph,
                                                 int field, const std::optional<Vector>& tensors,
                                                 const std::string& path) {
  EF_ASSIGN_OR_RETURN(auto indices, reader.VectorField(subgraph, field, 4, path));
  std::vector<TensorInfo> out;
  if (!indices) return out;
  EF_RETURN_IF_ERROR(CheckCap(reader, *indices, kMaxTfliteGraphTensors, "tensors", path));
  const std::uint32_t tensor_count = tensors ? tensors->count : 0;
  for (std::uint32_t i = 0; i < indices->count; ++i) {
    const std::int32_t index = reader.Element<std::int32_t>(*indices, i);
    if (index < 0 || static_cast<std::uint32_t>(index) >= tensor_count) {
      return reader.Problem(Index(path, i), "tensor index " + std::to_string(index) +
                                                " is outside subgraphs[0].tensors (" +
                                                std::to_string(tensor_count) + " tensors)");
    }
    const std::string tensor_path = Index("subgraphs[0].tensors", static_cast<std::size_t>(index));
    EF_ASSIGN_OR_RETURN(auto tensor, reader.TableElement(*tensors, index, tensor_path));
    TensorInfo info;
    EF_ASSIGN_OR_RETURN(auto name,
                        reader.StringField(tensor, kTensorName, Child(tensor_path, "name")));
    if (name) {
      EF_RETURN_IF_ERROR(CheckName(reader, *name, Child(tensor_path, "name")));
      info.name = std::string(*name);
    }
    EF_ASSIGN_OR_RETURN(
        auto type, reader.Scalar<std::int8_t>(tensor, kTensorType, 0, Child(tensor_path, "type")));
    const auto known = FindTensorType(type);
    if (!known || !known->dtype) {
      return reader.Problem(Index(path, i),
                            "tensor " + manifests::QuoteName(info.name) + " has type " +
                                (known ? std::string(known->name) : std::to_string(type)) +
                                ", which edgefleet tensors cannot hold",
                            ErrorCode::kUnsupported);
    }
    info.dtype = *known->dtype;
    EF_ASSIGN_OR_RETURN(info.shape, ReadShape(reader, tensor, tensor_path));
    out.push_back(std::move(info));
  }
  return out;
}

// The operators subgraph 0's nodes run: one entry per (operator, version), each with its
// first node.
Result<std::vector<TfliteOperator>> ReadNodes(const FlatReader& reader, const Table& subgraph,
                                              const std::vector<OperatorCode>& codes,
                                              std::size_t* node_count) {
  const std::string path = "subgraphs[0].operators";
  EF_ASSIGN_OR_RETURN(auto nodes, reader.VectorField(subgraph, kSubgraphOperators, 4, path));
  *node_count = nodes ? nodes->count : 0;
  // By code index first, so the entries are at most the codes whatever the node count.
  std::map<std::uint32_t, std::size_t> first_use;
  for (std::uint32_t i = 0; nodes && i < nodes->count; ++i) {
    const std::string item = Index(path, i);
    EF_ASSIGN_OR_RETURN(auto node, reader.TableElement(*nodes, i, item));
    EF_ASSIGN_OR_RETURN(auto index, reader.Scalar<std::uint32_t>(node, kOperatorOpcodeIndex, 0,
                                                                 Child(item, "opcode_index")));
    if (index >= codes.size()) {
      return reader.Problem(Child(item, "opcode_index"),
                            std::to_string(index) + " is outside operator_codes (" +
                                std::to_string(codes.size()) + " entries)");
    }
    first_use.emplace(index, i);
  }
  // A writer may repeat a code: entries for the same operator and version are one.
  std::map<std::pair<std::string, std::int32_t>, TfliteOperator> merged;  // (key, version)
  for (const auto& [index, node] : first_use) {
    const OperatorCode& code = codes[index];
    TfliteOperator op{code.name, code.custom, code.code, code.version, node};
    auto [it, added] = merged.emplace(std::make_pair(TfliteOperatorKey(op), op.version), op);
    if (!added) it->second.first_node = std::min(it->second.first_node, node);
  }
  std::vector<TfliteOperator> out;
  for (auto& [key, op] : merged) out.push_back(std::move(op));
  return out;
}

}  // namespace

std::string TfliteBuiltinName(std::int32_t code) {
  if (code >= 0 && static_cast<std::size_t>(code) < std::size(kBuiltinNames)) {
    return std::string(kBuiltinNames[code]);
  }
  return "BUILTIN_" + std::to_string(code);
}

std::string TfliteOperatorKey(const TfliteOperator& op) {
  if (!op.custom) return op.name;
  return std::string(kTfliteCustomDomain) + ":" + op.name;
}

std::vector<std::string> TfliteOperatorKeys(const TfliteModelInfo& model) {
  std::vector<std::string> keys;
  for (const auto& op : model.operators) keys.push_back(TfliteOperatorKey(op));
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

Result<TfliteModelInfo> InspectTflite(std::string_view bytes, const std::string& where) {
  if (bytes.size() > kMaxTfliteBytes) {
    return Fail(ErrorCode::kLimit, where + ": " + std::to_string(bytes.size()) +
                                       " bytes, over the limit of " +
                                       std::to_string(kMaxTfliteBytes));
  }
  if (bytes.size() < 8) {
    return Fail(ErrorCode::kParse,
                where + ": not a TFLite model: " + std::to_string(bytes.size()) +
                    " bytes, too short for a root offset and the file identifier");
  }
  if (bytes.substr(4, 4) != kIdentifier) {
    return Fail(ErrorCode::kParse, where + ": not a TFLite model: file identifier " +
                                       manifests::QuoteName(bytes.substr(4, 4)) +
                                       " at bytes 4-7, expected 'TFL3'");
  }
  const FlatReader reader(bytes, where);
  EF_ASSIGN_OR_RETURN(auto root, reader.Follow(0, "root"));
  EF_ASSIGN_OR_RETURN(auto model, reader.TableAt(root, "model"));
  TfliteModelInfo info;
  EF_ASSIGN_OR_RETURN(info.schema_version,
                      reader.Scalar<std::uint32_t>(model, kModelVersion, 0, "version"));
  if (info.schema_version != kTfliteSchemaVersion) {
    return reader.Problem("version",
                          "schema version " + std::to_string(info.schema_version) +
                              ", edgefleet reads version " + std::to_string(kTfliteSchemaVersion) +
                              " (what TFLite writes)",
                          ErrorCode::kUnsupported);
  }
  EF_ASSIGN_OR_RETURN(auto codes, ReadOperatorCodes(reader, model));
  EF_ASSIGN_OR_RETURN(auto subgraphs, reader.VectorField(model, kModelSubgraphs, 4, "subgraphs"));
  if (!subgraphs || subgraphs->count == 0) {
    return reader.Problem("subgraphs", "the model has no subgraph (subgraph 0 is the model)");
  }
  info.subgraph_count = subgraphs->count;
  EF_ASSIGN_OR_RETURN(auto subgraph, reader.TableElement(*subgraphs, 0, "subgraphs[0]"));
  EF_ASSIGN_OR_RETURN(auto tensors,
                      reader.VectorField(subgraph, kSubgraphTensors, 4, "subgraphs[0].tensors"));
  EF_ASSIGN_OR_RETURN(info.inputs, ReadGraphTensors(reader, subgraph, kSubgraphInputs, tensors,
                                                    "subgraphs[0].inputs"));
  EF_ASSIGN_OR_RETURN(info.outputs, ReadGraphTensors(reader, subgraph, kSubgraphOutputs, tensors,
                                                     "subgraphs[0].outputs"));
  EF_ASSIGN_OR_RETURN(info.operators, ReadNodes(reader, subgraph, codes, &info.node_count));
  return info;
}

Result<TfliteModelInfo> InspectTflite(const std::filesystem::path& model_file) {
  EF_ASSIGN_OR_RETURN(auto bytes, manifests::ReadSmallFile(model_file, kMaxTfliteBytes));
  return InspectTflite(bytes, model_file.string());
}

}  // namespace edgefleet::runtime
