// A real LocalApi on a free loopback port in front of a real ModelHost serving tests/data/digits
// through the OpenCV backend plugin: the fixture of the local API's integration tests.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "agent/local_api.hpp"
#include "agent/serving_stats.hpp"
#include "runtime/model_host.hpp"
#include "tests/support/digits.hpp"
#include "tests/support/httplib_prime.hpp"
#include "tests/support/opencv_plugin.hpp"

namespace edgefleet {

namespace fs = std::filesystem;

inline const fs::path kDigits = fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits";

inline std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct HeldoutImage {
  std::string png;
  int label = -1;
  std::string file;
};

// heldout_png/NNN_L.png: image NNN of the golden batch, true class L.
inline std::vector<HeldoutImage> LoadHeldoutPngs() {
  std::vector<HeldoutImage> images;
  for (const auto& entry : fs::directory_iterator(kDigits / "heldout_png")) {
    const std::string name = entry.path().filename().string();
    const auto underscore = name.find('_');
    if (entry.path().extension() != ".png" || underscore == std::string::npos) continue;
    images.push_back({ReadAll(entry.path()), std::stoi(name.substr(underscore + 1)), name});
  }
  std::sort(images.begin(), images.end(),
            [](const auto& a, const auto& b) { return a.file < b.file; });
  return images;
}

// A ModelHost with the OpenCV backend and the API in front of it.
class Served {
 public:
  Served() {
    auto backend = testing::LoadOpenCvPlugin();
    if (!backend) {
      ADD_FAILURE() << "LoadOpenCvPlugin: " << backend.error().message;
      return;
    }
    backend_ = std::move(backend).value();
  }
  ~Served() {
    if (api_) api_->Stop();
  }

  // Loads tests/data/digits/<dir> (its opset-10 variant) into `slot`.
  void Load(const std::string& dir, runtime::Slot slot) {
    auto manifest = testing::LoadBundleManifest(kDigits / dir);
    ASSERT_TRUE(manifest) << manifest.error().message;
    auto variant = std::find_if(manifest->variants.begin(), manifest->variants.end(),
                                [](const auto& v) { return v.id == "onnx-op10"; });
    ASSERT_NE(variant, manifest->variants.end());
    runtime::LoadRequest request;
    request.name = manifest->name;
    request.version = manifest->version;
    request.slot = slot;
    request.model_file = kDigits / dir / variant->file;
    request.variant = *variant;
    request.preprocessing = manifest->preprocessing;
    request.bundle_sha256 = std::string(64, '0');
    request.backend = backend_.get();
    request.options.threads = 1;
    request.options.parallel_runs = 4;
    auto loaded = host_.Load(request);
    ASSERT_TRUE(loaded) << loaded.error().message;
  }

  void Start(agent::LocalApiOptions options = {}) {
    // Logging exists before the server's threads do, as in the agent's main. Otherwise spdlog's
    // registry is created by the API's first log line after its workers started, and a worker's
    // first read of it is ordered only through a client and a socket, which ThreadSanitizer
    // cannot see.
    spdlog::default_logger();
    // Tests then send from several client threads; see httplib_prime.hpp.
    testing::PrimeHttplibClient();
    auto api = agent::LocalApi::Start(host_, stats_, std::move(options));
    ASSERT_TRUE(api) << api.error().message;
    api_ = std::move(api).value();
    ASSERT_GT(api_->port(), 0);
  }

  std::unique_ptr<httplib::Client> Client() const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", api_->port());
    client->set_connection_timeout(5, 0);
    client->set_read_timeout(20, 0);
    client->set_write_timeout(20, 0);
    return client;
  }

  runtime::ModelHost& host() { return host_; }
  agent::LocalApi& api() { return *api_; }
  agent::ServingStats& stats() { return stats_; }

 private:
  std::unique_ptr<runtime::Backend> backend_;
  runtime::ModelHost host_;
  agent::ServingStats stats_;
  std::unique_ptr<agent::LocalApi> api_;
};

}  // namespace edgefleet
