#include "tests/integration/agent_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <httplib.h>

#include "manifests/desired_state.hpp"
#include "manifests/time.hpp"
#include "manifests/trust.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace edgefleet::testing {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- BundleServer ----

BundleServer::BundleServer() : server_(std::make_unique<httplib::Server>()) {
  server_->Get(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<const std::string> data;
    ServeFaults faults;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(req.path);
      if (it == entries_.end()) {
        res.status = 404;
        res.set_content("not found", "text/plain");
        return;
      }
      Entry& e = it->second;
      ++e.requests;
      e.ranges.push_back(req.get_header_value("Range"));
      if (e.down) {
        ++e.unavailable;
        // No body: cpp-httplib 0.11 applies a request's Range to any body it is given and would
        // turn this 503 into a "416 Range Not Satisfiable" (bytes N-10/11) for a resuming client.
        res.status = 503;
        res.set_header("Retry-After", "0");
        return;
      }
      data = e.data;
      faults = e.faults;
    }
    const std::uint64_t total = data->size() + faults.extra_bytes;
    std::uint64_t start = 0;
    const std::string range = req.get_header_value("Range");
    if (!range.empty()) {
      // Only "bytes=N-" (and "bytes=N-M", served to the end) is what a resuming client sends.
      unsigned long long n = 0;
      if (std::sscanf(range.c_str(), "bytes=%llu-", &n) != 1 || n >= total) {
        res.status = 416;
        res.set_header("Content-Range", "bytes */" + std::to_string(total));
        return;
      }
      start = n;
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(start) + "-" +
                                          std::to_string(total - 1) + "/" + std::to_string(total));
    } else {
      res.status = 200;
    }
    // We answer the Range ourselves; httplib must not apply it a second time to our provider.
    const_cast<httplib::Request&>(req).ranges.clear();
    const std::string path = req.path;
    res.set_content_provider(
        static_cast<std::size_t>(total - start), "application/octet-stream",
        [this, data, faults, start, path](std::size_t offset, std::size_t length,
                                          httplib::DataSink& sink) {
          std::uint64_t pos = start + offset;
          std::size_t chunk = std::min<std::size_t>(length, 16 * 1024);
          if (faults.bytes_per_s > 0) {
            chunk = std::max<std::size_t>(1, std::min<std::size_t>(chunk, faults.bytes_per_s / 20));
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            if (stopping_) return false;
          }
          bool cut = false;
          {
            std::lock_guard lock(mu_);
            Entry& e = entries_[path];
            if (e.down) return false;
            if (faults.cut_after > 0 && e.sent + chunk >= faults.cut_after) {
              chunk =
                  static_cast<std::size_t>(faults.cut_after - std::min(e.sent, faults.cut_after));
              cut = true;
            }
            // Counted before the write so the count is final when the client has the bytes.
            e.sent += chunk;
          }
          std::string buf;
          buf.reserve(chunk);
          for (std::size_t i = 0; i < chunk; ++i, ++pos) {
            buf.push_back(pos < data->size() ? (*data)[pos] : 'x');
          }
          bool ok = chunk == 0 || sink.write(buf.data(), buf.size());
          std::lock_guard lock(mu_);
          Entry& e = entries_[path];
          if (!ok) e.sent -= chunk;
          if (cut) {
            e.down = true;
            return false;  // closes the connection mid-body
          }
          return ok;
        });
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) ADD_FAILURE() << "bundle server: bind failed";
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  for (int i = 0; i < 500 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

BundleServer::~BundleServer() {
  stopping_ = true;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string BundleServer::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void BundleServer::Add(const std::string& path, std::string contents, ServeFaults faults) {
  std::lock_guard lock(mu_);
  Entry e;
  e.data = std::make_shared<const std::string>(std::move(contents));
  e.faults = faults;
  entries_[path] = std::move(e);
}

void BundleServer::SetFaults(const std::string& path, ServeFaults faults) {
  std::lock_guard lock(mu_);
  entries_[path].faults = faults;
}

void BundleServer::Heal(const std::string& path) {
  std::lock_guard lock(mu_);
  entries_[path].faults = {};
  entries_[path].down = false;
}

std::uint64_t BundleServer::BytesSent(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(path);
  return it == entries_.end() ? 0 : it->second.sent;
}

int BundleServer::Requests(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(path);
  return it == entries_.end() ? 0 : it->second.requests;
}

int BundleServer::Unavailable(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(path);
  return it == entries_.end() ? 0 : it->second.unavailable;
}

std::vector<std::string> BundleServer::RangeHeaders(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(path);
  return it == entries_.end() ? std::vector<std::string>{} : it->second.ranges;
}

// ---- Fleet, bundles, desired state ----

namespace {

std::unique_ptr<manifests::PrivateKey> NewKey() {
  auto key = manifests::PrivateKey::Generate();
  if (!key) {
    ADD_FAILURE() << key.error().message;
    return nullptr;
  }
  return std::make_unique<manifests::PrivateKey>(*key);
}

}  // namespace

void MakeFleet(const fs::path& dir, Fleet& fleet) {
  fleet.dir = dir;
  fleet.root = NewKey();
  fleet.release = NewKey();
  fleet.deploy = NewKey();
  fleet.stranger = NewKey();
  ASSERT_TRUE(fleet.root && fleet.release && fleet.deploy && fleet.stranger);
  manifests::TrustRootBody body;
  body.version = 1;
  body.expires = manifests::Now() + std::chrono::hours(24 * 365);
  for (const auto* k : {fleet.root.get(), fleet.release.get(), fleet.deploy.get()}) {
    body.keys.emplace(k->KeyId(), k->Public());
  }
  body.roles[manifests::Role::kRoot] = {{fleet.root->KeyId()}, 1};
  body.roles[manifests::Role::kRelease] = {{fleet.release->KeyId()}, 1};
  body.roles[manifests::Role::kDeploy] = {{fleet.deploy->KeyId()}, 1};
  manifests::SignedEnvelope env;
  env.signed_body = body.ToJson();
  ASSERT_TRUE(env.Sign(*fleet.root));
  fleet.root_json = dir / "root.json";
  WriteFile(fleet.root_json, env.ToJson().dump(2));
  fleet.release_key_file = dir / "release.key";
  fleet.stranger_key_file = dir / "stranger.key";
  ASSERT_TRUE(manifests::SavePrivateKey(*fleet.release, fleet.release_key_file));
  ASSERT_TRUE(manifests::SavePrivateKey(*fleet.stranger, fleet.stranger_key_file));
}

Bundle MakeBundle(const Fleet& fleet, const std::string& name, const fs::path& work,
                  const std::function<void(json&, const fs::path&)>& edit,
                  const std::vector<std::string>& extra_args) {
  static int counter = 0;
  Bundle b;
  const fs::path src = fs::path(EDGEFLEET_TEST_DATA_DIR) / "digits" / name;
  const std::string tag = name + "-" + std::to_string(++counter);
  const fs::path dir = work / ("src-" + tag);
  fs::copy(src, dir, fs::copy_options::recursive);
  json body = json::parse(ReadFile(dir / "bundle.json"));
  if (edit) edit(body, dir);
  WriteFile(dir / "bundle.json", body.dump(2));
  b.path = work / (tag + ".efb");
  std::vector<std::string> args = {
      EDGEFLEET_CLI, "bundle",        "create", dir.string(),
      "-o",          b.path.string(), "--key",  fleet.release_key_file.string()};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto r = RunProcess(args, std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 0) << "bundle create: " << r.out << r.err;
  auto inspect = RunProcess({EDGEFLEET_CLI, "bundle", "inspect", "--json", b.path.string()},
                            std::chrono::seconds(60));
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  json doc = json::parse(inspect.out, nullptr, false);
  if (doc.is_object() && doc.contains("signed")) b.manifest = doc["signed"];
  b.version = b.manifest.value("version", "");
  b.bytes = ReadFile(b.path);
  b.sha256 = manifests::Sha256Hex(b.bytes);
  return b;
}

Bundle LoadBundleFile(const fs::path& path, const Bundle& like) {
  Bundle b = like;
  b.path = path;
  b.bytes = ReadFile(path);
  b.sha256 = manifests::Sha256Hex(b.bytes);
  return b;
}

json ShortWatch() {
  return {{"window_s", 2},
          {"min_requests", 20},
          {"max_error_rate", 0.01},
          {"max_p95_latency_factor", 50},
          {"min_online_accuracy", 0.5}};
}

json DesiredModel(const Bundle& bundle, const std::string& url, bool allow_downgrade) {
  json requirements = json::array();
  for (json v : bundle.manifest["variants"]) {
    v.erase("file");
    requirements.push_back(v);
  }
  return {{"name", bundle.manifest["name"]},
          {"version", bundle.version},
          {"bundle", {{"url", url}, {"size", bundle.bytes.size()}, {"sha256", bundle.sha256}}},
          {"allow_downgrade", allow_downgrade},
          {"requirements", requirements}};
}

std::string DesiredStateDoc(const manifests::PrivateKey& key, std::uint64_t serial,
                            const std::vector<json>& models, std::chrono::seconds expires_in,
                            const json& target) {
  const auto now = manifests::Now();
  json body = {{"type", "edgefleet/desired-state"},
               {"spec_version", 1},
               {"fleet", "demo"},
               {"target", target},
               {"serial", serial},
               {"created", manifests::FormatTimestamp(now - std::chrono::minutes(5))},
               {"expires", manifests::FormatTimestamp(now + expires_in)},
               {"models", models}};
  auto parsed = manifests::DesiredState::FromJson(body, "test desired state");
  EXPECT_TRUE(parsed) << parsed.error().message;
  manifests::SignedEnvelope env;
  env.signed_body = parsed ? parsed->ToJson() : body;
  EXPECT_TRUE(env.Sign(key));
  return env.ToJson().dump();
}

void WriteAtomically(const fs::path& path, const std::string& contents) {
  const fs::path tmp = path.string() + ".tmp";
  WriteFile(tmp, contents);
  fs::rename(tmp, path);
}

std::string Tail(const fs::path& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += "  | " + l + "\n";
  return out;
}

}  // namespace edgefleet::testing
