// Lowering ONNX models for a backend's tables (runtime/onnx_lower.hpp): small graphs built here
// with libonnx's protobuf types, judged by a backend whose operator table claims the older
// forms only, and hostile files.
#include "runtime/onnx_lower.hpp"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "runtime/onnx_downgrade.hpp"

namespace edgefleet::runtime {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Like OpenCV 4.6: Clip with attributes (up to 10) only; Unsqueeze and Softmax up to 10, so
// that their axes must become positive attributes.
BackendCapabilities Caps(int clip_max_opset = 10) {
  BackendCapabilities caps;
  caps.name = "opencv";
  caps.version = *manifests::SemVer::Parse("4.6.0");
  caps.formats = {"onnx"};
  caps.min_opset = 7;
  caps.max_opset = 17;
  caps.operators = {{"", "Clip", 6, clip_max_opset},
                    {"", "Relu", 6, 17},
                    {"", "Identity", 1, 17},
                    {"", "Unsqueeze", 1, 10},
                    {"", "Softmax", 1, 10}};
  return caps;
}

onnx::ValueInfoProto* AddValue(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* values,
                               const std::string& name, const std::vector<std::int64_t>& dims) {
  auto* v = values->Add();
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  t->mutable_shape();  // a scalar has a shape without dims
  for (const auto d : dims) t->mutable_shape()->add_dim()->set_dim_value(d);
  return v;
}

onnx::NodeProto* AddNode(onnx::GraphProto* graph, const std::string& op, const std::string& name,
                         const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs) {
  auto* n = graph->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return n;
}

void AddConstantFloat(onnx::GraphProto* graph, const std::string& output, float value) {
  auto* n = AddNode(graph, "Constant", output + "_node", {}, {output});
  auto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
  a->mutable_t()->add_float_data(value);
}

onnx::ModelProto NewModel(int opset) {
  onnx::ModelProto m;
  m.set_ir_version(7);
  auto* import = m.add_opset_import();
  import->set_domain("");
  import->set_version(opset);
  m.mutable_graph()->set_name("g");
  return m;
}

// x -> Clip(x, Constant 0, Constant 6) -> Identity -> Relu -> y, as torch exports ReLU6 from 11.
onnx::ModelProto ClipModel(int opset) {
  auto m = NewModel(opset);
  auto* g = m.mutable_graph();
  AddValue(g->mutable_input(), "x", {1, 3, 4, 4});
  AddValue(g->mutable_output(), "y", {1, 3, 4, 4});
  AddConstantFloat(g, "lo", 0.0f);
  AddConstantFloat(g, "hi", 6.0f);
  AddNode(g, "Clip", "clip0", {"x", "lo", "hi"}, {"c"});
  AddNode(g, "Identity", "same", {"c"}, {"i"});
  AddNode(g, "Relu", "relu0", {"i"}, {"y"});
  return m;
}

std::string Bytes(const onnx::ModelProto& m) {
  std::string bytes;
  EXPECT_TRUE(m.SerializeToString(&bytes));
  return bytes;
}

onnx::ModelProto Parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

const onnx::AttributeProto* Attribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

TEST(Lowering, ClipBoundsBecomeAttributesAtTheHighestOpsetTheBackendRuns) {
  for (int opset : {11, 13, 17}) {
    SCOPED_TRACE(opset);
    const auto lowered = LowerOnnx(Bytes(ClipModel(opset)), "clip.onnx", Caps());
    ASSERT_TRUE(lowered) << lowered.error().message;
    EXPECT_EQ(lowered->from_opset, opset);
    EXPECT_EQ(lowered->to_opset, 10);  // Clip is claimed up to 10 only
    const auto m = Parse(lowered->bytes);
    ASSERT_EQ(m.opset_import_size(), 1);
    EXPECT_EQ(m.opset_import(0).version(), 10);
    // Constants folded, the Identity bypassed, Clip with one input and its bounds as attributes.
    ASSERT_EQ(m.graph().node_size(), 2);
    const auto& clip = m.graph().node(0);
    EXPECT_EQ(clip.op_type(), "Clip");
    ASSERT_EQ(clip.input_size(), 1);
    ASSERT_NE(Attribute(clip, "min"), nullptr);
    ASSERT_NE(Attribute(clip, "max"), nullptr);
    EXPECT_EQ(Attribute(clip, "min")->f(), 0.0f);
    EXPECT_EQ(Attribute(clip, "max")->f(), 6.0f);
    EXPECT_EQ(m.graph().node(1).op_type(), "Relu");
    EXPECT_EQ(m.graph().node(1).input(0), "c");
    EXPECT_EQ(m.graph().initializer_size(), 0) << "the folded bounds nothing reads are dropped";
    EXPECT_TRUE(lowered->unmeasured.empty());
  }
}

TEST(Lowering, AModelTheBackendRunsKeepsItsOpset) {
  const auto lowered = LowerOnnx(Bytes(ClipModel(13)), "clip.onnx", Caps(17));
  ASSERT_TRUE(lowered) << lowered.error().message;
  EXPECT_EQ(lowered->to_opset, 13);
  const auto m = Parse(lowered->bytes);
  EXPECT_EQ(m.graph().node(0).input_size(), 3) << "no rewrite the backend does not need";
}

TEST(Lowering, ABoundComputedAtRunTimeIsRefusedNamingTheNode) {
  auto m = ClipModel(13);
  auto* g = m.mutable_graph();
  AddValue(g->mutable_input(), "limit", {});
  g->mutable_node(2)->set_input(2, "limit");  // Clip's max from a graph input
  const auto lowered = LowerOnnx(Bytes(m), "clip.onnx", Caps());
  ASSERT_FALSE(lowered);
  EXPECT_EQ(lowered.error().code, ErrorCode::kUnsupported);
  const std::string& message = lowered.error().message;
  EXPECT_TRUE(Contains(message, "clip.onnx")) << message;
  EXPECT_TRUE(Contains(message, "node 'clip0'")) << message;
  EXPECT_TRUE(Contains(message, "computed at run time")) << message;
  // And what the backend says at the lowest opset the rest converts to.
  EXPECT_TRUE(Contains(message, "Clip at opset 11")) << message;
}

// x [2,5] -> Unsqueeze(axes = Constant [-1]) -> [2,5,1] -> Softmax(axis) -> y
onnx::ModelProto UnsqueezeSoftmaxModel(std::int64_t softmax_axis) {
  auto m = NewModel(13);
  auto* g = m.mutable_graph();
  AddValue(g->mutable_input(), "x", {2, 5});
  AddValue(g->mutable_output(), "y", {2, 5, 1});
  auto* axes = g->add_initializer();
  axes->set_name("axes");
  axes->set_data_type(onnx::TensorProto::INT64);
  axes->add_dims(1);
  axes->add_int64_data(-1);
  AddNode(g, "Unsqueeze", "unsq", {"x", "axes"}, {"u"});
  auto* softmax = AddNode(g, "Softmax", "soft", {"u"}, {"y"});
  auto* a = softmax->add_attribute();
  a->set_name("axis");
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(softmax_axis);
  return m;
}

TEST(Lowering, AxesInputsBecomePositiveAttributes) {
  const auto lowered = LowerOnnx(Bytes(UnsqueezeSoftmaxModel(-1)), "u.onnx", Caps());
  ASSERT_TRUE(lowered) << lowered.error().message;
  EXPECT_EQ(lowered->to_opset, 10);
  const auto m = Parse(lowered->bytes);
  const auto& unsqueeze = m.graph().node(0);
  ASSERT_EQ(unsqueeze.input_size(), 1);
  ASSERT_NE(Attribute(unsqueeze, "axes"), nullptr);
  ASSERT_EQ(Attribute(unsqueeze, "axes")->ints_size(), 1);
  EXPECT_EQ(Attribute(unsqueeze, "axes")->ints(0), 2) << "-1 of the rank-3 output";
  EXPECT_EQ(Attribute(m.graph().node(1), "axis")->i(), 2) << "the last axis, made explicit";
}

TEST(Lowering, ASoftmaxOverAnotherAxisIsRefusedNamingTheNode) {
  const auto lowered = LowerOnnx(Bytes(UnsqueezeSoftmaxModel(1)), "u.onnx", Caps());
  ASSERT_FALSE(lowered);
  const std::string& message = lowered.error().message;
  EXPECT_TRUE(Contains(message, "node 'soft'")) << message;
  EXPECT_TRUE(Contains(message, "only the last axis converts")) << message;
}

TEST(Lowering, AnOperatorWithoutOlderVersionIsRefusedNamingIt) {
  auto m = NewModel(14);
  auto* g = m.mutable_graph();
  AddValue(g->mutable_input(), "x", {1, 4});
  AddValue(g->mutable_output(), "y", {1, 4});
  AddNode(g, "HardSwish", "hs", {"x"}, {"y"});
  const auto lowered = LowerOnnx(Bytes(m), "hs.onnx", Caps());
  ASSERT_FALSE(lowered);
  const std::string& message = lowered.error().message;
  EXPECT_TRUE(Contains(message, "node 'hs'")) << message;
  EXPECT_TRUE(Contains(message, "HardSwish")) << message;
  EXPECT_TRUE(Contains(message, "has no version at opset 13")) << message;
}

TEST(Lowering, HostileFilesFailWithTheReason) {
  const auto caps = Caps();
  // Truncated protobuf.
  const std::string good = Bytes(ClipModel(13));
  auto truncated = LowerOnnx(good.substr(0, good.size() / 2), "cut.onnx", caps);
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code, ErrorCode::kParse);
  EXPECT_TRUE(Contains(truncated.error().message, "cut.onnx")) << truncated.error().message;

  // A cycle: a = Relu(b), b = Relu(a).
  auto cycle = NewModel(13);
  AddValue(cycle.mutable_graph()->mutable_input(), "x", {1});
  AddValue(cycle.mutable_graph()->mutable_output(), "b", {1});
  AddNode(cycle.mutable_graph(), "Relu", "r1", {"b"}, {"a"});
  AddNode(cycle.mutable_graph(), "Relu", "r2", {"a"}, {"b"});
  auto cyclic = LowerOnnx(Bytes(cycle), "cycle.onnx", caps);
  ASSERT_FALSE(cyclic);
  EXPECT_TRUE(Contains(cyclic.error().message, "cycle.onnx")) << cyclic.error().message;

  // A 2 GiB tensor declared, 4 bytes stored.
  auto big = ClipModel(13);
  auto* w = big.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(1ll << 29);
  w->set_raw_data(std::string(4, '\0'));
  AddNode(big.mutable_graph(), "Relu", "rw", {"w"}, {"unused"});
  auto declared = LowerOnnx(Bytes(big), "big.onnx", caps);
  ASSERT_FALSE(declared);
  EXPECT_TRUE(Contains(declared.error().message, "'w'")) << declared.error().message;
  EXPECT_TRUE(Contains(declared.error().message, "536870912")) << declared.error().message;

  // External data outside the bundle.
  auto external = ClipModel(13);
  auto* e = external.mutable_graph()->add_initializer();
  e->set_name("e");
  e->set_data_type(onnx::TensorProto::FLOAT);
  e->add_dims(1);
  e->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = e->add_external_data();
  entry->set_key("location");
  entry->set_value("../../etc/passwd");
  AddNode(external.mutable_graph(), "Relu", "re", {"e"}, {"unused"});
  auto outside = LowerOnnx(Bytes(external), "ext.onnx", caps);
  ASSERT_FALSE(outside);
  EXPECT_TRUE(Contains(outside.error().message, "ext.onnx")) << outside.error().message;
  EXPECT_TRUE(Contains(outside.error().message, "passwd") ||
              Contains(outside.error().message, "external"))
      << outside.error().message;
}

TEST(Lowering, ConstantReadersCheckDataAgainstDims) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_dims(3);
  t.add_int64_data(1);
  t.add_int64_data(2);
  EXPECT_FALSE(ConstantInts(t, 64)) << "declares 3, holds 2";
  t.add_int64_data(-3);
  ASSERT_TRUE(ConstantInts(t, 64));
  EXPECT_EQ(*ConstantInts(t, 64), (std::vector<std::int64_t>{1, 2, -3}));
  EXPECT_FALSE(ConstantInts(t, 2)) << "over the cap";
  onnx::TensorProto overflow;
  overflow.set_data_type(onnx::TensorProto::FLOAT);
  overflow.add_dims(1ll << 40);
  overflow.add_dims(1ll << 40);
  EXPECT_FALSE(DeclaredElements(overflow));
}

}  // namespace
}  // namespace edgefleet::runtime
