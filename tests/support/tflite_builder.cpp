// A FlatBuffer writer for tests and TFLite models on it (see tests/support/tflite_builder.hpp).
#include "tests/support/tflite_builder.hpp"

#include <algorithm>
#include <deque>
#include <utility>

namespace edgefleet::testing {
namespace {

void Put(std::string& out, std::size_t pos, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i)
    out[pos + i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

void Append(std::string& out, std::uint64_t value, std::size_t width) {
  out.append(width, '\0');
  Put(out, out.size() - width, value, width);
}

// Writes nodes front to back: each is appended when its turn comes and the offset slot that
// points to it is patched, so every offset points forward, as FlatBuffers' unsigned offsets must.
class Writer {
 public:
  std::string Finish(const FbNodePtr& root, std::string_view identifier) {
    out_.assign(8, '\0');
    out_.replace(4, 4, std::string(identifier.substr(0, 4)));
    queue_.push_back({root.get(), 0});
    while (!queue_.empty()) {
      const auto [node, slot] = queue_.front();
      queue_.pop_front();
      Emit(*node, slot);
    }
    return out_;
  }

 private:
  void Align(std::size_t alignment) {
    while (out_.size() % alignment != 0) out_ += '\0';
  }

  void Link(std::size_t slot, std::size_t pos) { Put(out_, slot, pos - slot, 4); }

  void Emit(const FbNode& node, std::size_t slot) {
    switch (node.kind) {
      case FbNode::Kind::kTable:
        EmitTable(node, slot);
        return;
      case FbNode::Kind::kScalars:
        // The elements aligned to their size (the length before them is 4 bytes).
        Align(4);
        while ((out_.size() + 4) % std::max<std::size_t>(node.element_size, 4) != 0) out_ += '\0';
        Link(slot, out_.size());
        Append(out_, node.length.value_or(node.bytes.size() / node.element_size), 4);
        out_ += node.bytes;
        return;
      case FbNode::Kind::kString:
        Align(4);
        Link(slot, out_.size());
        Append(out_, node.length.value_or(node.bytes.size()), 4);
        out_ += node.bytes;
        out_ += '\0';
        return;
      case FbNode::Kind::kTables:
        Align(4);
        Link(slot, out_.size());
        Append(out_, node.length.value_or(node.items.size()), 4);
        for (const auto& item : node.items) {
          queue_.push_back({item.get(), out_.size()});
          Append(out_, 0, 4);
        }
        return;
    }
  }

  // The vtable, then the table: its offset to the vtable, then the fields, each aligned to its
  // size.
  void EmitTable(const FbNode& node, std::size_t slot) {
    int max_id = -1;
    for (const auto& f : node.fields) max_id = std::max(max_id, f.id);
    std::vector<std::uint16_t> entries(static_cast<std::size_t>(max_id + 1), 0);
    std::size_t inline_size = 4;
    std::vector<std::size_t> at;
    for (const auto& f : node.fields) {
      const std::size_t width = f.scalar.empty() ? 4 : f.scalar.size();
      inline_size = (inline_size + width - 1) / width * width;
      at.push_back(inline_size);
      entries[static_cast<std::size_t>(f.id)] = static_cast<std::uint16_t>(inline_size);
      inline_size += width;
    }
    inline_size = (inline_size + 3) / 4 * 4;
    const std::size_t vtable_bytes = 4 + 2 * entries.size();
    Align(2);
    if ((out_.size() + vtable_bytes) % 4 != 0) out_.append(2, '\0');
    const std::size_t vtable = out_.size();
    Append(out_, node.vtable_size.value_or(static_cast<std::uint16_t>(vtable_bytes)), 2);
    Append(out_, node.table_size.value_or(static_cast<std::uint16_t>(inline_size)), 2);
    for (auto entry : entries) Append(out_, entry, 2);
    const std::size_t table = out_.size();
    Link(slot, table);
    Append(out_,
           static_cast<std::uint32_t>(
               node.vtable_offset.value_or(static_cast<std::int32_t>(table - vtable))),
           4);
    out_.append(inline_size - 4, '\0');
    for (std::size_t i = 0; i < node.fields.size(); ++i) {
      const FbField& f = node.fields[i];
      if (!f.scalar.empty()) {
        out_.replace(table + at[i], f.scalar.size(), f.scalar);
      } else if (f.raw_offset) {
        Put(out_, table + at[i], *f.raw_offset, 4);
      } else if (f.child) {
        queue_.push_back({f.child.get(), table + at[i]});
      }
    }
  }

  struct Pending {
    const FbNode* node;
    std::size_t slot;
  };
  std::string out_;
  std::deque<Pending> queue_;
};

FbNodePtr Tensor(const TfliteTensorDef& t) {
  std::vector<FbField> fields = {FbChild(0, FbInts(t.shape)), FbScalar<std::int8_t>(1, t.type),
                                 FbScalar<std::uint32_t>(2, 0)};
  if (!t.name.empty()) fields.push_back(FbChild(3, FbString(t.name)));
  if (t.shape_signature) fields.push_back(FbChild(7, FbInts(*t.shape_signature)));
  return FbTable(std::move(fields));
}

FbNodePtr Code(const TfliteCodeDef& c) {
  const auto deprecated = static_cast<std::int8_t>(std::min<std::int32_t>(c.builtin, 127));
  std::vector<FbField> fields = {FbScalar<std::int8_t>(0, deprecated)};
  if (!c.custom_code.empty()) fields.push_back(FbChild(1, FbString(c.custom_code)));
  if (c.version != 1) fields.push_back(FbScalar<std::int32_t>(2, c.version));
  if (!c.old_writer) fields.push_back(FbScalar<std::int32_t>(3, c.builtin));
  return FbTable(std::move(fields));
}

}  // namespace

FbNode* FbNode::Child(int id) const {
  for (const auto& f : fields) {
    if (f.id == id) return f.child.get();
  }
  return nullptr;
}

FbField& FbNode::Field(int id) {
  for (auto& f : fields) {
    if (f.id == id) return f;
  }
  fields.push_back(FbField{id, "", nullptr, std::nullopt});
  return fields.back();
}

FbField FbChild(int id, FbNodePtr child) { return FbField{id, "", std::move(child), std::nullopt}; }

FbField FbRawOffset(int id, std::uint32_t offset) { return FbField{id, "", nullptr, offset}; }

FbNodePtr FbTable(std::vector<FbField> fields) {
  auto node = std::make_shared<FbNode>();
  node->fields = std::move(fields);
  return node;
}

FbNodePtr FbString(std::string text) {
  auto node = std::make_shared<FbNode>();
  node->kind = FbNode::Kind::kString;
  node->bytes = std::move(text);
  return node;
}

FbNodePtr FbInts(const std::vector<std::int32_t>& values) {
  auto node = std::make_shared<FbNode>();
  node->kind = FbNode::Kind::kScalars;
  for (auto v : values) Append(node->bytes, static_cast<std::uint32_t>(v), 4);
  return node;
}

FbNodePtr FbTables(std::vector<FbNodePtr> items) {
  auto node = std::make_shared<FbNode>();
  node->kind = FbNode::Kind::kTables;
  node->items = std::move(items);
  return node;
}

std::string FbFinish(const FbNodePtr& root, std::string_view identifier) {
  return Writer().Finish(root, identifier);
}

FbNodePtr TfliteModelTree(const TfliteModelDef& model) {
  std::vector<FbNodePtr> codes, tensors, nodes;
  for (const auto& c : model.codes) codes.push_back(Code(c));
  for (const auto& t : model.tensors) tensors.push_back(Tensor(t));
  for (const auto& n : model.nodes) {
    nodes.push_back(FbTable({FbScalar<std::uint32_t>(0, n.opcode_index),
                             FbChild(1, FbInts(n.inputs)), FbChild(2, FbInts(n.outputs))}));
  }
  auto subgraph = FbTable({FbChild(0, FbTables(std::move(tensors))),
                           FbChild(1, FbInts(model.inputs)), FbChild(2, FbInts(model.outputs)),
                           FbChild(3, FbTables(std::move(nodes))), FbChild(4, FbString("main"))});
  return FbTable({FbScalar<std::uint32_t>(0, model.version), FbChild(1, FbTables(std::move(codes))),
                  FbChild(2, FbTables({subgraph}))});
}

std::string BuildTflite(const TfliteModelDef& model) { return FbFinish(TfliteModelTree(model)); }

TfliteModelDef SmallTfliteModel(const std::string& custom_op) {
  TfliteModelDef m;
  m.codes = {{3, 2, "", false},    // CONV_2D v2
             {17, 1, "", true},    // MAX_POOL_2D, old writer
             {22, 1, "", false},   // RESHAPE
             {9, 1, "", false},    // FULLY_CONNECTED
             {25, 1, "", false}};  // SOFTMAX, unused
  m.tensors = {{"input", 0, {1, 8, 8, 1}, std::vector<std::int32_t>{-1, 8, 8, 1}},
               {"conv", 0, {1, 8, 8, 4}, std::nullopt},
               {"pool", 0, {1, 4, 4, 4}, std::nullopt},
               {"flat", 0, {1, 64}, std::nullopt},
               {"logits", 0, {1, 10}, std::vector<std::int32_t>{-1, 10}}};
  m.inputs = {0};
  m.outputs = {4};
  m.nodes = {{0, {0}, {1}}, {1, {1}, {2}}, {2, {2}, {3}}, {3, {3}, {4}}};
  if (!custom_op.empty()) {
    m.codes.push_back({32, 1, custom_op, false});
    m.tensors.push_back({"custom_out", 0, {1, 10}, std::vector<std::int32_t>{-1, 10}});
    m.nodes.back().outputs = {5};
    m.nodes.push_back({5, {5}, {4}});
  }
  return m;
}

}  // namespace edgefleet::testing
