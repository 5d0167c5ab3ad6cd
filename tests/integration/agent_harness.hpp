// Harness for end-to-end tests of the real `edgefleet-agent` process: a background child process
// (own process group, stderr+stdout into a file, killed at teardown), a loopback bundle server
// with Range support, byte counters and fault modes, and a fleet operator's kit (keys, trust root,
// bundles made by the real `edgefleet` CLI, signed desired-state documents).
//
// Thread safety: BundleServer's fault and counter methods may be called from any thread while it
// serves; everything else is for the test's main thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/envelope.hpp"
#include "tests/support/background_process.hpp"

namespace httplib {
class Server;
}

namespace edgefleet::testing {

// Fault modes for one served path.
struct ServeFaults {
  std::uint64_t cut_after = 0;    // >0: close the connection once this many bytes were sent
                                  // in total for the path, then answer 503 until Heal()
  std::uint64_t bytes_per_s = 0;  // >0: throttle (trickle) to about this rate
  std::uint64_t extra_bytes = 0;  // >0: serve this much garbage past the real content
};

// A loopback HTTP file server (cpp-httplib) that answers Range requests itself and counts the
// body bytes it sends per path.
class BundleServer final {
 public:
  BundleServer();
  ~BundleServer();
  BundleServer(const BundleServer&) = delete;
  BundleServer& operator=(const BundleServer&) = delete;

  int port() const { return port_; }
  std::string Url(const std::string& path) const;  // path starts with '/'

  void Add(const std::string& path, std::string contents, ServeFaults faults = {});
  void SetFaults(const std::string& path, ServeFaults faults);
  void Heal(const std::string& path);  // clears faults and the 503 state
  std::uint64_t BytesSent(const std::string& path) const;
  int Requests(const std::string& path) const;
  int Unavailable(const std::string& path) const;  // 503s answered
  std::vector<std::string> RangeHeaders(const std::string& path) const;

 private:
  struct Entry {
    std::shared_ptr<const std::string> data;
    ServeFaults faults;
    bool down = false;
    std::uint64_t sent = 0;
    int requests = 0;
    int unavailable = 0;
    std::vector<std::string> ranges;
  };
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // guarded by mu_
};

// Keys, trust root and the signing side of the fleet.
struct Fleet {
  std::filesystem::path dir;
  std::unique_ptr<manifests::PrivateKey> root, release, deploy, stranger;
  std::filesystem::path root_json, release_key_file, stranger_key_file;
};
void MakeFleet(const std::filesystem::path& dir, Fleet& fleet);

// A bundle made by the real CLI: its bytes, sha256 and manifest (signed body).
struct Bundle {
  std::filesystem::path path;
  std::string bytes;
  std::string sha256;
  nlohmann::json manifest;  // the signed body
  std::string version;
};

// Copies tests/data/digits/<name> to `work`, applies `edit` to its bundle.json, runs
// `edgefleet bundle create` with the release key (extra CLI args appended).
Bundle MakeBundle(const Fleet& fleet, const std::string& name, const std::filesystem::path& work,
                  const std::function<void(nlohmann::json&, const std::filesystem::path&)>& edit,
                  const std::vector<std::string>& extra_args = {});
// Reads an .efb written by the test (hostile ones too); the manifest is taken from `like`.
Bundle LoadBundleFile(const std::filesystem::path& path, const Bundle& like);

// The short watch policy used by the tests.
nlohmann::json ShortWatch();

// One desired-state model entry for `bundle` served at `url`.
nlohmann::json DesiredModel(const Bundle& bundle, const std::string& url,
                            bool allow_downgrade = false);
// A signed desired-state envelope (JSON text) for `target` (default: device box-1; a group is
// {"group": "lab"}) in fleet demo.
std::string DesiredStateDoc(const manifests::PrivateKey& key, std::uint64_t serial,
                            const std::vector<nlohmann::json>& models,
                            std::chrono::seconds expires_in = std::chrono::hours(1),
                            const nlohmann::json& target = {{"device", "box-1"}});
void WriteAtomically(const std::filesystem::path& path, const std::string& contents);

// Last `lines` lines of a file.
std::string Tail(const std::filesystem::path& path, int lines = 40);

}  // namespace edgefleet::testing
