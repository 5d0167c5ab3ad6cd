// edgefleet-agent: serves the local inference API and applies signed desired state (agent/SPEC.md).
// Exit codes: 0 success, 1 refused or failed (the reason on stderr), 2 bad usage.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <httplib.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "agent/backends.hpp"
#include "agent/config.hpp"
#include "agent/fleet_link.hpp"
#include "agent/local_api.hpp"
#include "agent/update_machine.hpp"
#include "manifests/envelope.hpp"
#include "manifests/files.hpp"
#include "manifests/log_value.hpp"
#include "manifests/time.hpp"
#include "manifests/trust.hpp"
#include "runtime/model_host.hpp"
#include "updater/journal.hpp"
#include "updater/slots.hpp"

namespace {

using edgefleet::ErrorCode;
using edgefleet::Result;
using edgefleet::Status;
namespace agent = edgefleet::agent;
namespace manifests = edgefleet::manifests;
namespace runtime = edgefleet::runtime;
namespace updater = edgefleet::updater;
using nlohmann::json;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_hup{false};
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void OnSignal(int signo) {
  if (signo == SIGHUP) {
    g_hup.store(true);
    return;
  }
  g_stop_signal = signo;
  g_stop.store(true);
}

void InstallSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return early
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

const char* SignalName(int signo) {
  switch (signo) {
    case SIGTERM:
      return "TERM";
    case SIGINT:
      return "INT";
    default:
      return "OTHER";
  }
}

int Refuse(const std::string& message) {
  std::cerr << "edgefleet-agent: error: " << manifests::SafeText(message) << "\n";
  return 1;
}

// Holds <state_dir>/lock (flock) for the life of the process.
class StateLock final {
 public:
  static Result<StateLock> Acquire(const std::filesystem::path& state_dir) {
    const auto path = state_dir / "lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return edgefleet::Fail(ErrorCode::kIo,
                             path.string() + ": cannot open: " + std::strerror(errno));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return edgefleet::Fail(ErrorCode::kInvalidArgument,
                               state_dir.string() +
                                   ": state directory in use (another edgefleet-agent holds " +
                                   path.string() + ")");
      }
      return edgefleet::Fail(ErrorCode::kIo, path.string() + ": flock: " + std::strerror(err));
    }
    return StateLock(fd);
  }
  StateLock(StateLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  StateLock& operator=(StateLock&&) = delete;
  StateLock(const StateLock&) = delete;
  ~StateLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

// What every command but status opens.
struct Env {
  agent::AgentConfig config;
  std::optional<manifests::TrustRoot> trust;
  std::optional<updater::SlotStore> slots;
  std::optional<updater::Journal> journal;
  agent::AgentBackends loaded;
  std::vector<runtime::Backend*> backends;  // loaded.ordered
};

Status OpenEnv(const std::filesystem::path& config_path, Env& env, bool with_backends) {
  EF_ASSIGN_OR_RETURN(env.config, agent::LoadConfig(config_path));
  std::error_code ec;
  std::filesystem::create_directories(env.config.state_dir, ec);
  if (ec) {
    return edgefleet::Fail(ErrorCode::kIo,
                           env.config.state_dir.string() + ": cannot create: " + ec.message());
  }
  EF_ASSIGN_OR_RETURN(auto trust,
                      manifests::TrustRoot::Load(env.config.trust_root, manifests::Now()));
  env.trust.emplace(std::move(trust));
  EF_ASSIGN_OR_RETURN(auto slots, updater::SlotStore::Open(env.config.state_dir));
  env.slots.emplace(std::move(slots));
  EF_ASSIGN_OR_RETURN(auto journal, updater::Journal::Open(env.config.state_dir / "journal.db"));
  env.journal.emplace(std::move(journal));
  if (with_backends) {
    env.loaded = agent::LoadAgentBackends(env.config);
    env.backends = env.loaded.ordered;
    // What `status` lists (it does not load libraries itself).
    json list = json::array();
    for (const runtime::Backend* b : env.backends) {
      const auto& caps = b->capabilities();
      list.push_back({{"name", caps.name},
                      {"version", caps.version.ToString()},
                      {"engine", manifests::SafeText(caps.engine)},
                      {"formats", caps.formats},
                      {"devices", caps.targets}});
    }
    if (auto ok =
            manifests::WriteFileAtomically(env.config.state_dir / "backends.json", list.dump());
        !ok) {
      spdlog::warn("event=backends_not_recorded error={}", manifests::LogValue(ok.error().message));
    }
  }
  return edgefleet::Ok();
}

agent::MachineContext Context(Env& env, runtime::ModelHost& host,
                              const agent::ServingStats* stats) {
  agent::MachineContext ctx;
  ctx.config = &env.config;
  ctx.trust = &*env.trust;
  ctx.journal = &*env.journal;
  ctx.slots = &*env.slots;
  ctx.host = &host;
  ctx.backends = env.backends;
  ctx.stats = stats;
  ctx.cancel = &g_stop;
  return ctx;
}

constexpr std::size_t kDesiredCap = manifests::kMaxDesiredStateBytes;

// Reads the desired-state document (file or URL), at most 64 KiB.
Result<std::string> ReadDesired(const agent::DesiredStateConfig& ds,
                                const agent::DownloadConfig& dl) {
  if (!ds.file.empty() || ds.url.rfind("file://", 0) == 0) {
    const std::filesystem::path path =
        ds.file.empty() ? std::filesystem::path(ds.url.substr(7)) : ds.file;
    std::ifstream in(path, std::ios::binary);
    if (!in) return edgefleet::Fail(ErrorCode::kNotFound, path.string() + ": cannot open");
    std::string text(kDesiredCap + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (text.size() > kDesiredCap) {
      return edgefleet::Fail(ErrorCode::kLimit, path.string() + ": larger than 64 KiB");
    }
    return text;
  }
  const auto scheme_end = ds.url.find("://");
  const auto path_start = ds.url.find('/', scheme_end + 3);
  const std::string origin = ds.url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : ds.url.substr(path_start);
  httplib::Client client(origin);
  client.set_connection_timeout(std::chrono::seconds(dl.connect_timeout_s));
  client.set_read_timeout(std::chrono::seconds(30));
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  if (!dl.ca_file.empty()) client.set_ca_cert_path(dl.ca_file.string());
#endif
  std::string body;
  bool too_large = false;
  auto res = client.Get(path, [&](const char* data, std::size_t n) {
    if (body.size() + n > kDesiredCap) {
      too_large = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (too_large) return edgefleet::Fail(ErrorCode::kLimit, ds.url + ": larger than 64 KiB");
  if (!res) {
    return edgefleet::Fail(ErrorCode::kIo, ds.url + ": " + httplib::to_string(res.error()));
  }
  if (res->status != 200) {
    return edgefleet::Fail(ErrorCode::kIo, ds.url + ": HTTP " + std::to_string(res->status));
  }
  return body;
}

int RunCommand(const std::filesystem::path& config_path) {
  InstallSignals();
  Env env;
  if (auto ok = OpenEnv(config_path, env, true); !ok) return Refuse(ok.error().message);
  auto lock = StateLock::Acquire(env.config.state_dir);
  if (!lock) return Refuse(lock.error().message);

  runtime::ModelHost host;
  // Recovery runs before the fleet link exists; its events are kept and sent once it does.
  std::vector<edgefleet::telemetry::EventMessage> recovery_events;
  {
    auto ctx = Context(env, host, nullptr);
    ctx.on_event = [&](edgefleet::telemetry::EventMessage e) {
      recovery_events.push_back(std::move(e));
    };
    agent::UpdateMachine recovery(std::move(ctx));
    if (auto ok = recovery.RecoverAndLoad(); !ok) return Refuse(ok.error().message);
  }
  agent::LocalApiOptions api_options;
  api_options.host = env.config.api.host;
  api_options.port = env.config.api.port;
  api_options.shared_memory = env.config.api.shared_memory;
  api_options.unix_socket = env.config.api.unix_socket.string();
  api_options.unix_socket_mode = env.config.api.unix_socket_mode;
  api_options.unix_socket_group = env.config.api.unix_socket_group;
  api_options.max_image_bytes = static_cast<std::size_t>(env.config.api.max_image_bytes);
  agent::ServingStats stats;
  auto api = agent::LocalApi::Start(host, stats, api_options);
  if (!api) return Refuse(api.error().message);
  if (auto ok = manifests::WriteFileAtomically(env.config.state_dir / "api.port",
                                               std::to_string((*api)->port()) + "\n");
      !ok) {
    return Refuse(ok.error().message);
  }
  std::unique_ptr<agent::FleetLink> link;
  if (!env.config.mqtt.host.empty()) {
    std::vector<edgefleet::telemetry::BackendInfo> backends;
    for (const runtime::Backend* b : env.backends) {
      const auto& caps = b->capabilities();
      backends.push_back({caps.name, caps.version.ToString(), caps.formats, caps.targets});
    }
    auto started = agent::FleetLink::Start(env.config, std::move(backends), host, &stats);
    if (!started) return Refuse(started.error().message);
    link = std::move(started).value();
    for (auto& e : recovery_events) link->Event(std::move(e));
  }
  auto machine_ctx = Context(env, host, &stats);
  if (link) {
    machine_ctx.on_event = [&link](edgefleet::telemetry::EventMessage e) {
      link->Event(std::move(e));
    };
  }
  agent::UpdateMachine machine(std::move(machine_ctx));

  const auto& ds = env.config.desired_state;
  const bool has_source = !ds.file.empty() || !ds.url.empty();
  std::optional<std::string> last_text;
  std::string last_error;
  auto next_poll = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    const bool hup = g_hup.exchange(false);
    if (hup) spdlog::info("event=reload signal=HUP");
    if (link) {
      // Documents from the retained desired topics; each is verified like a file's.
      while (!g_stop.load()) {
        auto doc = link->NextDesired(std::chrono::milliseconds(0));
        if (!doc) break;
        machine.ApplyDesiredState(doc->payload, doc->topic);
      }
    }
    const bool poll_due = hup || std::chrono::steady_clock::now() >= next_poll;
    if (has_source && poll_due) {
      next_poll = std::chrono::steady_clock::now() + std::chrono::milliseconds(ds.poll_ms);
      auto text = ReadDesired(ds, env.config.download);
      if (!text) {
        if (text.error().message != last_error) {
          spdlog::warn("event=desired_state_unreadable error=\"{}\"", text.error().message);
          last_error = text.error().message;
        }
      } else if (hup || !last_text || *last_text != *text) {
        last_error.clear();
        last_text = *text;
        machine.ApplyDesiredState(*text, ds.file.empty() ? ds.url : ds.file.string());
      }
    }
    if (link) {
      // Wakes as soon as a desired document arrives; short, so signals are seen promptly.
      if (auto doc = link->NextDesired(std::chrono::milliseconds(20)); doc && !g_stop.load()) {
        machine.ApplyDesiredState(doc->payload, doc->topic);
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  spdlog::info("event=stopping signal={}", SignalName(g_stop_signal));
  (*api)->Stop();
  if (link) link->Stop();
  return 0;
}

int InstallCommand(const std::filesystem::path& config_path, const std::filesystem::path& bundle) {
  InstallSignals();
  Env env;
  if (auto ok = OpenEnv(config_path, env, true); !ok) return Refuse(ok.error().message);
  auto lock = StateLock::Acquire(env.config.state_dir);
  if (!lock) return Refuse(lock.error().message);
  runtime::ModelHost host;
  agent::UpdateMachine machine(Context(env, host, nullptr));
  if (auto ok = machine.RecoverAndLoad(); !ok) return Refuse(ok.error().message);
  auto dep = machine.InstallLocal(bundle);
  if (!dep) return Refuse(dep.error().message);
  std::cout << "installed " << dep->request.model << " " << dep->request.version << " into slot "
            << updater::ToString(dep->slot) << " (deployment " << dep->id
            << "); offline install: no watch window\n";
  return 0;
}

int RollbackCommand(const std::filesystem::path& config_path, const std::string& model) {
  Env env;
  if (auto ok = OpenEnv(config_path, env, false); !ok) return Refuse(ok.error().message);
  auto lock = StateLock::Acquire(env.config.state_dir);
  if (!lock) return Refuse(lock.error().message);
  runtime::ModelHost host;
  agent::UpdateMachine machine(Context(env, host, nullptr));
  auto record = machine.RollBack(model);
  if (!record) return Refuse(record.error().message);
  std::cout << "rolled back " << model << " to " << record->active->version << " (slot "
            << updater::ToString(record->active->slot) << ")\n";
  return 0;
}

json InstalledJson(const std::optional<updater::InstalledModel>& m) {
  if (!m) return nullptr;
  return {{"slot", std::string(updater::ToString(m->slot))},
          {"version", m->version},
          {"sha256", m->sha256}};
}

int StatusCommand(const std::filesystem::path& config_path, bool as_json) {
  auto config = agent::LoadConfig(config_path);
  if (!config) return Refuse(config.error().message);
  const auto db = config->state_dir / "journal.db";
  // The backends the agent loaded at its last start (`run` or `install` write them; loading them
  // here would dlopen every engine on each status call).
  json backends = json::array();
  if (std::ifstream in(config->state_dir / "backends.json", std::ios::binary); in) {
    json parsed = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_array()) backends = std::move(parsed);
  }
  json out = {{"backends", backends}, {"models", json::array()}, {"deployments", json::array()}};
  std::error_code ec;
  if (std::filesystem::exists(db, ec)) {
    auto journal = updater::Journal::Open(db);
    if (!journal) return Refuse(journal.error().message);
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(config->state_dir / "models", ec)) {
      if (e.is_directory()) names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    auto deployments = agent::ListDeployments(*journal, 20);
    if (!deployments) return Refuse(deployments.error().message);
    for (const auto& d : *deployments) {
      if (std::find(names.begin(), names.end(), d.request.model) == names.end())
        names.push_back(d.request.model);
    }
    for (const auto& name : names) {
      auto rec = journal->ReadModel(name);
      if (!rec) return Refuse(rec.error().message);
      if (!rec->active && !rec->previous && rec->highest_version.empty()) continue;
      out["models"].push_back(
          {{"name", manifests::SafeText(name)},
           {"active", InstalledJson(rec->active)},
           {"previous", InstalledJson(rec->previous)},
           {"highest", rec->highest_version.empty() ? json(nullptr) : json(rec->highest_version)}});
    }
    for (const auto& d : *deployments) {
      json transitions = json::array();
      auto ts = journal->Transitions(d.id);
      if (!ts) return Refuse(ts.error().message);
      for (const auto& t : *ts) {
        transitions.push_back(
            {{"from", t.from ? json(std::string(updater::ToString(*t.from))) : json(nullptr)},
             {"to", std::string(updater::ToString(t.to))},
             {"reason", manifests::SafeText(t.reason)},
             {"at", manifests::FormatTimestamp(
                        manifests::Timestamp(std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::milliseconds(t.at_ms))))}});
      }
      // Journals written before names were escaped may hold raw bytes: shown escaped.
      out["deployments"].push_back({{"id", d.id},
                                    {"model", manifests::SafeText(d.request.model)},
                                    {"version", manifests::SafeText(d.request.version)},
                                    {"state", std::string(updater::ToString(d.state))},
                                    {"reason", manifests::SafeText(d.reason)},
                                    {"transitions", transitions}});
    }
  }
  if (as_json) {
    // Every string above went through SafeText; `replace` keeps a missed one from aborting.
    std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return 0;
  }
  for (const auto& b : out["backends"]) {
    std::cout << "backend " << b["name"].get<std::string>() << " "
              << b["version"].get<std::string>() << ": " << b["formats"].dump() << " on "
              << b["devices"].dump() << " (" << b["engine"].get<std::string>() << ")\n";
  }
  for (const auto& m : out["models"]) {
    std::cout << "model " << m["name"].get<std::string>() << "\n";
    for (const char* key : {"active", "previous"}) {
      const json& s = m[key];
      std::cout << "  " << key << ": "
                << (s.is_null() ? std::string("none")
                                : s["version"].get<std::string>() + " (slot " +
                                      s["slot"].get<std::string>() + ", sha256 " +
                                      s["sha256"].get<std::string>() + ")")
                << "\n";
    }
    std::cout << "  highest: "
              << (m["highest"].is_null() ? std::string("none") : m["highest"].get<std::string>())
              << "\n";
  }
  for (const auto& d : out["deployments"]) {
    std::cout << "deployment " << d["id"].get<std::int64_t>() << " "
              << d["model"].get<std::string>() << " " << d["version"].get<std::string>() << ": "
              << d["state"].get<std::string>();
    if (!d["reason"].get<std::string>().empty())
      std::cout << " (" << d["reason"].get<std::string>() << ")";
    std::cout << "\n";
    for (const auto& t : d["transitions"]) {
      std::cout << "  " << t["at"].get<std::string>() << " "
                << (t["from"].is_null() ? std::string("none") : t["from"].get<std::string>())
                << " -> " << t["to"].get<std::string>();
      if (!t["reason"].get<std::string>().empty())
        std::cout << ": " << t["reason"].get<std::string>();
      std::cout << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_logger_mt("edgefleet-agent");
  logger->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);

  CLI::App app{"edgefleet-agent: serve models and keep them updated from signed desired state"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(EDGEFLEET_VERSION));
  std::string config;
  std::string bundle;
  std::string model;
  bool as_json = false;

  auto* run = app.add_subcommand("run", "Serve the local API and apply desired state");
  run->add_option("--config", config, "Agent config file (JSON)")->required();
  auto* install = app.add_subcommand("install", "Offline install of a bundle file");
  install->add_option("--config", config, "Agent config file (JSON)")->required();
  install->add_option("bundle", bundle, "Bundle file (*.efb)")->required();
  auto* rollback = app.add_subcommand("rollback", "Switch back to the previous committed model");
  rollback->add_option("--config", config, "Agent config file (JSON)")->required();
  rollback->add_option("--model", model, "Model name")->required();
  auto* status = app.add_subcommand("status", "What the journal says (read-only)");
  status->add_option("--config", config, "Agent config file (JSON)")->required();
  status->add_flag("--json", as_json, "JSON output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    (void)app.exit(e);
    return 2;
  }
  if (run->parsed()) return RunCommand(config);
  if (install->parsed()) return InstallCommand(config, bundle);
  if (rollback->parsed()) return RollbackCommand(config, model);
  if (status->parsed()) return StatusCommand(config, as_json);
  return 2;
}
