// collect, devices.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "deploy/collector/collector.hpp"
#include "deploy/collector/collector_http.hpp"
#include "deploy/collector/collector_store.hpp"
#include "deploy/collector/pg_db.hpp"
#include "deploy/commands.hpp"
#include "deploy/common/files.hpp"
#include "deploy/common/stop_signals.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::deploy {
namespace {

using manifests::LogValue;
using nlohmann::json;

// ---- devices ----

// "0.12ms", "11.9ms", "250ms", "2.5s"; "-" without samples.
std::string FormatMs(std::uint64_t count, double ms) {
  if (count == 0) return "-";
  std::ostringstream s;
  if (ms >= 1000) {
    s << std::fixed << std::setprecision(1) << ms / 1000 << "s";
  } else if (ms >= 100) {
    s << std::fixed << std::setprecision(0) << ms << "ms";
  } else if (ms >= 1) {
    s << std::fixed << std::setprecision(1) << ms << "ms";
  } else {
    s << std::fixed << std::setprecision(2) << ms << "ms";
  }
  return s.str();
}

std::string FormatAgo(std::optional<std::int64_t> then_ms, std::int64_t now_ms) {
  if (!then_ms) return "never";
  const std::int64_t s = std::max<std::int64_t>(0, (now_ms - *then_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 120 * 60) return std::to_string(s / 60) + "m ago";
  if (s < 48 * 3600) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

// A table cell shows names from topics and payloads; control bytes become '?' so a hostile
// device name cannot move the terminal's cursor.
std::string Printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) c = '?';
  }
  return out;
}

// One row of `edgefleet devices`: a device and one of its models (or none).
struct DeviceRow {
  const DeviceRecord* device = nullptr;
  std::string model, version, slot;
  const SeriesStats* stats = nullptr;  // the recent windows of device+model+version, if any
};

std::vector<DeviceRow> BuildRows(const std::vector<DeviceRecord>& devices,
                                 const std::vector<SeriesStats>& recent) {
  std::map<std::tuple<std::string, std::string, std::string>, const SeriesStats*> by_series;
  // Per device and model, the version whose windows are newest (for models no status names).
  std::map<std::pair<std::string, std::string>, const SeriesStats*> newest;
  for (const SeriesStats& s : recent) {
    by_series[{s.device, s.model, s.version}] = &s;
    const SeriesStats*& n = newest[{s.device, s.model}];
    if (n == nullptr || s.last_ts > n->last_ts) n = &s;
  }
  std::vector<DeviceRow> rows;
  for (const DeviceRecord& d : devices) {
    std::set<std::string> named;
    for (const telemetry::ModelStatus& m : d.Models()) {
      named.insert(m.name);
      DeviceRow row{&d, m.name, "-", "-", nullptr};
      if (m.active) {
        row.version = m.active->version;
        row.slot = m.active->slot;
        auto it = by_series.find({d.device, m.name, m.active->version});
        if (it != by_series.end()) row.stats = it->second;
      }
      rows.push_back(row);
    }
    for (const auto& [key, s] : newest) {
      if (key.first != d.device || named.count(key.second)) continue;
      rows.push_back({&d, s->model, s->version, s->last_slot, s});
    }
    if (rows.empty() || rows.back().device != &d) rows.push_back({&d, "-", "-", "-", nullptr});
  }
  return rows;
}

json RowJson(const DeviceRow& r, std::chrono::seconds window) {
  auto text_or_null = [](const std::string& s) { return s == "-" ? json(nullptr) : json(s); };
  json row = {
      {"device", r.device->device},
      {"fleet", r.device->fleet},
      {"online", r.device->online},
      {"model", text_or_null(r.model)},
      {"version", text_or_null(r.version)},
      {"slot", text_or_null(r.slot)},
      {"window_s", window.count()},
      {"last_seen_ms", r.device->last_seen_ms ? json(*r.device->last_seen_ms) : json(nullptr)}};
  const SeriesStats* s = r.stats;
  row["windows"] = s ? s->windows : 0;
  row["requests"] = s ? s->requests : 0;
  row["errors"] = s ? s->errors : 0;
  const bool timed = s && s->latency.count > 0;
  row["p50_ms"] = timed ? json(s->latency.p50) : json(nullptr);
  row["p99_ms"] = timed ? json(s->latency.p99) : json(nullptr);
  row["labeled"] = s ? s->labeled : 0;
  row["correct"] = s ? s->correct : 0;
  row["accuracy"] = s && s->labeled > 0
                        ? json(static_cast<double>(s->correct) / static_cast<double>(s->labeled))
                        : json(nullptr);
  return row;
}

}  // namespace

Status Collect(const CollectOptions& options) {
  EF_ASSIGN_OR_RETURN(const HostPort broker, ParseHostPort("--broker", options.broker, 1));
  EF_ASSIGN_OR_RETURN(const HostPort http, ParseHostPort("--http", options.http, 0));
  if (!options.password.empty() && options.username.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "--password: given without --username");
  }
  if (options.client_id.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "--client-id: must not be empty");
  }

  if (options.spool.empty() && IsPostgresUrl(options.db.string())) {
    return Fail(ErrorCode::kInvalidArgument,
                "--spool: required with a PostgreSQL --db (a local path for the files that keep "
                "what was received until it is stored)");
  }

  const StopSignals stop;  // before any thread starts
  UseKeyValueLog("edgefleet-collect");

  EF_ASSIGN_OR_RETURN(CollectorStore store, CollectorStore::Open(options.db));
  EF_ASSIGN_OR_RETURN(FleetView view, FleetView::Open(options.db));

  CollectorOptions collector_options;
  collector_options.fleet = options.fleet;
  collector_options.share = options.share;
  if (options.batch_wait_ms) collector_options.batch_wait_ms = *options.batch_wait_ms;
  // What was received and not yet stored survives a SIGKILL; beside a SQLite file by default.
  collector_options.spool =
      options.spool.empty() ? std::filesystem::path(options.db.string() + ".spool") : options.spool;
  telemetry::MqttOptions& mqtt = collector_options.mqtt;
  mqtt.host = broker.host;
  mqtt.port = broker.port;
  mqtt.client_id = options.client_id;
  // A persistent session: the broker queues what devices publish while the collector
  // reconnects (after a broker restart, devices often flush their outboxes first).
  mqtt.clean_session = false;
  // Acknowledged only once the spool holds it (CollectorOptions::spool): a SIGKILL loses
  // nothing the broker thinks delivered.
  mqtt.ack_after_handler = true;
  mqtt.username = options.username;
  mqtt.password = options.password;
  mqtt.ca_file = options.ca_file;
  mqtt.cert_file = options.cert_file;
  mqtt.key_file = options.key_file;
  EF_ASSIGN_OR_RETURN(std::unique_ptr<Collector> collector,
                      Collector::Start(std::move(collector_options), std::move(store)));
  Collector* counters_source = collector.get();
  EF_ASSIGN_OR_RETURN(std::unique_ptr<CollectorHttp> server,
                      CollectorHttp::Start(http.host, http.port, view, [counters_source] {
                        return counters_source->Counters();
                      }));
  spdlog::info("event=collector_started http_port={} broker={} fleet={} db={} share={} tls={}",
               server->port(), LogValue(options.broker), LogValue(options.fleet),
               LogValue(RedactUrl(options.db.string())), LogValue(options.share),
               options.ca_file.empty() ? "off" : "on");
  // The port file comes last: whoever waits for it finds the collector serving and its start
  // logged.
  if (options.port_file) {
    EF_RETURN_IF_ERROR(
        WriteFileAtomically(*options.port_file, std::to_string(server->port()) + "\n"));
  }

  // Every 10 s: a warning when the devices' sequences show more messages missing than before
  // (lost between their outboxes and the database; see 0003_sequences.sql).
  std::uint64_t missing_logged = 0;
  auto missing_now = [&]() -> std::optional<FleetView::MissingTotals> {
    Result<FleetView::MissingTotals> m = view.Missing();
    return m ? std::optional(*m) : std::nullopt;
  };
  int signo = 0;
  for (int tick = 1; signo == 0; ++tick) {
    signo = stop.Wait(std::chrono::seconds(1));
    if (signo != 0 || tick % 10 != 0) continue;
    if (auto m = missing_now(); m && m->missing > missing_logged) {
      spdlog::warn("event=messages_missing missing={} new={} devices={}", m->missing,
                   m->missing - missing_logged, m->devices);
      missing_logged = m->missing;
    }
  }
  spdlog::info("event=stopping signal={}", StopSignals::Name(signo));
  server->Stop();
  collector->Stop();
  const CollectorCounters c = collector->Counters();
  const auto missing = missing_now();
  spdlog::info(
      "event=collector_stopped stored_status={} stored_telemetry={} stored_events={} "
      "stored_rollouts={} duplicates={} stale={} rejected={} lost={} missing={}",
      c.status, c.telemetry, c.events, c.rollouts, c.duplicates, c.stale, c.rejected, c.lost,
      missing ? std::to_string(missing->missing) : std::string("unknown"));
  return Ok();
}

Status Devices(const DevicesOptions& options, std::ostream& out) {
  Result<std::chrono::seconds> window = ParseDuration(options.window);
  if (!window) return Fail(ErrorCode::kInvalidArgument, "--window: " + window.error().message);
  EF_ASSIGN_OR_RETURN(FleetView view, FleetView::Open(options.db));
  EF_ASSIGN_OR_RETURN(std::vector<DeviceRecord> devices, view.Devices());
  EF_ASSIGN_OR_RETURN(std::vector<SeriesStats> recent, view.Recent(*window));
  const std::vector<DeviceRow> rows = BuildRows(devices, recent);

  if (options.json) {
    json list = json::array();
    for (const DeviceRow& r : rows) list.push_back(RowJson(r, *window));
    out << list.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return Ok();
  }
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  std::vector<std::vector<std::string>> table = {
      {"DEVICE", "ONLINE", "MODEL", "VERSION", "SLOT", "P50", "P99", "ACCURACY", "LAST SEEN"}};
  for (const DeviceRow& r : rows) {
    const SeriesStats* s = r.stats;
    std::string accuracy = "-";
    if (s && s->labeled > 0) {
      std::ostringstream a;
      a << std::fixed << std::setprecision(1)
        << 100.0 * static_cast<double>(s->correct) / static_cast<double>(s->labeled) << "%";
      accuracy = a.str();
    }
    table.push_back({Printable(r.device->device), r.device->online ? "yes" : "no",
                     Printable(r.model), Printable(r.version), Printable(r.slot),
                     s ? FormatMs(s->latency.count, s->latency.p50) : "-",
                     s ? FormatMs(s->latency.count, s->latency.p99) : "-", accuracy,
                     FormatAgo(r.device->last_seen_ms, now_ms)});
  }
  std::vector<std::size_t> widths(table.front().size(), 0);
  for (const auto& row : table) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : table) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
  if (rows.empty()) out << "(no devices yet)\n";
  return Ok();
}

}  // namespace edgefleet::deploy
