#include "agent/config.hpp"

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "manifests/json_fields.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::agent {

namespace {

using manifests::Child;
using manifests::FieldReader;
using nlohmann::json;

constexpr std::size_t kMaxConfigBytes = 1 << 20;

std::filesystem::path Resolve(const std::filesystem::path& base, const std::string& value) {
  if (value.empty()) return {};
  std::filesystem::path p(value);
  if (p.is_absolute()) return p.lexically_normal();
  return (base / p).lexically_normal();
}

// Reads an optional integer within [min, max] into `out` (keeps the default when absent).
void ReadInt(FieldReader& r, const json& obj, std::string_view key, std::string_view parent,
             std::int64_t min, std::int64_t max, std::int64_t& out) {
  const std::string path = Child(parent, key);
  auto v = r.Integer(obj, key, path, /*required=*/false);
  if (!v) return;
  if (*v < min || *v > max) {
    r.Problem(path, "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                        "], found " + std::to_string(*v));
    return;
  }
  out = *v;
}

// Reads an optional number within [min, max] into `out` (keeps the default when absent).
void ReadNumber(FieldReader& r, const json& obj, std::string_view key, std::string_view parent,
                double min, double max, double& out) {
  const std::string path = Child(parent, key);
  auto v = r.Number(obj, key, path, /*required=*/false);
  if (!v) return;
  if (*v < min || *v > max) {
    std::ostringstream text;  // 2.5 and 1000 as written, not 2.500000
    text << "expected a number in [" << min << ", " << max << "], found " << *v;
    r.Problem(path, text.str());
    return;
  }
  out = *v;
}

void ReadPath(FieldReader& r, const json& obj, std::string_view key, std::string_view parent,
              const std::filesystem::path& base, std::filesystem::path& out, bool required) {
  auto v = r.String(obj, key, Child(parent, key), required);
  if (!v) return;
  if (required && v->empty()) {
    r.Problem(Child(parent, key), "expected a non-empty path, found \"\"");
    return;
  }
  out = Resolve(base, *v);
}

bool IsBackendName(std::string_view name) {
  return !name.empty() && name.size() <= 32 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

}  // namespace

Result<AgentConfig> ParseConfig(std::string_view text, const std::filesystem::path& path) {
  const std::string source = path.string();
  EF_ASSIGN_OR_RETURN(json doc, manifests::ParseJsonText(text, source, kMaxConfigBytes));
  FieldReader r(source);
  AgentConfig config;
  config.path = path;
  if (!doc.is_object()) {
    r.Problem(
        "", std::string("expected an object, found ") + std::string(manifests::JsonTypeName(doc)));
    EF_RETURN_IF_ERROR(r.ToStatus());
  }
  const std::filesystem::path base =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  r.RejectUnknown(doc,
                  {"device", "fleet", "groups", "state_dir", "trust_root", "backends_dir",
                   "backends", "backend_options", "api", "desired_state", "download", "runtime",
                   "watch", "mqtt", "telemetry"},
                  "");

  if (auto v = manifests::ReadName(r, doc, "device", "device")) config.device = *v;
  if (auto v = manifests::ReadName(r, doc, "fleet", "fleet")) config.fleet = *v;
  if (const json* groups = r.Array(doc, "groups", "groups", /*required=*/false)) {
    for (std::size_t i = 0; i < groups->size(); ++i) {
      const json& g = (*groups)[i];
      const std::string p = manifests::Index("groups", i);
      if (!g.is_string() || !manifests::IsValidName(g.get<std::string>())) {
        r.Problem(p, "expected a name ([a-z0-9][a-z0-9._-]{0,63}), found " +
                         (g.is_string() ? manifests::QuoteForMessage(g.get<std::string>())
                                        : std::string(manifests::JsonTypeName(g))));
        continue;
      }
      config.groups.push_back(g.get<std::string>());
    }
  }
  ReadPath(r, doc, "state_dir", "", base, config.state_dir, true);
  ReadPath(r, doc, "trust_root", "", base, config.trust_root, true);
  if (const json* backends = r.Array(doc, "backends", "backends", /*required=*/false)) {
    config.backends.clear();
    std::set<std::string> seen;
    for (std::size_t i = 0; i < backends->size(); ++i) {
      const json& b = (*backends)[i];
      const std::string p = manifests::Index("backends", i);
      if (!b.is_string()) {
        r.Problem(p, "expected a string, found " + std::string(manifests::JsonTypeName(b)));
        continue;
      }
      const std::string name = b.get<std::string>();
      if (!IsBackendName(name)) {
        r.Problem(p, "expected a backend name ([a-z0-9_-]{1,32}), found " +
                         manifests::QuoteForMessage(name));
        continue;
      }
      if (!seen.insert(name).second) {
        r.Problem(p, "duplicate backend " + manifests::QuoteForMessage(name));
        continue;
      }
      config.backends.push_back(name);
    }
    if (backends->empty()) r.Problem("backends", "expected at least one backend, found none");
  }
  ReadPath(r, doc, "backends_dir", "", base, config.backends_dir, false);
  if (const json* options = r.Object(doc, "backend_options", "backend_options", false)) {
    for (const auto& [name, value] : options->items()) {
      if (!IsBackendName(name)) {
        r.Problem("backend_options", "expected backend names ([a-z0-9_-]{1,32}) as keys, found " +
                                         manifests::QuoteForMessage(name));
      } else if (!value.is_object()) {
        r.Problem("backend_options." + name,
                  "expected an object, found " + std::string(manifests::JsonTypeName(value)));
      } else {
        // The agent adds these to each load (backend_plugin.h); a config may not set them.
        for (const auto& [key, unused] : value.items()) {
          if (key.rfind("edgefleet_", 0) == 0) {
            r.Problem("backend_options." + name + "." + key,
                      "keys starting with edgefleet_ are the agent's own (set per model load)");
          }
        }
      }
    }
    config.backend_options_json = options->dump();
  }

  if (const json* api = r.Object(doc, "api", "api", /*required=*/false)) {
    r.RejectUnknown(*api,
                    {"host", "port", "shared_memory", "max_image_bytes", "unix_socket",
                     "unix_socket_mode", "unix_socket_group"},
                    "api");
    if (auto v = r.String(*api, "unix_socket", "api.unix_socket", false)) {
      if (v->empty())
        r.Problem("api.unix_socket", "expected a socket path, found \"\"");
      else
        config.api.unix_socket = Resolve(base, *v);
    }
    if (auto v = r.String(*api, "unix_socket_mode", "api.unix_socket_mode", false)) {
      // Octal permission bits for owner and group only: a local API socket open to others would
      // let any user on the box infer, which is what the socket is there to prevent.
      unsigned mode = 0;
      const bool octal =
          !v->empty() && v->size() <= 4 && v->find_first_not_of("01234567") == std::string::npos;
      if (octal) mode = static_cast<unsigned>(std::stoul(*v, nullptr, 8));
      if (!octal || (mode & 07007) != 0) {
        r.Problem("api.unix_socket_mode",
                  "expected octal permissions for owner and group such as \"0660\", found " +
                      manifests::LogValue(*v));
      } else {
        config.api.unix_socket_mode = mode;
      }
    }
    if (auto v = r.String(*api, "unix_socket_group", "api.unix_socket_group", false)) {
      config.api.unix_socket_group = *v;
    }
    if (auto v = r.Bool(*api, "shared_memory", "api.shared_memory", false)) {
      config.api.shared_memory = *v;
    }
    if (auto v = r.String(*api, "host", "api.host", false)) {
      if (v->empty())
        r.Problem("api.host", "expected a host address, found \"\"");
      else
        config.api.host = *v;
    }
    std::int64_t port = config.api.port;
    ReadInt(r, *api, "port", "api", 0, 65535, port);
    config.api.port = static_cast<int>(port);
    // At least a thumbnail's worth; at most 1 GiB, far beyond what an edge box should decode.
    ReadInt(r, *api, "max_image_bytes", "api", 4096, std::int64_t{1} << 30,
            config.api.max_image_bytes);
  }

  if (const json* ds = r.Object(doc, "desired_state", "desired_state", false)) {
    r.RejectUnknown(*ds, {"file", "url", "poll_ms"}, "desired_state");
    std::string file;
    if (auto v = r.String(*ds, "file", "desired_state.file", false)) file = *v;
    if (auto v = r.String(*ds, "url", "desired_state.url", false)) config.desired_state.url = *v;
    config.desired_state.file = Resolve(base, file);
    ReadInt(r, *ds, "poll_ms", "desired_state", 10, 24ll * 3600 * 1000,
            config.desired_state.poll_ms);
    if (!file.empty() && !config.desired_state.url.empty()) {
      r.Problem("desired_state", "expected at most one of \"file\" and \"url\", found both");
    }
    const std::string& url = config.desired_state.url;
    if (!url.empty() && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0 &&
        url.rfind("file://", 0) != 0) {
      r.Problem("desired_state.url", "expected an http://, https:// or file:// URL, found " +
                                         manifests::QuoteForMessage(url));
    }
  }

  if (const json* dl = r.Object(doc, "download", "download", false)) {
    r.RejectUnknown(*dl,
                    {"connect_timeout_s", "low_speed_bytes_per_s", "low_speed_time_s",
                     "max_bytes_per_s", "reserve_bytes", "max_attempts", "backoff_initial_ms",
                     "backoff_max_ms", "ca_file", "client_cert", "client_key"},
                    "download");
    auto& d = config.download;
    constexpr std::int64_t kBig = std::int64_t{1} << 50;
    ReadInt(r, *dl, "connect_timeout_s", "download", 1, 3600, d.connect_timeout_s);
    ReadInt(r, *dl, "low_speed_bytes_per_s", "download", 0, kBig, d.low_speed_bytes_per_s);
    ReadInt(r, *dl, "low_speed_time_s", "download", 1, 86400, d.low_speed_time_s);
    ReadInt(r, *dl, "max_bytes_per_s", "download", 0, kBig, d.max_bytes_per_s);
    ReadInt(r, *dl, "reserve_bytes", "download", 0, kBig, d.reserve_bytes);
    ReadInt(r, *dl, "max_attempts", "download", 1, 1000, d.max_attempts);
    ReadInt(r, *dl, "backoff_initial_ms", "download", 0, 3600000, d.backoff_initial_ms);
    ReadInt(r, *dl, "backoff_max_ms", "download", 0, 3600000, d.backoff_max_ms);
    ReadPath(r, *dl, "ca_file", "download", base, d.ca_file, false);
    ReadPath(r, *dl, "client_cert", "download", base, d.client_cert, false);
    ReadPath(r, *dl, "client_key", "download", base, d.client_key, false);
  }

  if (const json* rt = r.Object(doc, "runtime", "runtime", false)) {
    r.RejectUnknown(*rt, {"threads", "parallel_runs"}, "runtime");
    std::int64_t threads = config.runtime.threads;
    std::int64_t parallel = config.runtime.parallel_runs;
    ReadInt(r, *rt, "threads", "runtime", 1, 256, threads);
    ReadInt(r, *rt, "parallel_runs", "runtime", 1, 256, parallel);
    config.runtime.threads = static_cast<int>(threads);
    config.runtime.parallel_runs = static_cast<int>(parallel);
  }

  if (const json* w = r.Object(doc, "watch", "watch", false)) {
    r.RejectUnknown(*w, {"max_extension_factor", "min_p95_increase_ms"}, "watch");
    ReadNumber(r, *w, "min_p95_increase_ms", "watch", 0, 60000, config.watch.min_p95_increase_ms);
    ReadNumber(r, *w, "max_extension_factor", "watch", 1, 1000, config.watch.max_extension_factor);
  }

  if (const json* mq = r.Object(doc, "mqtt", "mqtt", false)) {
    r.RejectUnknown(*mq,
                    {"host", "port", "client_id", "username", "password_file", "keepalive_s",
                     "ca_file", "cert_file", "key_file", "reconnect_min_ms", "reconnect_max_ms"},
                    "mqtt");
    auto& m = config.mqtt;
    if (auto v = r.String(*mq, "host", "mqtt.host", false)) m.host = *v;
    std::int64_t port = m.port;
    ReadInt(r, *mq, "port", "mqtt", 1, 65535, port);
    m.port = static_cast<int>(port);
    if (auto v = r.String(*mq, "client_id", "mqtt.client_id", false)) {
      if (v->size() > 128 || v->find_first_of("+#/") != std::string::npos)
        r.Problem("mqtt.client_id", "expected at most 128 characters without + # /, found " +
                                        manifests::QuoteForMessage(*v));
      else
        m.client_id = *v;
    }
    if (auto v = r.String(*mq, "username", "mqtt.username", false)) m.username = *v;
    ReadPath(r, *mq, "password_file", "mqtt", base, m.password_file, false);
    ReadInt(r, *mq, "keepalive_s", "mqtt", 5, 3600, m.keepalive_s);
    ReadPath(r, *mq, "ca_file", "mqtt", base, m.ca_file, false);
    ReadPath(r, *mq, "cert_file", "mqtt", base, m.cert_file, false);
    ReadPath(r, *mq, "key_file", "mqtt", base, m.key_file, false);
    ReadInt(r, *mq, "reconnect_min_ms", "mqtt", 10, 3600000, m.reconnect_min_ms);
    ReadInt(r, *mq, "reconnect_max_ms", "mqtt", 10, 3600000, m.reconnect_max_ms);
    if (m.cert_file.empty() != m.key_file.empty())
      r.Problem("mqtt", "expected both cert_file and key_file or neither, found one");
    if (!m.cert_file.empty() && m.ca_file.empty())
      r.Problem("mqtt.ca_file", "expected a CA file when a client certificate is set, found none");
    if (m.reconnect_max_ms < m.reconnect_min_ms)
      r.Problem("mqtt.reconnect_max_ms", "expected >= reconnect_min_ms (" +
                                             std::to_string(m.reconnect_min_ms) + "), found " +
                                             std::to_string(m.reconnect_max_ms));
    if (m.host.empty() && mq->size() > 0)
      r.Problem("mqtt.host", "expected a broker host when the mqtt section is given, found none");
  }

  if (const json* t = r.Object(doc, "telemetry", "telemetry", false)) {
    r.RejectUnknown(*t, {"window_s", "outbox_max_messages", "outbox_max_age_s"}, "telemetry");
    auto& tc = config.telemetry;
    if (auto v = r.Number(*t, "window_s", "telemetry.window_s", false)) {
      if (!(*v >= 0.1 && *v <= 3600))
        r.Problem("telemetry.window_s",
                  "expected a number in [0.1, 3600], found " + std::to_string(*v));
      else
        tc.window_s = *v;
    }
    ReadInt(r, *t, "outbox_max_messages", "telemetry", 1, 100000000, tc.outbox_max_messages);
    ReadInt(r, *t, "outbox_max_age_s", "telemetry", 1, 365ll * 24 * 3600, tc.outbox_max_age_s);
  }

  EF_RETURN_IF_ERROR(r.ToStatus());
  return config;
}

Result<AgentConfig> LoadConfig(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, path.string() + ": cannot open the config file");
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Fail(ErrorCode::kIo, path.string() + ": read failed");
  text.resize(static_cast<std::size_t>(in.gcount()));
  std::filesystem::path absolute = std::filesystem::absolute(path).lexically_normal();
  return ParseConfig(text, absolute);
}

std::string BackendOptionsFor(const AgentConfig& config, std::string_view backend) {
  const json options =
      json::parse(config.backend_options_json, nullptr, /*allow_exceptions=*/false);
  if (!options.is_object()) return "{}";
  const auto found = options.find(std::string(backend));
  return found != options.end() && found->is_object() ? found->dump() : "{}";
}

}  // namespace edgefleet::agent
