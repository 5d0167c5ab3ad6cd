// The collector's HTTP side, on the HTTP layer (http/server.hpp): Prometheus metrics and a JSON
// API over the collector database, for Prometheus, Grafana and the dashboard page. Every endpoint
// is a GET (HEAD too); every JSON answer is an object; errors are {"error": "<what is wrong>"}
// with 400 (bad query parameter, unknown parameter), 404 (unknown path or method) or 500 (the
// database failed). Times named *_ms are Unix milliseconds: ts/start_ts/status_ts from the
// device's clock, received_ms/last_seen_ms/offline_since_ms from the collector's. There is no
// authentication: listen on loopback (as the README's example does) or behind a reverse proxy that
// adds it.
//
// GET /metrics[?per_device=1]  Prometheus text format 0.0.4 (collector_metrics.hpp):
//   by default aggregated per group, model and version:
//   edgefleet_fleet_devices{group,state="online|offline"}   gauge, devices
//   edgefleet_fleet_messages_missing                          gauge, numbers never stored
//   per group, model and version, summed over every window stored:
//   edgefleet_fleet_requests_total, edgefleet_fleet_errors_total,
//   edgefleet_fleet_latency_seconds_bucket{le} / _sum / _count (successful requests),
//   edgefleet_fleet_feedback_labeled_total, edgefleet_fleet_feedback_correct_total
//   per_device=1: those counters per device too ({device,group,model,version}), and
//   edgefleet_fleet_device_online{device}, edgefleet_fleet_device_last_seen_seconds{device},
//   edgefleet_fleet_device_messages_missing{device}
//   the collector itself: edgefleet_collector_messages_total{kind="status|telemetry|events|
//   rollouts"} (stored), _duplicates_total, _stale_total, _rejected_total, _batches_total
//   (transactions committed), _queue_depth,
//   _connected, _store_lag_seconds, _behind, edgefleet_broker_dropped_messages.
//   per rollout (the newest 1000 by start), as `edgefleet rollout` last reported it:
//   edgefleet_rollout_devices{rollout,model,version,state} gauge, devices per
//     state = succeeded|failed|updating|waiting|restored
//   edgefleet_rollout_info{rollout,model,version,group,state} 1 (state: running|paused|
//     completed|halted|aborted)
//
// GET /api/devices?online=&group=&model=&version=&after=&limit=
//   {"devices": [{"device", "fleet", "online", "last_seen_ms", "offline_since_ms", "status_ts",
//                 "agent_version", "connection", "numbered", "missing",
//                 "status": <status message as published>|null}],
//    "matching": <devices matching the filters, all pages>, "next": <name>|null}
//   sorted by device. Filters (all optional, all must match): online true|false; group (in its
//   newest status's groups); model (a model its status lists); version (the active version of
//   a listed model, of `model` when given). Pages: limit 1..100000 devices, then after=<next>
//   for the following page; without limit, every match (one page).
// GET /api/telemetry?device=&model=&since_ms=&limit=
//   {"windows": [<telemetry window as published> + "fleet", "received_ms"]}, newest first;
//   since_ms filters on the window's end (ts); limit 1..100000, default 100.
// GET /api/events?device=&limit=
//   {"events": [<event as published> + "fleet", "received_ms"]}, newest first; limit as above.
// GET /api/summary?window=5m
//   {"window": "all"|"5m",
//    "devices": {"total", "online", "offline"},
//    "models": [{"model", "version", "devices" (that reported windows), "active_on" (devices
//                whose status has it in the active slot), "requests", "errors",
//                "latency_ms": {"count", "p50", "p90", "p99", "max"} (merged from the summed
//                buckets), "labeled", "correct", "accuracy": correct/labeled|null}],
//    "collector": {"messages": {"status", "telemetry", "events", "rollouts"}, "duplicates",
//                  "stale", "rejected", "batches", "queued", "lag_ms", "behind",
//                  "broker_dropped", "connected"}}
//   Without `window` the sums cover every window stored; with it, each device's windows ending
//   within that duration (90d/12h/30m/45s) before its newest one.
// GET /api/series?model=&since_ms=&bucket_s=
//   {"since_ms", "bucket_s",
//    "series": [{"model", "version",
//                "points": [{"t" (bucket start: ts rounded down to bucket_s), "count", "errors",
//                            "p50", "p95", "p99" (ms, merged from the summed buckets; null
//                            without successful requests), "labeled", "correct",
//                            "accuracy": correct/labeled|null,
//                            "golden_accuracy": mean of the windows' values|null}]}]}
//   Every device's windows of a model version summed per bucket of window end times (ts);
//   sorted by model, version and t. bucket_s 1..86400, default 10; since_ms defaults to the
//   newest window's ts minus 15 minutes. More than 20000 points: 400. A bucket_s that is a
//   multiple of 10 is read from the 10-second sums the collector keeps as it stores windows
//   (deploy/collector/collector_migrations/0004_series.sql; a few rows per bucket, whatever the
//   fleet's size), and since_ms then takes the whole 10-second bucket that holds it; other sizes
//   read the windows.
// GET /api/rollouts?limit=
//   {"rollouts": [<rollout status as published> + "fleet", "received_ms"]}, the newest
//   started first (started_ts, then id); limit 1..1000, default 50. The status format is in
//   deploy/collector/collector.hpp.
//
// GET / and /dashboard: the dashboard page (dashboard/index.html); GET /assets/<file>:
//   its script and style sheet (deploy/collector/dashboard/*, built into the binary). Served with
//   Content-Security-Policy: default-src 'self' and X-Content-Type-Options: nosniff; the page
//   polls the JSON API above every 2 s and builds its DOM with textContent only.
//
// Slow and idle clients cost no thread and are closed at the layer's 10 s request deadline; the
// database reads (/api/*, /metrics) run in a pool of 4 workers with a queue of 64 (then 503 with
// Retry-After); the dashboard's static files answer on the I/O thread.
//
// Thread safety: the server answers on its own threads; it reads through the FleetView (which
// has its own lock) and the counters function, which must be callable from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "deploy/collector/collector.hpp"
#include "deploy/collector/collector_store.hpp"
#include "manifests/result.hpp"

namespace edgefleet::deploy {

class CollectorHttp final {
 public:
  // Binds `host`:`port` (port 0: a free port) and serves on a background thread. `view` must
  // outlive the server. Fails with kIo naming the address when it cannot bind.
  static Result<std::unique_ptr<CollectorHttp>> Start(const std::string& host, int port,
                                                      const FleetView& view,
                                                      std::function<CollectorCounters()> counters);
  ~CollectorHttp();  // Stop()
  CollectorHttp(const CollectorHttp&) = delete;
  CollectorHttp& operator=(const CollectorHttp&) = delete;

  int port() const;
  // Stops accepting, finishes the answers in progress and joins. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit CollectorHttp(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::deploy
