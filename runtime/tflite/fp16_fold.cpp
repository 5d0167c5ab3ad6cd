#include "runtime/tflite/fp16_fold.hpp"

#include "runtime/tflite/flatbuffer.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

namespace edgefleet::runtime::tflite {
namespace {

// TFLite schema numbers (schema.fbs).
constexpr std::int32_t kDequantize = 6;  // BuiltinOperator
constexpr std::uint8_t kFloat32 = 0;     // TensorType
constexpr std::uint8_t kFloat16 = 1;
// Model: operator_codes 1, subgraphs 2, buffers 4. OperatorCode: deprecated_builtin_code 0,
// builtin_code 3. SubGraph: tensors 0, inputs 1, outputs 2, operators 3. Tensor: shape 0, type 1,
// buffer 2. Operator: opcode_index 0, inputs 1, outputs 2. Buffer: data 0.
constexpr int kModelCodes = 1, kModelSubgraphs = 2, kModelBuffers = 4;
constexpr int kCodeDeprecated = 0, kCodeBuiltin = 3;
constexpr int kGraphTensors = 0, kGraphInputs = 1, kGraphOutputs = 2, kGraphOperators = 3;
constexpr int kTensorShape = 0, kTensorType = 1, kTensorBuffer = 2;
constexpr int kOpCode = 0, kOpInputs = 1, kOpOutputs = 2;
constexpr int kBufferData = 0;

// Bounds a hostile file's counts (a real model has at most a few thousand tensors).
constexpr std::uint32_t kMaxCount = 1U << 20;

// The fold's view of the file, over FlatBytes (flatbuffer.hpp, which checks everything): tables
// by position, and nullopt for any problem (the fold then leaves the file as it was, so the
// problem's text is not kept). A FlatBytes is made per read because the fold appends to the
// vector it reads.
class Reader {
 public:
  explicit Reader(const std::vector<std::uint8_t>& bytes) : b_(bytes) {}

  template <typename T>
  std::optional<T> Read(std::size_t pos) const {
    const FlatBytes f = Bytes();
    if (!f.Fits(pos, sizeof(T))) return std::nullopt;
    return f.Load<T>(pos);
  }

  // Where a table's field of `width` bytes is: 0 when the field is absent, nullopt when the
  // table is malformed.
  std::optional<std::size_t> Field(std::size_t table, int slot, std::size_t width) const {
    const FlatBytes f = Bytes();
    FlatTable t;
    std::optional<std::uint64_t> pos;
    if (!f.TableAt(table, "", t) || !f.FieldPos(t, slot, width, "", pos)) return std::nullopt;
    return pos ? static_cast<std::size_t>(*pos) : 0;
  }

  // Follows the forward offset stored at `pos`.
  std::optional<std::size_t> Deref(std::size_t pos) const {
    std::uint64_t out = 0;
    if (!Bytes().Follow(pos, "", out)) return std::nullopt;
    return static_cast<std::size_t>(out);
  }

  struct Vec {
    std::size_t first = 0;  // position of element 0
    std::uint32_t count = 0;
  };
  // A table's vector field of `elem`-byte elements; an absent field is an empty vector.
  std::optional<Vec> Vector(std::size_t table, int slot, std::size_t elem) const {
    const FlatBytes f = Bytes();
    FlatTable t;
    std::optional<FlatVector> v;
    if (!f.TableAt(table, "", t) || !f.VectorField(t, slot, elem, "", v)) return std::nullopt;
    if (!v) return Vec{};
    if (v->count > kMaxCount) return std::nullopt;
    return Vec{static_cast<std::size_t>(v->data), v->count};
  }

  // The tables of a vector-of-tables field.
  std::optional<std::vector<std::size_t>> Tables(std::size_t table, int slot) const {
    const auto vec = Vector(table, slot, 4);
    if (!vec) return std::nullopt;
    std::vector<std::size_t> out;
    for (std::uint32_t i = 0; i < vec->count; ++i) {
      const auto t = Deref(vec->first + 4 * static_cast<std::size_t>(i));
      if (!t) return std::nullopt;
      out.push_back(*t);
    }
    return out;
  }

  template <typename T>
  std::optional<T> Scalar(std::size_t table, int slot, T fallback) const {
    const FlatBytes f = Bytes();
    FlatTable t;
    T value{};
    if (!f.TableAt(table, "", t) || !f.Scalar(t, slot, fallback, "", value)) return std::nullopt;
    return value;
  }

 private:
  FlatBytes Bytes() const {
    return FlatBytes(std::string_view(reinterpret_cast<const char*>(b_.data()), b_.size()));
  }

  const std::vector<std::uint8_t>& b_;
};

float HalfToFloat(std::uint16_t h) {
  const int sign = (h >> 15) != 0 ? -1 : 1;
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  if (exponent == 0) return static_cast<float>(sign * std::ldexp(mantissa, -24));
  if (exponent == 31) {
    return mantissa == 0 ? static_cast<float>(sign) * std::numeric_limits<float>::infinity()
                         : std::numeric_limits<float>::quiet_NaN();
  }
  return static_cast<float>(sign * std::ldexp(mantissa + 1024, exponent - 25));
}

template <typename T>
void Write(std::vector<std::uint8_t>& b, std::size_t pos, T v) {
  std::memcpy(b.data() + pos, &v, sizeof(T));
}

struct TensorInfo {
  std::size_t type_field = 0;  // 0: absent (FLOAT32)
  std::uint8_t type = kFloat32;
  std::uint32_t buffer = 0;
  std::optional<std::uint64_t> elements;  // nullopt: unknown or too large
};

struct Op {
  std::int32_t builtin = -1;
  Reader::Vec inputs;
  Reader::Vec outputs;
};

// One planned fold: DEQUANTIZE `op` turns `from` (FLOAT16 constant) into `to`.
struct Fold {
  std::size_t op = 0;
  std::int32_t from = 0;
  std::int32_t to = 0;
  std::size_t type_field = 0;  // `from`'s type, set to FLOAT32
  std::size_t data_field = 0;  // the Buffer table's data field, re-pointed at the float32 copy
  std::size_t half_data = 0;   // the float16 values
  std::uint64_t elements = 0;
};

std::optional<std::vector<std::int32_t>> Builtins(const Reader& r, std::size_t model) {
  const auto codes = r.Tables(model, kModelCodes);
  if (!codes) return std::nullopt;
  std::vector<std::int32_t> out;
  for (const std::size_t code : *codes) {
    const auto deprecated = r.Scalar<std::int8_t>(code, kCodeDeprecated, 0);
    const auto builtin = r.Scalar<std::int32_t>(code, kCodeBuiltin, 0);
    if (!deprecated || !builtin) return std::nullopt;
    out.push_back(std::max<std::int32_t>(*deprecated, *builtin));
  }
  return out;
}

std::optional<TensorInfo> ReadTensor(const Reader& r, std::size_t table) {
  TensorInfo t;
  const auto type_field = r.Field(table, kTensorType, 1);
  const auto buffer = r.Scalar<std::uint32_t>(table, kTensorBuffer, 0);
  const auto shape = r.Vector(table, kTensorShape, 4);
  if (!type_field || !buffer || !shape) return std::nullopt;
  t.type_field = *type_field;
  if (t.type_field != 0) {
    const auto type = r.Read<std::uint8_t>(t.type_field);
    if (!type) return std::nullopt;
    t.type = *type;
  }
  t.buffer = *buffer;
  std::uint64_t elements = 1;
  for (std::uint32_t i = 0; i < shape->count && elements != 0; ++i) {
    const auto dim = r.Read<std::int32_t>(shape->first + 4 * static_cast<std::size_t>(i));
    if (!dim || *dim < 0 || static_cast<std::uint64_t>(*dim) > (kMaxCount << 8) / elements) {
      return t;  // unknown size: never folded
    }
    elements *= static_cast<std::uint64_t>(*dim);
  }
  t.elements = elements;
  return t;
}

bool Contains(const Reader& r, const Reader::Vec& vec, std::int32_t value) {
  for (std::uint32_t i = 0; i < vec.count; ++i) {
    if (r.Read<std::int32_t>(vec.first + 4 * static_cast<std::size_t>(i)) == value) return true;
  }
  return false;
}

// The folds one subgraph allows; nullopt when the subgraph is malformed.
std::optional<std::vector<Fold>> PlanSubgraph(const Reader& r, std::size_t graph,
                                              const std::vector<std::int32_t>& builtins,
                                              const std::vector<std::size_t>& buffers,
                                              std::vector<std::uint32_t>& buffer_users,
                                              std::vector<Op>& ops) {
  const auto tensor_tables = r.Tables(graph, kGraphTensors);
  const auto op_tables = r.Tables(graph, kGraphOperators);
  const auto graph_outputs = r.Vector(graph, kGraphOutputs, 4);
  const auto graph_inputs = r.Vector(graph, kGraphInputs, 4);
  if (!tensor_tables || !op_tables || !graph_outputs || !graph_inputs) return std::nullopt;
  std::vector<TensorInfo> tensors;
  for (const std::size_t t : *tensor_tables) {
    auto info = ReadTensor(r, t);
    if (!info) return std::nullopt;
    tensors.push_back(*info);
  }
  std::vector<std::uint32_t> consumers(tensors.size(), 0);
  ops.clear();
  for (const std::size_t table : *op_tables) {
    const auto code = r.Scalar<std::uint32_t>(table, kOpCode, 0);
    const auto inputs = r.Vector(table, kOpInputs, 4);
    const auto outputs = r.Vector(table, kOpOutputs, 4);
    if (!code || !inputs || !outputs || *code >= builtins.size()) return std::nullopt;
    ops.push_back({builtins[*code], *inputs, *outputs});
    for (std::uint32_t i = 0; i < inputs->count; ++i) {
      const auto t = r.Read<std::int32_t>(inputs->first + 4 * static_cast<std::size_t>(i));
      if (t && *t >= 0 && static_cast<std::size_t>(*t) < tensors.size()) ++consumers[*t];
    }
  }
  std::vector<Fold> folds;
  for (std::size_t k = 0; k < ops.size(); ++k) {
    const Op& op = ops[k];
    if (op.builtin != kDequantize || op.inputs.count != 1 || op.outputs.count != 1) continue;
    const auto from = r.Read<std::int32_t>(op.inputs.first);
    const auto to = r.Read<std::int32_t>(op.outputs.first);
    if (!from || !to || *from < 0 || *to < 0 || static_cast<std::size_t>(*from) >= tensors.size() ||
        static_cast<std::size_t>(*to) >= tensors.size()) {
      continue;
    }
    const TensorInfo& in = tensors[static_cast<std::size_t>(*from)];
    const TensorInfo& out = tensors[static_cast<std::size_t>(*to)];
    if (in.type != kFloat16 || in.type_field == 0 || out.type != kFloat32 || !in.elements ||
        in.buffer == 0 || in.buffer >= buffers.size() || buffer_users[in.buffer] != 1 ||
        consumers[static_cast<std::size_t>(*from)] != 1 || Contains(r, *graph_outputs, *to) ||
        Contains(r, *graph_inputs, *from)) {
      continue;
    }
    const auto data_field = r.Field(buffers[in.buffer], kBufferData, 4);
    if (!data_field || *data_field == 0) continue;
    const auto data = r.Deref(*data_field);
    if (!data) continue;
    const auto bytes = r.Read<std::uint32_t>(*data);
    if (!bytes || *bytes != *in.elements * 2 || !r.Read<std::uint8_t>(*data + *bytes + 3)) {
      continue;
    }
    folds.push_back({k, *from, *to, in.type_field, *data_field, *data + 4, *in.elements});
    buffer_users[in.buffer] = 0;  // taken: a second DEQUANTIZE of it is not folded again
  }
  return folds;
}

// Appends the float32 copy of a fold's values and points its buffer at it.
void Apply(std::vector<std::uint8_t>& b, const Fold& f) {
  while ((b.size() + 4) % 16 != 0) b.push_back(0);  // data 16-aligned, as the schema asks
  const std::size_t vec = b.size();
  b.resize(vec + 4 + f.elements * 4);
  Write<std::uint32_t>(b, vec, static_cast<std::uint32_t>(f.elements * 4));
  for (std::uint64_t i = 0; i < f.elements; ++i) {
    std::uint16_t h = 0;
    std::memcpy(&h, b.data() + f.half_data + 2 * i, 2);
    Write<float>(b, vec + 4 + 4 * i, HalfToFloat(h));
  }
  Write<std::uint32_t>(b, f.data_field, static_cast<std::uint32_t>(vec - f.data_field));
}

}  // namespace

FoldResult FoldFloat16Weights(std::vector<std::uint8_t>& model) {
  if (model.size() < 8 || model.size() > (std::size_t{1} << 31)) return {};
  // Everything is read and planned first and the room for the appended data reserved; the
  // writes after that cannot fail, so a file is changed whole or not at all, in place. The reader
  // sees the writes, which only touch what no later step reads (see each step).
  const Reader r(model);
  const auto root = r.Deref(0);
  if (!root) return {};
  const auto builtins = Builtins(r, *root);
  const auto buffers = r.Tables(*root, kModelBuffers);
  const auto graphs = r.Tables(*root, kModelSubgraphs);
  if (!builtins || !buffers || !graphs) return {};
  // How many tensors (of every subgraph) use each buffer: only a buffer with one user is changed.
  std::vector<std::uint32_t> buffer_users(buffers->size(), 0);
  for (const std::size_t graph : *graphs) {
    const auto tables = r.Tables(graph, kGraphTensors);
    if (!tables) return {};
    for (const std::size_t t : *tables) {
      const auto info = ReadTensor(r, t);
      if (!info) return {};
      if (info->buffer < buffer_users.size()) ++buffer_users[info->buffer];
    }
  }
  struct Plan {
    std::vector<Fold> folds;
    std::vector<Op> ops;
    Reader::Vec operators;
  };
  std::vector<Plan> plans;
  for (const std::size_t graph : *graphs) {
    Plan plan;
    auto folds = PlanSubgraph(r, graph, *builtins, *buffers, buffer_users, plan.ops);
    const auto operators = r.Vector(graph, kGraphOperators, 4);
    if (!folds || !operators) return {};
    if (folds->empty()) continue;
    plan.folds = std::move(*folds);
    plan.operators = *operators;
    plans.push_back(std::move(plan));
  }
  // The appended float32 copies' room, reserved before the first write: after it nothing throws.
  std::size_t room = 0;
  for (const Plan& plan : plans) {
    for (const Fold& f : plan.folds) room += 16 + 4 + static_cast<std::size_t>(f.elements) * 4;
  }
  model.reserve(model.size() + room);
  FoldResult result;
  for (const Plan& plan : plans) {
    std::vector<bool> dropped(plan.ops.size(), false);
    for (const Fold& f : plan.folds) {
      Apply(model, f);
      // The tensor is FLOAT32 now; every reader of the DEQUANTIZE's output reads it instead (a
      // `from` is a constant, never an operator's output, so no replaced entry matches a `to`).
      Write<std::uint8_t>(model, f.type_field, kFloat32);
      for (const Op& op : plan.ops) {
        for (std::uint32_t i = 0; i < op.inputs.count; ++i) {
          const std::size_t at = op.inputs.first + 4 * static_cast<std::size_t>(i);
          if (r.Read<std::int32_t>(at) == f.to) Write<std::int32_t>(model, at, f.from);
        }
      }
      dropped[f.op] = true;
    }
    // Drop the folded operators: compact the operators vector in place (each element is an
    // offset relative to its own slot, so a moved one is adjusted by the distance it moved; a
    // slot is written only after it was read).
    const Reader::Vec& vec = plan.operators;
    std::uint32_t kept = 0;
    for (std::uint32_t i = 0; i < vec.count; ++i) {
      if (dropped[i]) continue;
      const std::size_t from = vec.first + 4 * static_cast<std::size_t>(i);
      const std::size_t to = vec.first + 4 * static_cast<std::size_t>(kept);
      const auto offset = *r.Read<std::uint32_t>(from);
      Write<std::uint32_t>(model, to, static_cast<std::uint32_t>(offset + (from - to)));
      ++kept;
    }
    Write<std::uint32_t>(model, vec.first - 4, kept);
    result.folded += plan.folds.size();
  }
  return result;
}

}  // namespace edgefleet::runtime::tflite
