// Reading .tflite files: operators (builtin codes from old and new writers, versions, custom
// names), inputs and outputs with dynamic dimensions, and every kind of broken or hostile file
// (truncated, offsets and vtables outside the file, lying lengths, wrong identifier, caps), each
// refused with a message naming the file, the schema path and what is wrong. Files are built by
// tests/support/tflite_builder; the checked-in TFLite exports are read when they are there.
#include "runtime/tflite_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/compat.hpp"
#include "tests/support/tflite_builder.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;
using testing::BuildTflite;
using testing::FbFinish;
using testing::FbNode;
using testing::FbNodePtr;
using testing::SmallTfliteModel;
using testing::TfliteModelDef;
using testing::TfliteModelTree;

Result<TfliteModelInfo> Inspect(const std::string& bytes) {
  return InspectTflite(bytes, "model.tflite");
}

// Expects `bytes` refused with `code` and a message holding every needle.
void ExpectRefused(const std::string& bytes, ErrorCode code,
                   const std::vector<std::string>& needles) {
  auto info = Inspect(bytes);
  ASSERT_FALSE(info) << "accepted";
  EXPECT_EQ(info.error().code, code) << info.error().message;
  EXPECT_EQ(info.error().message.rfind("model.tflite: ", 0), 0u) << info.error().message;
  for (const auto& needle : needles) {
    EXPECT_NE(info.error().message.find(needle), std::string::npos)
        << "lacks '" << needle << "': " << info.error().message;
  }
}

// Subgraph 0 of a model tree.
FbNode* Subgraph(const FbNodePtr& model) {
  return model->Child(testing::kTfliteModelSubgraphs)->items[0].get();
}

TEST(TfliteModel, ReadsOperatorsWithVersionsFromOldAndNewWriters) {
  auto info = Inspect(BuildTflite(SmallTfliteModel()));
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->schema_version, 3u);
  EXPECT_EQ(info->subgraph_count, 1u);
  EXPECT_EQ(info->node_count, 4u);
  // Sorted by name; SOFTMAX is in the code table but no node runs it.
  ASSERT_EQ(info->operators.size(), 4u);
  const std::vector<std::string> names = {"CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE"};
  const std::vector<std::int32_t> codes = {3, 9, 17, 22};
  const std::vector<std::size_t> first = {0, 3, 1, 2};
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(info->operators[i].name, names[i]);
    EXPECT_EQ(info->operators[i].builtin_code, codes[i]);
    EXPECT_EQ(info->operators[i].first_node, first[i]) << names[i];
    EXPECT_FALSE(info->operators[i].custom);
  }
  EXPECT_EQ(info->operators[0].version, 2);
  EXPECT_EQ(info->operators[2].version, 1);  // the old writer's: version absent, default 1
  EXPECT_EQ(TfliteOperatorKeys(*info), names);
}

TEST(TfliteModel, NamesCustomOperatorsAndCodesPastTheByteField) {
  auto model = SmallTfliteModel("Convolution2DTransposeBias");
  model.codes.push_back({150, 1, "", false});  // GELU: deprecated_builtin_code holds 127
  model.codes.push_back({400, 3, "", false});  // a code this build has no name for
  model.codes.push_back({0, 2, "", false});    // ADD at version 2 and, below, at version 1
  model.codes.push_back({0, 1, "", true});
  model.codes.push_back({3, 2, "", false});  // CONV_2D v2 again: one entry, the earlier node
  for (std::uint32_t code = 6; code <= 10; ++code) model.nodes.push_back({code, {0}, {1}});
  auto info = Inspect(BuildTflite(model));
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(
      TfliteOperatorKeys(*info),
      (std::vector<std::string>{"ADD", "BUILTIN_400", "CONV_2D", "FULLY_CONNECTED", "GELU",
                                "MAX_POOL_2D", "RESHAPE", "custom:Convolution2DTransposeBias"}));
  std::vector<std::string> listed;
  for (const auto& op : info->operators) {
    listed.push_back(TfliteOperatorKey(op) + " v" + std::to_string(op.version) + " #" +
                     std::to_string(op.first_node));
  }
  EXPECT_EQ(listed, (std::vector<std::string>{"ADD v1 #8", "ADD v2 #7", "BUILTIN_400 v3 #6",
                                              "CONV_2D v2 #0", "FULLY_CONNECTED v1 #3",
                                              "GELU v1 #5", "MAX_POOL_2D v1 #1", "RESHAPE v1 #2",
                                              "custom:Convolution2DTransposeBias v1 #4"}));
  const auto& custom = info->operators.back();
  EXPECT_TRUE(custom.custom);
  EXPECT_EQ(custom.name, "Convolution2DTransposeBias");
  EXPECT_EQ(custom.builtin_code, kTfliteCustomCode);
  EXPECT_EQ(TfliteBuiltinName(4), "DEPTHWISE_CONV_2D");
  EXPECT_EQ(TfliteBuiltinName(25), "SOFTMAX");
  EXPECT_EQ(TfliteBuiltinName(161), "RIGHT_SHIFT");
  EXPECT_EQ(TfliteBuiltinName(162), "BUILTIN_162");
  EXPECT_EQ(TfliteBuiltinName(-3), "BUILTIN_-3");
}

TEST(TfliteModel, ReadsInputsAndOutputsWithDynamicDimensions) {
  auto model = SmallTfliteModel();
  model.tensors.push_back({"mask", 9, {1, 3}, std::nullopt});  // INT8, no shape_signature
  model.tensors.push_back({"ids", 4, {}, std::nullopt});       // INT64, no shape at all
  model.inputs = {0, 5};
  model.outputs = {4, 6};
  auto info = Inspect(BuildTflite(model));
  ASSERT_TRUE(info) << info.error().message;
  ASSERT_EQ(info->inputs.size(), 2u);
  EXPECT_EQ(info->inputs[0].name, "input");
  EXPECT_EQ(info->inputs[0].dtype, DType::kFloat32);
  EXPECT_EQ(info->inputs[0].shape, (std::vector<std::int64_t>{-1, 8, 8, 1}));
  EXPECT_EQ(info->inputs[1].name, "mask");
  EXPECT_EQ(info->inputs[1].dtype, DType::kInt8);
  EXPECT_EQ(info->inputs[1].shape, (std::vector<std::int64_t>{1, 3}));
  ASSERT_EQ(info->outputs.size(), 2u);
  EXPECT_EQ(info->outputs[0].name, "logits");
  EXPECT_EQ(info->outputs[0].shape, (std::vector<std::int64_t>{-1, 10}));
  EXPECT_EQ(info->outputs[1].dtype, DType::kInt64);
  EXPECT_TRUE(info->outputs[1].shape.empty());
}

TEST(TfliteModel, TensorTypesEdgefleetCannotHoldAreUnsupportedWithTheNameEscaped) {
  auto model = SmallTfliteModel();
  model.tensors[0].type = 5;  // STRING
  model.tensors[0].name = "in\nput\xe2\x80\xae";
  ExpectRefused(BuildTflite(model), ErrorCode::kUnsupported,
                {"subgraphs[0].inputs[0]: tensor 'in\\nput\\u202e' has type STRING, which "
                 "edgefleet tensors cannot hold"});
  model.tensors[0].type = 99;
  ExpectRefused(BuildTflite(model), ErrorCode::kUnsupported, {"has type 99, which"});
}

TEST(TfliteModel, NamesThatAreNotUtf8OrTooLongAreRefused) {
  auto model = SmallTfliteModel("My\xffOp");
  ExpectRefused(BuildTflite(model), ErrorCode::kParse,
                {"operator_codes[5].custom_code: 'My\\xffOp' is not valid UTF-8"});
  model = SmallTfliteModel(std::string(kMaxTfliteNameBytes + 1, 'a'));
  ExpectRefused(BuildTflite(model), ErrorCode::kLimit,
                {"operator_codes[5].custom_code: 4097 bytes, over the limit of 4096"});
  model = SmallTfliteModel();
  model.codes[0] = {32, 1, "", false};
  ExpectRefused(BuildTflite(model), ErrorCode::kParse,
                {"operator_codes[0]: a CUSTOM operator without a custom_code name"});
}

TEST(TfliteModel, WrongIdentifierShortFilesAndOtherSchemaVersionsAreRefused) {
  const auto good = BuildTflite(SmallTfliteModel());
  ExpectRefused(FbFinish(TfliteModelTree(SmallTfliteModel()), "ONNX"), ErrorCode::kParse,
                {"not a TFLite model: file identifier 'ONNX' at bytes 4-7, expected 'TFL3'"});
  ExpectRefused(FbFinish(TfliteModelTree(SmallTfliteModel()), std::string("\x00\x01\n\x7f", 4)),
                ErrorCode::kParse, {"file identifier '\\x00\\x01\\n\\x7f'"});
  ExpectRefused(good.substr(0, 7), ErrorCode::kParse, {"not a TFLite model: 7 bytes, too short"});
  ExpectRefused("", ErrorCode::kParse, {"0 bytes"});
  auto model = SmallTfliteModel();
  model.version = 2;
  ExpectRefused(BuildTflite(model), ErrorCode::kUnsupported,
                {"version: schema version 2, edgefleet reads version 3"});
}

TEST(TfliteModel, EveryTruncationIsRefusedAndNoneCrashes) {
  const auto good = BuildTflite(SmallTfliteModel("Fancy"));
  std::size_t past_the_end = 0;
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto info = Inspect(good.substr(0, n));
    // The last bytes written belong to tensors no input or output names: not read.
    if (info) {
      EXPECT_GT(n, good.size() / 2) << n;
      continue;
    }
    EXPECT_EQ(info.error().code, ErrorCode::kParse) << info.error().message;
    if (info.error().message.find("past the end of the file (size " + std::to_string(n) + ")") !=
        std::string::npos) {
      ++past_the_end;
    }
  }
  EXPECT_GT(past_the_end, good.size() / 2);
}

TEST(TfliteModel, OffsetsOutsideTheFileAreRefusedNamingTheField) {
  auto tree = TfliteModelTree(SmallTfliteModel("Fancy"));
  auto* codes = tree->Child(testing::kTfliteModelOperatorCodes);
  auto& custom = codes->items[5]->Field(testing::kTfliteCodeCustomCode);
  custom.child = nullptr;
  custom.raw_offset = 1u << 20;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"operator_codes[5].custom_code: offset at byte ", "past the end of the file"});
  custom.raw_offset = 0;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"operator_codes[5].custom_code: offset at byte ", "points to itself"});
  custom.raw_offset = 0x80000000u;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse, {"offset 2147483648", "is over 2 GiB"});

  // The root offset itself.
  std::string bytes = BuildTflite(SmallTfliteModel());
  bytes[0] = '\xf0';
  bytes[1] = '\xff';
  ExpectRefused(bytes, ErrorCode::kParse, {"model.tflite: root: offset at byte 0 points to byte"});
}

TEST(TfliteModel, VtablesOutsideTheFileOrOfImpossibleSizesAreRefused) {
  auto tree = TfliteModelTree(SmallTfliteModel());
  auto* subgraph = Subgraph(tree);
  subgraph->vtable_offset = -0x10000;  // forward, past the end
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"subgraphs[0]: vtable at byte ", "lies outside the file"});
  subgraph->vtable_offset = 0x7fffffff;  // backward, before the start
  ExpectRefused(FbFinish(tree), ErrorCode::kParse, {"vtable at byte -", "lies outside the file"});
  subgraph->vtable_offset.reset();
  subgraph->vtable_size = 3;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"subgraphs[0]: vtable at byte ", "declares 3 bytes"});
  subgraph->vtable_size = 0xfffe;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"subgraphs[0]: vtable of 65534 bytes at byte ", "past the end of the file"});
  subgraph->vtable_size.reset();
  subgraph->table_size = 8;  // the fields at offsets 8 and more are outside it
  ExpectRefused(FbFinish(tree), ErrorCode::kParse, {"lies outside its table of 8 bytes"});
  subgraph->table_size = 0xfff0;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"subgraphs[0]: table of 65520 bytes at byte ", "past the end of the file"});
}

TEST(TfliteModel, AShortVtableMeansTheSchemaDefaults) {
  auto tree = TfliteModelTree(SmallTfliteModel());
  // Only the vtable's two sizes: no field, so deprecated_builtin_code 0 (ADD), version 1.
  tree->Child(testing::kTfliteModelOperatorCodes)->items[0]->vtable_size = 4;
  auto info = Inspect(FbFinish(tree));
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->operators[0].name, "ADD");
  EXPECT_EQ(info->operators[0].version, 1);
  EXPECT_EQ(info->operators[0].first_node, 0u);
}

TEST(TfliteModel, HugeCountsAreRefusedBeforeAnythingIsAllocated) {
  auto tree = TfliteModelTree(SmallTfliteModel());
  auto* subgraph = Subgraph(tree);
  subgraph->Child(testing::kTfliteSubgraphOperators)->length = 0xffffffffu;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"subgraphs[0].operators: vector of 4294967295 elements of 4 bytes at byte ",
                 "past the end of the file"});
  subgraph->Child(testing::kTfliteSubgraphOperators)->length.reset();
  subgraph->Child(testing::kTfliteSubgraphInputs)->length = 0x40000000u;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse, {"subgraphs[0].inputs: vector of 1073741824"});
  subgraph->Child(testing::kTfliteSubgraphInputs)->length.reset();
  tree->Child(testing::kTfliteModelOperatorCodes)
      ->items[0]
      ->fields.push_back(testing::FbChild(testing::kTfliteCodeCustomCode, testing::FbString("x")));
  tree->Child(testing::kTfliteModelOperatorCodes)->items[0]->Child(1)->length = 0xfffffff0u;
  ExpectRefused(FbFinish(tree), ErrorCode::kParse,
                {"operator_codes[0].custom_code: string of 4294967280 bytes at byte "});
}

TEST(TfliteModel, CapsOnCodesGraphTensorsAndRankAreLimits) {
  auto model = SmallTfliteModel();
  model.codes.resize(kMaxTfliteOperatorCodes + 1, {0, 1, "", false});
  ExpectRefused(BuildTflite(model), ErrorCode::kLimit,
                {"operator_codes: 4097 entries, over the limit of 4096"});
  model = SmallTfliteModel();
  model.inputs.assign(kMaxTfliteGraphTensors + 1, 0);
  ExpectRefused(BuildTflite(model), ErrorCode::kLimit,
                {"subgraphs[0].inputs: 4097 tensors, over the limit of 4096"});
  model = SmallTfliteModel();
  model.tensors[4].shape_signature = std::vector<std::int32_t>(kMaxTfliteRank + 1, 1);
  ExpectRefused(BuildTflite(model), ErrorCode::kLimit,
                {"subgraphs[0].tensors[4].shape_signature: 65 dimensions, over the limit of 64"});
}

TEST(TfliteModel, IndicesOutsideTheirTablesAreRefused) {
  auto model = SmallTfliteModel();
  model.nodes[2].opcode_index = 5;
  ExpectRefused(BuildTflite(model), ErrorCode::kParse,
                {"subgraphs[0].operators[2].opcode_index: 5 is outside operator_codes (5 "
                 "entries)"});
  model = SmallTfliteModel();
  model.outputs = {4, -1};
  ExpectRefused(BuildTflite(model), ErrorCode::kParse,
                {"subgraphs[0].outputs[1]: tensor index -1 is outside subgraphs[0].tensors (5 "
                 "tensors)"});
  model = SmallTfliteModel();
  model.tensors[0].shape_signature = std::vector<std::int32_t>{-2, 8, 8, 1};
  ExpectRefused(BuildTflite(model), ErrorCode::kParse,
                {"subgraphs[0].tensors[0].shape_signature[0]: dimension -2"});
  model = SmallTfliteModel();
  model.tensors.clear();
  model.nodes.clear();
  ExpectRefused(BuildTflite(model), ErrorCode::kParse, {"tensor index 0 is outside"});
  auto tree = TfliteModelTree(SmallTfliteModel());
  tree->Child(testing::kTfliteModelSubgraphs)->items.clear();
  ExpectRefused(FbFinish(tree), ErrorCode::kParse, {"subgraphs: the model has no subgraph"});
}

// The agent's verdict before download compares the manifest's operators with the backend's
// table: a custom operator, "custom:<name>", is refused by name unless the backend claims it.
TEST(TfliteModel, CustomOperatorsAreRefusedBeforeDownloadByABackendThatDoesNotClaimThem) {
  auto info = Inspect(BuildTflite(SmallTfliteModel("Fancy")));
  ASSERT_TRUE(info) << info.error().message;
  manifests::Variant variant;
  variant.id = "tflite";
  variant.format = "tflite";
  variant.opset = static_cast<int>(info->schema_version);
  variant.operators = TfliteOperatorKeys(*info);
  variant.backends = {{"tflite", *manifests::VersionRange::Parse(">=2.0.0")}};
  BackendCapabilities backend;
  backend.name = "tflite";
  backend.version = {2, 14, 0, ""};
  backend.formats = {"tflite"};
  backend.min_opset = backend.max_opset = 3;
  for (const char* op : {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"}) {
    backend.operators.push_back({"", op, 3, 3});
  }
  EXPECT_EQ(CompatibilityProblems(variant, backend),
            std::vector<std::string>{
                "operator custom:Fancy is not supported by tflite 2.14.0 (not claimed at any "
                "opset)"});
  backend.operators.push_back({std::string(kTfliteCustomDomain), "Fancy", 1, 1});
  EXPECT_TRUE(CompatibilityProblems(variant, backend).empty());
}

// The TFLite exports under tests/data/tflite/, when they are there (another change adds them).
TEST(TfliteModel, ReadsTheCheckedInExports) {
  const fs::path dir = fs::path(EDGEFLEET_TEST_DATA_DIR) / "tflite";
  if (!fs::exists(dir / "digits.tflite")) GTEST_SKIP() << "no " << dir / "digits.tflite";
  auto info = InspectTflite(dir / "digits.tflite");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->schema_version, kTfliteSchemaVersion);
  EXPECT_FALSE(info->operators.empty());
  EXPECT_FALSE(info->inputs.empty());
  EXPECT_FALSE(info->outputs.empty());
  for (const auto& op : info->operators) EXPECT_FALSE(op.custom) << op.name;
  if (!fs::exists(dir / "custom_op.tflite")) return;
  info = InspectTflite(dir / "custom_op.tflite");
  ASSERT_TRUE(info) << info.error().message;
  const auto keys = TfliteOperatorKeys(*info);
  EXPECT_TRUE(std::any_of(keys.begin(), keys.end(), [](const std::string& k) {
    return k.starts_with("custom:");
  })) << keys.size();
}

TEST(TfliteModel, AMissingFileNamesIt) {
  auto info = InspectTflite(fs::path("/nonexistent/model.tflite"));
  ASSERT_FALSE(info);
  EXPECT_NE(info.error().message.find("/nonexistent/model.tflite"), std::string::npos);
}

}  // namespace
}  // namespace edgefleet::runtime
