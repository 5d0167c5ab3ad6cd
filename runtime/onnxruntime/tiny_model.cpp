#include "runtime/onnxruntime/tiny_model.hpp"

namespace edgefleet::runtime::ort {
namespace {

// Protobuf wire format: a field key is (number << 3 | wire type); 0 = varint, 2 = bytes.
void Varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void IntField(std::string& out, int field, std::uint64_t v) {
  Varint(out, static_cast<std::uint64_t>(field) << 3);
  Varint(out, v);
}

void BytesField(std::string& out, int field, const std::string& bytes) {
  Varint(out, (static_cast<std::uint64_t>(field) << 3) | 2);
  Varint(out, bytes.size());
  out += bytes;
}

// ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type FLOAT, shape [1,4]}}}.
std::string FloatTensorInfo(const std::string& name) {
  std::string shape;
  for (std::uint64_t dim : {1, 4}) {
    std::string d;
    IntField(d, 1, dim);      // Dimension.dim_value
    BytesField(shape, 1, d);  // TensorShapeProto.dim
  }
  std::string tensor;
  IntField(tensor, 1, 1);  // elem_type = FLOAT
  BytesField(tensor, 2, shape);
  std::string type;
  BytesField(type, 1, tensor);  // TypeProto.tensor_type
  std::string info;
  BytesField(info, 1, name);
  BytesField(info, 2, type);
  return info;
}

std::uint64_t IrVersionFor(std::int64_t opset) {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset == 21) return 10;
  return 11;
}

}  // namespace

std::string TinyReluModel(std::int64_t opset) {
  std::string node;
  BytesField(node, 1, "x");     // input
  BytesField(node, 2, "y");     // output
  BytesField(node, 3, "relu");  // name
  BytesField(node, 4, "Relu");  // op_type
  std::string graph;
  BytesField(graph, 1, node);
  BytesField(graph, 2, "tiny");
  BytesField(graph, 11, FloatTensorInfo("x"));
  BytesField(graph, 12, FloatTensorInfo("y"));
  std::string opset_import;
  BytesField(opset_import, 1, "");
  IntField(opset_import, 2, static_cast<std::uint64_t>(opset));
  std::string model;
  IntField(model, 1, IrVersionFor(opset));
  BytesField(model, 2, "edgefleet");  // producer_name
  BytesField(model, 7, graph);
  BytesField(model, 8, opset_import);
  return model;
}

}  // namespace edgefleet::runtime::ort
