// The backend plugin loader on real libraries (the opencv plugin of this build, copied around):
// what a scan loads, skips and refuses, and that the adapter checks what crosses the C ABI.
// Libraries built out of tree, and broken ones, are tested end to end in
// tests/integration/agent_plugin_test.cpp.
#include "runtime/plugin_backend.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/opencv_plugin.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

fs::path MakeDir(const testing::TempDir& tmp, const std::string& name) {
  const fs::path dir = tmp.path() / name;
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::group_write | fs::perms::others_write, fs::perm_options::remove);
  return dir;
}

TEST(PluginLoader, LoadsTheOpenCvPluginWithItsDescription) {
  auto backend = LoadBackendPlugin(testing::OpenCvPluginPath());
  ASSERT_TRUE(backend) << backend.error().message;
  const auto& caps = (*backend)->capabilities();
  EXPECT_EQ(caps.name, "opencv");
  EXPECT_EQ(caps.engine, "OpenCV DNN 4.6.0 (CPU)");
  EXPECT_EQ(caps.targets, std::vector<std::string>{"cpu"});
  EXPECT_FALSE(caps.operators.empty());
  ASSERT_EQ(caps.output_limits.size(), 1u);
  EXPECT_EQ(caps.output_limits[0].op, "Dropout");
}

TEST(PluginLoader, AScanSkipsOtherFilesAndRefusesDuplicatesAndJunk) {
  testing::TempDir tmp;
  const fs::path dir = MakeDir(tmp, "backends");
  fs::copy_file(testing::OpenCvPluginPath(), dir / "a_opencv.so");
  fs::copy_file(testing::OpenCvPluginPath(), dir / "b_opencv_again.so");
  Write(dir / "c_junk.so", "not an ELF file");
  Write(dir / "notes.txt", "ignored");
  fs::create_directories(dir / "d_directory.so");

  auto scan = LoadBackendPlugins(dir);
  ASSERT_TRUE(scan) << scan.error().message;
  ASSERT_EQ(scan->backends.size(), 1u);
  EXPECT_EQ(scan->libraries[0], dir / "a_opencv.so");
  ASSERT_EQ(scan->refused.size(), 2u);
  EXPECT_EQ(scan->refused[0].library, dir / "b_opencv_again.so");
  EXPECT_NE(scan->refused[0].reason.find("backend \"opencv\" is already loaded from '" +
                                         (dir / "a_opencv.so").string() + "'"),
            std::string::npos)
      << scan->refused[0].reason;
  EXPECT_EQ(scan->refused[1].library, dir / "c_junk.so");
  EXPECT_NE(scan->refused[1].reason.find("cannot load"), std::string::npos)
      << scan->refused[1].reason;
}

// A box that enables only some backends never maps the others' engines (libtorch alone is
// over 100 MB resident): a library named for a backend left out is not opened at all.
TEST(PluginLoader, ALibraryNamedForABackendNotWantedIsNotOpened) {
  testing::TempDir tmp;
  const fs::path dir = MakeDir(tmp, "backends");
  fs::copy_file(testing::OpenCvPluginPath(), dir / "libedgefleet_backend_opencv.so");
  Write(dir / "libedgefleet_backend_torch.so", "not even an ELF file: never opened");
  auto scan = LoadBackendPlugins(dir, "{}", {"opencv"});
  ASSERT_TRUE(scan) << scan.error().message;
  ASSERT_EQ(scan->backends.size(), 1u);
  EXPECT_TRUE(scan->refused.empty()) << scan->refused[0].reason;
  EXPECT_EQ(scan->not_opened, std::vector<fs::path>{dir / "libedgefleet_backend_torch.so"});
  EXPECT_EQ(BackendNameFromFile(dir / "libedgefleet_backend_torch.so"), "torch");
  EXPECT_EQ(BackendNameFromFile(dir / "vendor.so"), "");
  // Without a list, every library is opened (and the junk one refused).
  scan = LoadBackendPlugins(dir);
  ASSERT_TRUE(scan);
  EXPECT_EQ(scan->refused.size(), 1u);
}

TEST(PluginLoader, ALibraryOthersMayWriteIsRefusedBeforeItIsOpened) {
  testing::TempDir tmp;
  const fs::path dir = MakeDir(tmp, "backends");
  const fs::path lib = dir / "opencv.so";
  fs::copy_file(testing::OpenCvPluginPath(), lib);
  fs::permissions(lib, fs::perms::group_write, fs::perm_options::add);
  auto backend = LoadBackendPlugin(lib);
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().message, "backend library '" + lib.string() + "': refused, " +
                                         lib.string() +
                                         " is writable by group or others (mode 775)");
}

TEST(PluginLoader, AMissingDirectoryIsNamed) {
  testing::TempDir tmp;
  auto scan = LoadBackendPlugins(tmp.path() / "nope");
  ASSERT_FALSE(scan);
  EXPECT_EQ(scan.error().code, ErrorCode::kNotFound);
  EXPECT_NE(scan.error().message.find("backends_dir '" + (tmp.path() / "nope").string() + "'"),
            std::string::npos)
      << scan.error().message;
}

// The adapter's own checks: a format the backend does not list, and inputs that do not match the
// variant, are refused before the library is called.
TEST(PluginLoader, TheAdapterRefusesWhatTheLibraryMustNeverSee) {
  auto backend = LoadBackendPlugin(testing::OpenCvPluginPath());
  ASSERT_TRUE(backend);
  manifests::Variant variant;
  variant.id = "v";
  variant.format = "tflite";
  variant.inputs = {{"input", "float32", {-1, 1, 8, 8}}};
  variant.outputs = {{"logits", "float32", {-1, 10}}};
  auto wrong_format = (*backend)->Load("/nonexistent", variant, {});
  ASSERT_FALSE(wrong_format);
  EXPECT_EQ(wrong_format.error().message, "variant \"v\": opencv does not load format \"tflite\"");

  variant.format = "onnx";
  variant.file = "model/digits_op13.onnx";
  const fs::path model = fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits" / "v1" / variant.file;
  auto session = (*backend)->Load(model, variant, {});
  ASSERT_TRUE(session) << session.error().message;
  Tensor t;
  t.name = "input";
  t.shape = {1, 1, 8, 8};
  t.data.resize(64 * sizeof(float));
  EXPECT_TRUE((*session)->Run({t}));
  t.shape = {1, 1, 8, 9};
  auto wrong_shape = (*session)->Run({t});
  ASSERT_FALSE(wrong_shape);
  EXPECT_EQ(wrong_shape.error().message,
            "input \"input\": expected shape [-1,1,8,8], found [1,1,8,9]");
  t.shape = {1, 1, 8, 8};
  t.name = "other";
  auto wrong_name = (*session)->Run({t});
  ASSERT_FALSE(wrong_name);
  EXPECT_EQ(wrong_name.error().message,
            "input \"other\": not an input of this model (expected \"input\")");
}

}  // namespace
}  // namespace edgefleet::runtime
