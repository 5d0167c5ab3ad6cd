#include "agent/config.hpp"

#include <fstream>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "manifests/json_fields.hpp"

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

}  // namespace

Result<AgentConfig> ParseConfig(std::string_view text, const std::filesystem::path& path) {
  const std::string source = path.string();
  EF_ASSIGN_OR_RETURN(json doc, manifests::ParseJsonText(text, source, kMaxConfigBytes));
  FieldReader r(source);
  AgentConfig config;
  config.path = path;
  if (!doc.is_object()) {
    r.Problem("", std::string("expected an object, found ") +
                      std::string(manifests::JsonTypeName(doc)));
    EF_RETURN_IF_ERROR(r.ToStatus());
  }
  const std::filesystem::path base =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  r.RejectUnknown(doc,
                  {"device", "fleet", "groups", "state_dir", "trust_root", "backends", "api",
                   "desired_state", "download", "runtime", "watch"},
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
      if (name != "opencv") {
        r.Problem(p, "expected a backend this build has (\"opencv\"), found " +
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

  if (const json* api = r.Object(doc, "api", "api", /*required=*/false)) {
    r.RejectUnknown(*api, {"host", "port"}, "api");
    if (auto v = r.String(*api, "host", "api.host", false)) {
      if (v->empty())
        r.Problem("api.host", "expected a host address, found \"\"");
      else
        config.api.host = *v;
    }
    std::int64_t port = config.api.port;
    ReadInt(r, *api, "port", "api", 0, 65535, port);
    config.api.port = static_cast<int>(port);
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
      r.Problem("desired_state.url",
                "expected an http://, https:// or file:// URL, found " +
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
    r.RejectUnknown(*w, {"max_extension_factor"}, "watch");
    if (auto v = r.Number(*w, "max_extension_factor", "watch.max_extension_factor", false)) {
      if (*v < 1 || *v > 1000)
        r.Problem("watch.max_extension_factor",
                  "expected a number in [1, 1000], found " + std::to_string(*v));
      else
        config.watch.max_extension_factor = *v;
    }
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

}  // namespace edgefleet::agent
