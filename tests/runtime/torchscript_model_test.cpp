// runtime/torchscript_model: the operators a TorchScript file calls, read from its serialized code
// without libtorch, on files python3-torch wrote (tests/data/make_digits_torchscript.py) and on
// code texts and archives made here.
#include "runtime/torchscript_model.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kTorchScript = fs::path(EDGEFLEET_TEST_DATA_DIR) / "torchscript";

std::vector<std::string> Keys(const std::vector<TorchScriptOperator>& ops) {
  std::vector<std::string> out;
  for (const auto& op : ops) out.push_back(op.key);
  return out;
}

TEST(TorchScriptModel, ListsTheOperatorsTheDigitsModuleCalls) {
  auto info = InspectTorchScript(kTorchScript / "digits.pt");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->code_files, 1U);
  EXPECT_EQ(TorchScriptOperatorKeys(*info),
            (std::vector<std::string>{"aten:_convolution", "aten:flatten", "aten:linear",
                                      "aten:max_pool2d", "aten:relu"}));
  // Each operator names the first code line that calls it.
  for (const auto& op : info->operators) {
    EXPECT_NE(op.node.find("/code/"), std::string::npos) << op.node;
    EXPECT_NE(op.node.find("torch." + op.key.substr(5) + "("), std::string::npos) << op.node;
  }
  auto cumsum = InspectTorchScript(kTorchScript / "cumsum.pt");
  ASSERT_TRUE(cumsum) << cumsum.error().message;
  EXPECT_EQ(TorchScriptOperatorKeys(*cumsum),
            (std::vector<std::string>{"aten:cumsum", "aten:flatten"}));
}

TEST(TorchScriptModel, ScansCallsOfTorchAndOtherNamespacesOnly) {
  const std::string code =
      "  def forward(self, x: Tensor) -> Tensor:\n"
      "    _0 = torch.add_(x, 1)\n"
      "    _1 = ops.my_ops.fancy (_0)\n"
      "    _2 = mytorch.relu(_1)\n"    // not torch.
      "    _3 = torch.jit.annotate\n"  // no call
      "    _4 = x.torch.relu(_3)\n"    // an attribute, not the module
      "    return torch.add_(_4, 2)\n";
  const auto ops = ScanTorchScriptCode(code, "m/code/a.py");
  EXPECT_EQ(Keys(ops), (std::vector<std::string>{"aten:add_", "my_ops:fancy", "aten:add_"}));
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(ops[0].node, "m/code/a.py:2: _0 = torch.add_(x, 1)");
  EXPECT_EQ(ops[1].node, "m/code/a.py:3: _1 = ops.my_ops.fancy (_0)");
}

TEST(TorchScriptModel, FilesThatAreNotTorchScriptArchivesAreRefusedNamingTheFile) {
  testing::TempDir tmp;
  const fs::path text = tmp / "model.pt";
  std::ofstream(text) << "not a zip archive";
  auto a = InspectTorchScript(text);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("model.pt"), std::string::npos) << a.error().message;
  EXPECT_NE(a.error().message.find("not a TorchScript archive"), std::string::npos)
      << a.error().message;
  // A file of another format.
  auto b = InspectTorchScript(fs::path(EDGEFLEET_TEST_DATA_DIR) / "tflite/digits.tflite");
  ASSERT_FALSE(b);
  auto c = InspectTorchScript(tmp / "missing.pt");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("missing.pt"), std::string::npos) << c.error().message;
}

// A damaged archive (the digits file cut at every 997th byte) fails or reads what it can, and
// never crashes (the sanitizer pass runs this).
TEST(TorchScriptModel, TruncatedArchivesFailCleanly) {
  testing::TempDir tmp;
  std::ifstream in(kTorchScript / "digits.pt", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000U);
  for (std::size_t size = 0; size < bytes.size(); size += 997) {
    const fs::path cut = tmp / "cut.pt";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, size);
    auto info = InspectTorchScript(cut);
    if (!info) {
      EXPECT_NE(info.error().message.find("cut.pt"), std::string::npos) << info.error().message;
    }
  }
}

}  // namespace
}  // namespace edgefleet::runtime
