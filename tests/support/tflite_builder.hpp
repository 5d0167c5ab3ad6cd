// TensorFlow Lite model files built by the test that reads them: a tiny FlatBuffer writer (a tree
// of tables, vectors and strings laid out front to back, each after the offset that points to
// it), and TFLite's Model on top of it. Honest files, and hostile ones: a node of the tree can
// carry a vtable offset, a vtable size, a table size or a length that lies, and a field can hold
// a raw offset, so a test says exactly which structure is broken and how.
//
// No edgefleet or GoogleTest dependency: make_fuzz_seeds writes the tflite fuzz seeds with it.
//
// Thread safety: free functions and plain values.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgefleet::testing {

struct FbNode;
using FbNodePtr = std::shared_ptr<FbNode>;

// One field of a table: a scalar (its little-endian bytes), an offset to a child node, or an
// offset written as it is.
struct FbField {
  int id = 0;
  std::string scalar;
  FbNodePtr child;
  std::optional<std::uint32_t> raw_offset;
};

struct FbNode {
  enum class Kind { kTable, kScalars, kTables, kString };
  Kind kind = Kind::kTable;
  std::vector<FbField> fields;   // kTable
  std::string bytes;             // kScalars: the elements, little-endian; kString: the text
  std::size_t element_size = 4;  // kScalars
  std::vector<FbNodePtr> items;  // kTables
  // Hostile overrides, written instead of the true value.
  std::optional<std::uint32_t> length;        // kScalars, kTables, kString
  std::optional<std::int32_t> vtable_offset;  // kTable: the soffset from table to vtable
  std::optional<std::uint16_t> vtable_size;   // kTable: the vtable's first entry
  std::optional<std::uint16_t> table_size;    // kTable: the vtable's second entry

  // The child node of field `id`, or nullptr.
  FbNode* Child(int id) const;
  // The field `id` itself (added, empty, when the table has none).
  FbField& Field(int id);
};

template <typename T>
FbField FbScalar(int id, T value) {
  std::string bytes(sizeof(T), '\0');
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    bytes[i] = static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
  }
  return FbField{id, bytes, nullptr, std::nullopt};
}
FbField FbChild(int id, FbNodePtr child);
FbField FbRawOffset(int id, std::uint32_t offset);
FbNodePtr FbTable(std::vector<FbField> fields);
FbNodePtr FbString(std::string text);
FbNodePtr FbInts(const std::vector<std::int32_t>& values);
FbNodePtr FbTables(std::vector<FbNodePtr> items);

// The file: the root offset, the 4-byte `identifier`, then every node after the offset that
// points to it (a node two offsets point to is written twice).
std::string FbFinish(const FbNodePtr& root, std::string_view identifier = "TFL3");

// TFLite's tables with only the fields runtime/tflite_model.cpp reads.
struct TfliteTensorDef {
  std::string name;
  std::int8_t type = 0;  // TensorType: 0 FLOAT32, 9 INT8, 5 STRING, ...
  std::vector<std::int32_t> shape;
  std::optional<std::vector<std::int32_t>> shape_signature;
};
struct TfliteCodeDef {
  std::int32_t builtin = 0;  // 32: CUSTOM
  std::int32_t version = 1;
  std::string custom_code;  // written when not empty
  bool old_writer = false;  // only deprecated_builtin_code, as writers before 2.3 did
};
struct TfliteNodeDef {
  std::uint32_t opcode_index = 0;
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> outputs;
};
struct TfliteModelDef {
  std::uint32_t version = 3;
  std::vector<TfliteCodeDef> codes;
  std::vector<TfliteTensorDef> tensors;
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> outputs;
  std::vector<TfliteNodeDef> nodes;
};

// Field numbers of TFLite's schema.fbs that tests reach into.
inline constexpr int kTfliteModelOperatorCodes = 1;
inline constexpr int kTfliteModelSubgraphs = 2;
inline constexpr int kTfliteCodeCustomCode = 1;
inline constexpr int kTfliteSubgraphTensors = 0;
inline constexpr int kTfliteSubgraphInputs = 1;
inline constexpr int kTfliteSubgraphOperators = 3;

FbNodePtr TfliteModelTree(const TfliteModelDef& model);
std::string BuildTflite(const TfliteModelDef& model);

// A small image classifier shaped like the digits model: input "input" float32 [-1,8,8,1]
// (shape [1,8,8,1]), CONV_2D (version 2), MAX_POOL_2D (written by an old writer), RESHAPE,
// FULLY_CONNECTED, output "logits" float32 [-1,10]; with `custom_op`, a CUSTOM node named
// `custom_op` (version 1) before the output. An unused code (SOFTMAX) is in the table too.
TfliteModelDef SmallTfliteModel(const std::string& custom_op = "");

}  // namespace edgefleet::testing
