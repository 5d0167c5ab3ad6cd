// The build tree's backend plugins as the agent loads them; the opencv one: this build tree's
// plugin library (lib/edgefleet/backends/libedgefleet_backend_opencv.so) through the real plugin
// loader.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::testing {

// The build tree's backends directory (what a built agent uses by default).
std::filesystem::path BuildBackendsDir();
std::filesystem::path OpenCvPluginPath();
Result<std::unique_ptr<runtime::Backend>> LoadOpenCvPlugin();
// The build tree's libedgefleet_backend_<name>.so through the real plugin loader.
Result<std::unique_ptr<runtime::Backend>> LoadBuiltPlugin(const std::string& name);

}  // namespace edgefleet::testing
