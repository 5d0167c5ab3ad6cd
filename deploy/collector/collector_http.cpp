#include "deploy/collector/collector_http.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "deploy/collector/collector_metrics.hpp"
#include "deploy/common/files.hpp"
#include "http/server.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::deploy {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxLimit = 100000;
constexpr std::size_t kMaxRolloutLimit = 1000;
constexpr std::int64_t kMaxBucketS = 86400;

// deploy/collector/dashboard/*, embedded by deploy/collector/dashboard/embed.cmake.
struct DashboardAsset {
  std::string_view name;
  std::string_view bytes;
};
constexpr DashboardAsset kDashboardAssets[] = {
#include "deploy/collector/dashboard_assets.inc"
};

constexpr const DashboardAsset* FindAsset(std::string_view name) {
  for (const DashboardAsset& a : kDashboardAssets) {
    if (a.name == name) return &a;
  }
  return nullptr;
}
static_assert(FindAsset("index.html") != nullptr,
              "deploy/collector/dashboard/index.html is not embedded");

std::string_view ContentType(std::string_view name) {
  const auto ends = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

json LatencyJson(const telemetry::LatencySnapshot& s) {
  return {{"count", s.count}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max_ms}};
}

json OptionalInt(const std::optional<std::int64_t>& value) {
  return value ? json(*value) : json(nullptr);
}

// A stored message (checked when it arrived) with the collector's facts added.
json MessageJson(const StoredMessage& m) {
  json doc = json::parse(m.json, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) doc = json::object();
  doc["fleet"] = m.fleet;
  doc["received_ms"] = m.received_ms;
  return doc;
}

// A query string checked against the parameters an endpoint takes.
class Query final {
 public:
  static Result<Query> From(const http::Request& req, std::set<std::string> allowed) {
    Query q;
    for (const auto& [key, value] : http::ParseQuery(req.query)) {
      if (allowed.count(key) == 0) {
        std::string names;
        for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
        return Fail(ErrorCode::kInvalidArgument,
                    "unknown query parameter " + manifests::QuoteName(key) +
                        " (this endpoint takes: " + (names.empty() ? "none" : names) + ")");
      }
      if (!q.values_.emplace(key, value).second) {
        return Fail(ErrorCode::kInvalidArgument,
                    "query parameter " + manifests::QuoteName(key) + " given twice");
      }
    }
    return q;
  }
  std::optional<std::string> Text(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  Result<std::optional<std::int64_t>> Int(const std::string& key, std::int64_t min,
                                          std::int64_t max) const {
    auto text = Text(key);
    if (!text) return std::optional<std::int64_t>();
    std::int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || ptr != text->data() + text->size() || value < min || value > max) {
      return Fail(ErrorCode::kInvalidArgument,
                  key + ": expected an integer " + std::to_string(min) + ".." +
                      std::to_string(max) + ", found " + manifests::QuoteName(*text));
    }
    return std::optional<std::int64_t>(value);
  }
  Result<std::size_t> Limit(std::size_t max = kMaxLimit, std::size_t fallback = 100) const {
    EF_ASSIGN_OR_RETURN(auto limit, Int("limit", 1, static_cast<std::int64_t>(max)));
    return static_cast<std::size_t>(limit.value_or(static_cast<std::int64_t>(fallback)));
  }

 private:
  std::map<std::string, std::string> values_;
};

Result<json> ApiDevices(const FleetView& view, const Query& q) {
  DeviceQuery query;
  if (const std::optional<std::string> online = q.Text("online")) {
    if (*online != "true" && *online != "false") {
      return Fail(ErrorCode::kInvalidArgument,
                  "online: expected true or false, found " + manifests::QuoteName(*online));
    }
    query.online = *online == "true";
  }
  query.group = q.Text("group");
  query.model = q.Text("model");
  query.version = q.Text("version");
  query.after = q.Text("after");
  if (q.Text("limit")) {
    EF_ASSIGN_OR_RETURN(query.limit, q.Limit());
  }
  EF_ASSIGN_OR_RETURN(DevicePage page, view.Devices(query));
  const std::vector<DeviceRecord>& devices = page.devices;
  json list = json::array();
  for (const DeviceRecord& d : devices) {
    json status = d.status_json.empty()
                      ? json(nullptr)
                      : json::parse(d.status_json, nullptr, /*allow_exceptions=*/false);
    list.push_back({{"device", d.device},
                    {"fleet", d.fleet},
                    {"online", d.online},
                    {"last_seen_ms", OptionalInt(d.last_seen_ms)},
                    {"offline_since_ms", OptionalInt(d.offline_since_ms)},
                    {"status_ts", OptionalInt(d.status_ts)},
                    {"agent_version", d.agent_version},
                    {"connection", d.connection},
                    {"numbered", d.numbered},
                    {"missing", d.missing},
                    {"status", status.is_discarded() ? json(nullptr) : status}});
  }
  return json{{"devices", std::move(list)},
              {"matching", page.matching},
              {"next", page.next ? json(*page.next) : json(nullptr)}};
}

Result<json> ApiTelemetry(const FleetView& view, const Query& q) {
  WindowQuery query;
  query.device = q.Text("device");
  query.model = q.Text("model");
  EF_ASSIGN_OR_RETURN(query.since_ms, q.Int("since_ms", std::numeric_limits<std::int64_t>::min(),
                                            std::numeric_limits<std::int64_t>::max()));
  EF_ASSIGN_OR_RETURN(query.limit, q.Limit());
  EF_ASSIGN_OR_RETURN(std::vector<StoredMessage> windows, view.Windows(query));
  json list = json::array();
  for (const StoredMessage& m : windows) list.push_back(MessageJson(m));
  return json{{"windows", std::move(list)}};
}

Result<json> ApiEvents(const FleetView& view, const Query& q) {
  EventQuery query;
  query.device = q.Text("device");
  EF_ASSIGN_OR_RETURN(query.limit, q.Limit());
  EF_ASSIGN_OR_RETURN(std::vector<StoredMessage> events, view.Events(query));
  json list = json::array();
  for (const StoredMessage& m : events) list.push_back(MessageJson(m));
  return json{{"events", std::move(list)}};
}

Result<json> ApiRollouts(const FleetView& view, const Query& q) {
  EF_ASSIGN_OR_RETURN(const std::size_t limit, q.Limit(kMaxRolloutLimit, 50));
  EF_ASSIGN_OR_RETURN(std::vector<StoredMessage> rollouts, view.Rollouts(limit));
  json list = json::array();
  for (const StoredMessage& m : rollouts) list.push_back(MessageJson(m));
  return json{{"rollouts", std::move(list)}};
}

json FractionOrNull(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? json(nullptr) : json(static_cast<double>(part) / static_cast<double>(whole));
}

Result<json> ApiSeries(const FleetView& view, const Query& q) {
  SeriesQuery query;
  query.model = q.Text("model");
  EF_ASSIGN_OR_RETURN(query.since_ms, q.Int("since_ms", std::numeric_limits<std::int64_t>::min(),
                                            std::numeric_limits<std::int64_t>::max()));
  EF_ASSIGN_OR_RETURN(const auto bucket_s, q.Int("bucket_s", 1, kMaxBucketS));
  query.bucket_ms = bucket_s.value_or(10) * 1000;
  EF_ASSIGN_OR_RETURN(SeriesBuckets buckets, view.Series(query));
  json series = json::array();
  for (const SeriesStats& b : buckets.buckets) {
    if (series.empty() || series.back()["model"] != b.model ||
        series.back()["version"] != b.version) {
      series.push_back({{"model", b.model}, {"version", b.version}, {"points", json::array()}});
    }
    const bool timed = b.latency.count > 0;
    series.back()["points"].push_back(
        {{"t", b.last_ts},
         {"count", b.requests},
         {"errors", b.errors},
         {"p50", timed ? json(b.latency.p50) : json(nullptr)},
         {"p95", timed ? json(b.latency.p95) : json(nullptr)},
         {"p99", timed ? json(b.latency.p99) : json(nullptr)},
         {"labeled", b.labeled},
         {"correct", b.correct},
         {"accuracy", FractionOrNull(b.correct, b.labeled)},
         {"golden_accuracy", b.golden_accuracy ? json(*b.golden_accuracy) : json(nullptr)}});
  }
  return json{{"since_ms", buckets.since_ms},
              {"bucket_s", query.bucket_ms / 1000},
              {"series", std::move(series)}};
}

json CountersJson(const CollectorCounters& c) {
  return {{"messages",
           {{"status", c.status},
            {"telemetry", c.telemetry},
            {"events", c.events},
            {"rollouts", c.rollouts}}},
          {"duplicates", c.duplicates},
          {"stale", c.stale},
          {"rejected", c.rejected},
          {"batches", c.batches},
          {"queued", c.queued},
          {"lag_ms", c.lag_ms},
          {"behind", c.behind},
          {"broker_dropped", c.broker_dropped < 0 ? json(nullptr) : json(c.broker_dropped)},
          {"connected", c.connected}};
}

Result<json> ApiSummary(const FleetView& view, const Query& q, const CollectorCounters& counters) {
  const std::optional<std::string> window = q.Text("window");
  std::optional<std::chrono::milliseconds> span;
  if (window) {
    Result<std::chrono::seconds> parsed = ParseDuration(*window);
    if (!parsed) return Fail(ErrorCode::kInvalidArgument, "window: " + parsed.error().message);
    span = *parsed;
  }
  EF_ASSIGN_OR_RETURN(const FleetSummary summary, view.Summary(span));
  EF_ASSIGN_OR_RETURN(const FleetView::MissingTotals missing, view.Missing());
  json models = json::array();
  for (const VersionSummary& v : summary.versions) {
    const SeriesStats& m = v.sum;
    models.push_back({{"model", v.model},
                      {"version", v.version},
                      {"devices", v.devices},
                      {"active_on", v.active_on},
                      {"requests", m.requests},
                      {"errors", m.errors},
                      {"latency_ms", LatencyJson(m.latency)},
                      {"labeled", m.labeled},
                      {"correct", m.correct},
                      {"accuracy", FractionOrNull(m.correct, m.labeled)}});
  }
  const std::uint64_t numbered = summary.numbered;
  const std::uint64_t online = summary.online;
  const std::uint64_t total = summary.devices;
  return json{{"window", window.value_or("all")},
              {"devices", {{"total", total}, {"online", online}, {"offline", total - online}}},
              {"models", std::move(models)},
              // Over all time (not the window): numbered windows and events stored, and the numbers
              // never stored (lost between the devices' outboxes and the database).
              {"messages",
               {{"numbered", numbered},
                {"missing", missing.missing},
                {"devices_missing", missing.devices}}},
              {"collector", CountersJson(counters)}};
}

}  // namespace

struct CollectorHttp::Impl {
  const FleetView* view = nullptr;
  std::function<CollectorCounters()> counters;
  std::unique_ptr<http::Server> server;
};

CollectorHttp::CollectorHttp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CollectorHttp::~CollectorHttp() { Stop(); }
int CollectorHttp::port() const { return impl_->server->port(); }

void CollectorHttp::Stop() {
  if (impl_->server) impl_->server->Stop();
}

namespace {

constexpr std::string_view kEndpoints =
    "GET /, /assets/<file>, /metrics, /api/devices, /api/telemetry, /api/events, /api/summary, "
    "/api/series, /api/rollouts";

void Reply(http::Response& res, int status, const json& body) {
  res.status = status;
  res.SetHeader("X-Content-Type-Options", "nosniff");
  res.body = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  res.content_type = "application/json";
}

void NoSuchEndpoint(const http::Request& req, http::Response& res) {
  Reply(
      res, 404,
      {{"error", "no such endpoint " + manifests::QuoteName(http::PercentDecode(req.path, false)) +
                     " (" + std::string(kEndpoints) + ")"}});
}

}  // namespace

Result<std::unique_ptr<CollectorHttp>> CollectorHttp::Start(
    const std::string& host, int port, const FleetView& view,
    std::function<CollectorCounters()> counters) {
  auto impl = std::make_unique<Impl>();
  impl->view = &view;
  impl->counters = std::move(counters);
  Impl* self = impl.get();

  using Req = const http::Request&;
  using Res = http::Response&;
  // One JSON endpoint: parameters checked, database errors as 500. Database reads run in the
  // layer's worker pool, so a slow query never holds the I/O thread.
  http::Router router;
  auto api = [&router, self](const std::string& path, std::set<std::string> params, auto handler) {
    router.Get(
        path, http::Lane::kPool, [self, params = std::move(params), handler](Req req, Res res) {
          Result<Query> query = Query::From(req, params);
          if (!query) return Reply(res, 400, {{"error", query.error().message}});
          Result<json> body = handler(*self, *query);
          if (!body) {
            const bool bad_request = body.error().code == ErrorCode::kInvalidArgument;
            if (!bad_request) {
              spdlog::error("event=http_error path={} error={}", manifests::LogValue(req.path),
                            manifests::LogValue(body.error().message));
            }
            return Reply(res, bad_request ? 400 : 500, {{"error", body.error().message}});
          }
          Reply(res, 200, *body);
        });
  };
  api("/api/devices", {"online", "group", "model", "version", "after", "limit"},
      [](Impl& s, const Query& q) { return ApiDevices(*s.view, q); });
  api("/api/telemetry", {"device", "model", "since_ms", "limit"},
      [](Impl& s, const Query& q) { return ApiTelemetry(*s.view, q); });
  api("/api/events", {"device", "limit"},
      [](Impl& s, const Query& q) { return ApiEvents(*s.view, q); });
  api("/api/summary", {"window"},
      [](Impl& s, const Query& q) { return ApiSummary(*s.view, q, s.counters()); });
  api("/api/rollouts", {"limit"}, [](Impl& s, const Query& q) { return ApiRollouts(*s.view, q); });
  api("/api/series", {"model", "since_ms", "bucket_s"},
      [](Impl& s, const Query& q) { return ApiSeries(*s.view, q); });
  // The dashboard: static files built into the binary; its script reads /api/* only.
  auto asset = [](Res res, const DashboardAsset& a) {
    res.SetHeader("Content-Security-Policy", "default-src 'self'");
    res.SetHeader("X-Content-Type-Options", "nosniff");
    res.SetHeader("Referrer-Policy", "no-referrer");
    res.SetHeader("Cache-Control", "no-cache");
    res.body = std::string(a.bytes);
    res.content_type = std::string(ContentType(a.name));
  };
  router.Get("/|/dashboard", http::Lane::kInline,
             [asset](Req, Res res) { asset(res, *FindAsset("index.html")); });
  router.Get(R"(/assets/([A-Za-z0-9._-]+))", http::Lane::kInline, [asset](Req req, Res res) {
    const DashboardAsset* a = FindAsset(req.matches[1]);
    if (a == nullptr) return NoSuchEndpoint(req, res);
    asset(res, *a);
  });
  router.Get("/metrics", http::Lane::kPool, [self](Req req, Res res) {
    MetricsOptions options;
    Result<Query> query = Query::From(req, {"per_device"});
    Result<std::optional<std::int64_t>> per_device =
        query ? query->Int("per_device", 0, 1) : Result<std::optional<std::int64_t>>(query.error());
    if (!per_device) {
      res.status = 400;
      res.body = per_device.error().message + "\n";
      res.content_type = "text/plain";
      return;
    }
    options.per_device = per_device->value_or(0) == 1;
    Result<std::string> text = RenderMetrics(*self->view, self->counters(), options);
    if (!text) {
      spdlog::error("event=http_error path={} error={}", manifests::LogValue(req.path),
                    manifests::LogValue(text.error().message));
      res.status = 500;
      res.body = text.error().message + "\n";
      res.content_type = "text/plain";
      return;
    }
    res.body = std::move(*text);
    res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  });
  router.Get(".*", http::Lane::kInline, NoSuchEndpoint);

  http::ServerOptions options;
  options.host = host;
  options.port = port;
  options.workers = 4;
  options.queue_limit = 64;
  options.on_layer_error = [](Req req, Res res) {
    if (res.status == 404) NoSuchEndpoint(req, res);  // a method other than GET and HEAD
  };
  options.on_exception = [](Req req, std::string_view what) {
    spdlog::error("event=http_error path={} error={}", manifests::LogValue(req.path),
                  manifests::LogValue(what));
  };
  Result<std::unique_ptr<http::Server>> server =
      http::Server::Start(std::move(router), std::move(options));
  if (!server) {
    return Fail(ErrorCode::kIo, "--http: cannot listen on " + host + ":" + std::to_string(port) +
                                    " (" + server.error().message + ")");
  }
  impl->server = std::move(*server);
  return std::unique_ptr<CollectorHttp>(new CollectorHttp(std::move(impl)));
}

}  // namespace edgefleet::deploy
