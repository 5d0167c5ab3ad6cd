// The opencv backend as the agent loads it: this build tree's plugin library
// (lib/edgefleet/backends/libedgefleet_backend_opencv.so) through the real plugin loader.
#pragma once

#include <filesystem>
#include <memory>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::testing {

// The build tree's backends directory (what a built agent uses by default).
std::filesystem::path BuildBackendsDir();
std::filesystem::path OpenCvPluginPath();
Result<std::unique_ptr<runtime::Backend>> LoadOpenCvPlugin();

}  // namespace edgefleet::testing
