#include "tests/support/opencv_plugin.hpp"

#include "runtime/plugin_backend.hpp"

namespace edgefleet::testing {

std::filesystem::path BuildBackendsDir() { return EDGEFLEET_BACKENDS_DIR; }

std::filesystem::path OpenCvPluginPath() {
  return BuildBackendsDir() / "libedgefleet_backend_opencv.so";
}

Result<std::unique_ptr<runtime::Backend>> LoadOpenCvPlugin() {
  return runtime::LoadBackendPlugin(OpenCvPluginPath());
}

Result<std::unique_ptr<runtime::Backend>> LoadBuiltPlugin(const std::string& name) {
  return runtime::LoadBackendPlugin(BuildBackendsDir() / ("libedgefleet_backend_" + name + ".so"));
}

}  // namespace edgefleet::testing
