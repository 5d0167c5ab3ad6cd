// edgefleet: the operator's command line (keys, trust roots, bundles, the fleet collector and
// its device table, serving bundles, rollouts). Exit codes: 0 success, 1 the operation failed
// (the message says why), 2 bad usage; `rollout start|resume|abort` also 2 when the rollout
// halted and 3 when it was aborted (deploy/rollout/rollout.hpp).
#include <iostream>

#include <CLI/CLI.hpp>

#include "deploy/commands.hpp"
#include "deploy/rollout/rollout.hpp"
#include "deploy/simulate.hpp"

namespace {

using edgefleet::Status;
namespace deploy = edgefleet::deploy;

int Report(const Status& status) {
  if (status) return 0;
  std::cerr << "edgefleet: error: " << status.error().message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgefleet: build, sign and ship model bundles to fleets of edge boxes"};
  app.require_subcommand(1);
  std::function<Status()> run;
  int exit_code = 0;  // a rollout's outcome when `run` succeeded
  auto with_exit_code = [&](edgefleet::Result<int> result) -> Status {
    if (!result) return edgefleet::Unexpected(result.error());
    exit_code = *result;
    return edgefleet::Ok();
  };

  deploy::KeygenOptions keygen;
  auto* keygen_cmd =
      app.add_subcommand("keygen", "Make an Ed25519 key pair (<out>.key, <out>.pub)");
  keygen_cmd->add_option("--out", keygen.out, "Path prefix of the key files")->required();
  keygen_cmd->add_flag("--force", keygen.force, "Overwrite existing key files");
  keygen_cmd->callback([&] { run = [&] { return deploy::Keygen(keygen, std::cout); }; });

  auto* trust_cmd = app.add_subcommand("trust", "Trust roots: keys and roles a box believes");
  trust_cmd->require_subcommand(1);
  deploy::TrustInitOptions trust_init;
  auto* init_cmd = trust_cmd->add_subcommand("init", "Write a trust root signed by its root keys");
  init_cmd->add_option("--root-key", trust_init.root_keys, "Private root key file(s)")->required();
  init_cmd->add_option("--release-key", trust_init.release_keys, "Release key file(s)")->required();
  init_cmd->add_option("--deploy-key", trust_init.deploy_keys, "Deploy key file(s)")->required();
  init_cmd->add_option("--root-threshold", trust_init.root_threshold);
  init_cmd->add_option("--release-threshold", trust_init.release_threshold);
  init_cmd->add_option("--deploy-threshold", trust_init.deploy_threshold);
  init_cmd->add_option("--version", trust_init.version, "Root version (rotation: previous + 1)");
  init_cmd->add_option("--expires", trust_init.expires, "Duration (365d) or RFC 3339 time");
  init_cmd->add_option("-o,--output", trust_init.output, "Output file")->required();
  init_cmd->callback([&] { run = [&] { return deploy::TrustInit(trust_init, std::cout); }; });
  deploy::TrustSignOptions trust_sign;
  auto* tsign_cmd = trust_cmd->add_subcommand(
      "sign", "Add signatures to a signed document (e.g. the old root keys on a rotated root)");
  tsign_cmd->add_option("document", trust_sign.document)->required();
  tsign_cmd->add_option("--key", trust_sign.keys, "Private key file(s)")->required();
  tsign_cmd->callback([&] { run = [&] { return deploy::TrustSign(trust_sign, std::cout); }; });

  auto* bundle_cmd = app.add_subcommand("bundle", "Model bundles (*.efb)");
  bundle_cmd->require_subcommand(1);
  deploy::BundleCreateOptions create;
  std::string compression = "zstd";
  std::string version;
  auto* create_cmd = bundle_cmd->add_subcommand(
      "create", "Pack a directory with bundle.json, model/ and golden/ into a bundle");
  create_cmd->add_option("source", create.source_dir, "Directory holding bundle.json")
      ->required()
      ->check(CLI::ExistingDirectory);
  create_cmd->add_option("-o,--output", create.output, "Bundle file to write")->required();
  create_cmd->add_option("--version", version, "Override the version in bundle.json");
  create_cmd->add_option("--compression", compression, "zstd (default), gzip or none")
      ->check(CLI::IsMember({"zstd", "gzip", "none"}));
  create_cmd->add_option("--key", create.keys, "Sign with these private key file(s) right away");
  create_cmd->add_option(
      "--lower", create.lower,
      "Add a variant lowered for this backend (e.g. opencv-4.6) beside each ONNX "
      "variant it does not run as exported");
  create_cmd->add_option("--backends-dir", create.backends_dir,
                         "Backend libraries for --lower (default: beside this program)");
  create_cmd->callback([&] {
    run = [&]() -> Status {
      auto parsed = deploy::ParseCompression(compression);
      if (!parsed) return edgefleet::Unexpected(parsed.error());
      create.compression = *parsed;
      if (!version.empty()) create.version = version;
      return deploy::BundleCreate(create, std::cout);
    };
  });
  deploy::BundleSignOptions sign;
  std::string sign_output;
  auto* sign_cmd = bundle_cmd->add_subcommand("sign", "Add release signatures to a bundle");
  sign_cmd->add_option("bundle", sign.bundle)->required()->check(CLI::ExistingFile);
  sign_cmd->add_option("--key", sign.keys, "Private key file(s)")->required();
  sign_cmd->add_option("-o,--output", sign_output, "Write here instead of replacing the bundle");
  sign_cmd->callback([&] {
    if (!sign_output.empty()) sign.output = sign_output;
    run = [&] { return deploy::BundleSign(sign, std::cout); };
  });
  deploy::BundleVerifyOptions verify;
  auto* verify_cmd = bundle_cmd->add_subcommand(
      "verify", "Check signatures, every file's size and hash, and that every entry is safe");
  verify_cmd->add_option("bundle", verify.bundle)->required()->check(CLI::ExistingFile);
  verify_cmd->add_option("--trust", verify.trust, "Trust root file")->required();
  verify_cmd->add_flag("--json", verify.json, "Print a JSON report");
  verify_cmd->callback([&] { run = [&] { return deploy::BundleVerify(verify, std::cout); }; });
  deploy::BundleInspectOptions inspect;
  auto* inspect_cmd = bundle_cmd->add_subcommand("inspect", "Show a bundle's manifest");
  inspect_cmd->add_option("bundle", inspect.bundle)->required()->check(CLI::ExistingFile);
  inspect_cmd->add_flag("--json", inspect.json, "Print the manifest envelope as JSON");
  inspect_cmd->callback([&] { run = [&] { return deploy::BundleInspect(inspect, std::cout); }; });

  auto* model_cmd = app.add_subcommand("model", "ONNX model files");
  model_cmd->require_subcommand(1);
  deploy::ModelCheckOptions check;
  auto* check_cmd = model_cmd->add_subcommand(
      "check", "What each backend says about a model: before download, after, and on golden data");
  check_cmd->add_option("models", check.models, "ONNX files")->required()->check(CLI::ExistingFile);
  check_cmd->add_option("--backends-dir", check.backends_dir,
                        "Backend libraries (default: lib/edgefleet/backends beside this program)");
  check_cmd
      ->add_option("--golden", check.golden,
                   "Directory of input_K.pb/output_K.pb: also load and run on each backend")
      ->check(CLI::ExistingDirectory);
  check_cmd->add_option("--rtol", check.tolerance.rtol, "Relative tolerance (default 1e-3)");
  check_cmd->add_option("--atol", check.tolerance.atol, "Absolute tolerance (default 1e-3)");
  check_cmd->add_flag("--run-refused", check.run_refused,
                      "With --golden: also run where the verdict refuses (finds false refusals)");
  check_cmd->add_flag("--json", check.json, "Print a JSON report");
  check_cmd->callback([&] { run = [&] { return deploy::ModelCheck(check, std::cout); }; });
  deploy::ModelLowerOptions lower;
  auto* lower_cmd = model_cmd->add_subcommand(
      "lower", "Rewrite a model into forms a backend runs, check it on golden data, write it");
  lower_cmd->add_option("model", lower.input, "ONNX file")->required()->check(CLI::ExistingFile);
  lower_cmd->add_option("-o,--output", lower.output, "Lowered ONNX file to write")->required();
  lower_cmd->add_option("--for", lower.target, "Target backend, e.g. opencv-4.6")->required();
  lower_cmd
      ->add_option("--golden", lower.golden,
                   "Directory of input_K.pb/output_K.pb the lowered model must match (default: "
                   "the original's outputs on the reference backend for random inputs)")
      ->check(CLI::ExistingDirectory);
  lower_cmd->add_option("--reference", lower.reference,
                        "Backend that computes the original's outputs (default onnxruntime)");
  lower_cmd->add_option("--backends-dir", lower.backends_dir,
                        "Backend libraries (default: lib/edgefleet/backends beside this program)");
  lower_cmd->add_option("--rtol", lower.tolerance.rtol, "Relative tolerance (default 1e-3)");
  lower_cmd->add_option("--atol", lower.tolerance.atol, "Absolute tolerance (default 1e-3)");
  lower_cmd->callback([&] { run = [&] { return deploy::ModelLower(lower, std::cout); }; });

  deploy::CollectOptions collect;
  std::string port_file;
  auto* collect_cmd = app.add_subcommand(
      "collect",
      "Store the fleet's status, telemetry and events from MQTT; serve /metrics and a "
      "JSON API (runs until SIGTERM/SIGINT)");
  collect_cmd->add_option("--broker", collect.broker, "MQTT broker HOST:PORT")->required();
  collect_cmd->add_option("--fleet", collect.fleet, "Fleet name, or + for every fleet")->required();
  collect_cmd
      ->add_option("--db", collect.db,
                   "Collector database: a SQLite file (created if missing) or a PostgreSQL URL "
                   "postgresql://... (env EDGEFLEET_COLLECTOR_DB)")
      ->envname("EDGEFLEET_COLLECTOR_DB")
      ->required();
  collect_cmd->add_option("--spool", collect.spool,
                          "Spool files' path prefix (default <db>.spool; required with "
                          "PostgreSQL)");
  collect_cmd->add_option("--share", collect.share,
                          "Shared-subscription group: collectors in one group split the "
                          "telemetry and events (each stores every status)");
  collect_cmd
      ->add_option("--batch-wait-ms", collect.batch_wait_ms,
                   "How long the writer gathers messages into one transaction, from the "
                   "oldest's arrival (default 1000; 0: commit at once)")
      ->check(CLI::Range(0, 60000));
  collect_cmd
      ->add_option("--http", collect.http,
                   "HTTP HOST:PORT for /metrics and /api (port 0: "
                   "a free port)")
      ->required();
  collect_cmd->add_option("--port-file", port_file, "Write the HTTP port here once listening");
  collect_cmd->add_option("--ca-file", collect.ca_file, "CA certificate: connect with TLS");
  collect_cmd->add_option("--cert-file", collect.cert_file, "Client certificate (CN collector)");
  collect_cmd->add_option("--key-file", collect.key_file, "Client certificate's private key");
  collect_cmd->add_option("--username", collect.username, "MQTT username");
  collect_cmd->add_option("--password", collect.password, "MQTT password");
  collect_cmd->add_option("--client-id", collect.client_id, "MQTT client id (default collector)");
  collect_cmd->callback([&] {
    if (!port_file.empty()) collect.port_file = port_file;
    run = [&] { return deploy::Collect(collect); };
  });

  deploy::DevicesOptions devices;
  auto* devices_cmd = app.add_subcommand(
      "devices", "The fleet as a table from the collector database (works while collect runs)");
  devices_cmd->add_option("--db", devices.db, "Collector database")->required();
  devices_cmd->add_flag("--json", devices.json, "Print JSON rows");
  devices_cmd->add_option("--window", devices.window,
                          "Latency and accuracy over each device's last windows of this span "
                          "(default 5m)");
  devices_cmd->callback([&] { run = [&] { return deploy::Devices(devices, std::cout); }; });

  deploy::SimulateOptions sim;
  std::string sim_duration = "60s", sim_report;
  auto* sim_cmd = app.add_subcommand(
      "simulate",
      "Load tool: play N devices against a broker (one MQTT connection each, a real agent's "
      "payloads) and report what was sent and acknowledged as JSON");
  sim_cmd
      ->add_option("--broker", sim.broker, "MQTT broker HOST:PORT (loopback unless --allow-remote)")
      ->required();
  sim_cmd->add_option("--fleet", sim.fleet, "Fleet name")->required();
  sim_cmd->add_option("--devices", sim.devices, "How many devices (1..20000, default 100)");
  sim_cmd->add_option("--duration", sim_duration,
                      "How long, e.g. 90s or 5m (default 60s, at most 24h)");
  sim_cmd->add_option("--prefix", sim.prefix, "Device names: <prefix>00001, ... (default sim-)");
  sim_cmd->add_option("--group", sim.groups, "A group every device belongs to (repeatable)");
  sim_cmd->add_option("--model", sim.model,
                      "The model the devices run at the start (default digits)");
  sim_cmd->add_option("--version", sim.version, "Its version (default 1.0.0)");
  sim_cmd->add_option("--window-s", sim.window_s, "Telemetry window length (default 1)");
  sim_cmd->add_option("--event-every-s", sim.event_every_s,
                      "An event this often (default 60; 0: none)");
  sim_cmd->add_option("--update-s", sim.update_s,
                      "From a desired state to its committed or failed event (default 2)");
  sim_cmd->add_option("--fail-share", sim.fail_share,
                      "Share of devices whose updates fail at parity (0..1, default 0)");
  sim_cmd->add_option("--connect-rate", sim.connect_rate,
                      "New connections per second (default 1000)");
  sim_cmd->add_option("--read-every-s", sim.read_every_s,
                      "Read each connected socket every S s instead of as data arrives "
                      "(0..10, default 0; fewer syscalls, desired state seen up to S late)");
  sim_cmd->add_option("--username", sim.username, "MQTT username");
  sim_cmd->add_option("--password", sim.password, "MQTT password");
  sim_cmd->add_flag("--allow-remote", sim.allow_remote, "Allow a broker that is not on loopback");
  sim_cmd->add_option("--report", sim_report, "Also write the JSON report to this file");
  sim_cmd->callback([&] {
    run = [&]() -> edgefleet::Status {
      EF_ASSIGN_OR_RETURN(const std::chrono::seconds d, deploy::ParseDuration(sim_duration));
      sim.duration = d;
      if (!sim_report.empty()) sim.report = sim_report;
      return deploy::Simulate(sim, std::cout);
    };
  });

  deploy::ServeOptions serve;
  std::string serve_port_file;
  auto* serve_cmd = app.add_subcommand(
      "serve", "Serve a directory's bundles over HTTP(S) (runs until SIGTERM/SIGINT)");
  serve_cmd->add_option("--dir", serve.dir, "Directory whose files are served")->required();
  serve_cmd->add_option("--http", serve.http, "HOST:PORT to listen on (port 0: a free port)")
      ->required()
      ->check(CLI::Validator(
          [](std::string& text) {
            const edgefleet::Status ok = deploy::CheckServeAddress(text);
            return ok ? std::string() : ok.error().message;
          },
          "HOST:PORT"));
  serve_cmd->add_option("--port-file", serve_port_file, "Write the port here once listening");
  auto* tls_cert = serve_cmd->add_option("--tls-cert", serve.tls_cert, "PEM certificate: HTTPS");
  auto* tls_key = serve_cmd->add_option("--tls-key", serve.tls_key, "PEM private key");
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  serve_cmd->callback([&] {
    if (!serve_port_file.empty()) serve.port_file = serve_port_file;
    run = [&] { return deploy::Serve(serve); };
  });

  auto* rollout_cmd = app.add_subcommand(
      "rollout", "Push a bundle to a group in waves over MQTT; watch, halt and restore");
  rollout_cmd->require_subcommand(1);
  deploy::RolloutStartOptions start;
  auto* start_cmd = rollout_cmd->add_subcommand(
      "start", "Start a rollout and drive it to the end (exit 0 completed, 2 halted, 3 aborted)");
  start_cmd->add_option("--model", start.model, "Model name (must match the bundle)")->required();
  start_cmd->add_option("--bundle", start.bundle, "URL the devices download the bundle from")
      ->required();
  start_cmd->add_option("--group", start.group, "Device group")->required();
  start_cmd->add_option("--waves", start.waves, "Cumulative waves (default 10%,50%,100%)");
  start_cmd->add_option("--fleet", start.fleet, "Fleet name")
      ->required()
      ->envname("EDGEFLEET_FLEET");
  start_cmd->add_option("--broker", start.connection.broker, "MQTT broker HOST:PORT")
      ->required()
      ->envname("EDGEFLEET_BROKER");
  start_cmd->add_option("--deploy-key", start.deploy_keys, "Private key file(s) of the deploy role")
      ->required();
  start_cmd->add_option("--db", start.db, "Rollout database (SQLite; created if missing)")
      ->required()
      ->envname("EDGEFLEET_ROLLOUT_DB");
  start_cmd->add_option("--success-threshold", start.success_threshold,
                        "Share of released devices that must succeed before the next wave "
                        "(default 90%)");
  start_cmd->add_option("--error-threshold", start.error_threshold,
                        "Halt and restore when failures pass this share (default 10%)");
  start_cmd->add_option("--wave-timeout", start.wave_timeout,
                        "A wave's devices without a verdict by then count as failed (default 10m)");
  start_cmd->add_option("--expires", start.expires,
                        "Lifetime of each signed desired-state document (default 30d)");
  start_cmd->add_option("--success-on", start.success_on,
                        "committed (default: after the watch window) or activated");
  start_cmd->add_option("--discover", start.discover,
                        "How long to collect the devices' retained statuses (default 2s)");
  start_cmd->add_option("--id", start.id, "Rollout id (default <model>-<version>-<UTC time>)");
  start_cmd->add_option("--trust", start.trust,
                        "Trust root: verify the bundle's release signatures before starting");
  start_cmd->add_option("--ca-file", start.connection.ca_file, "CA certificate: connect with TLS");
  start_cmd->add_option("--cert-file", start.connection.cert_file,
                        "Client certificate (CN operator)");
  start_cmd->add_option("--key-file", start.connection.key_file,
                        "Client certificate's private key");
  start_cmd->add_option("--username", start.connection.username, "MQTT username");
  start_cmd->add_option("--password-file", start.connection.password_file,
                        "File whose first line is the MQTT password");
  start_cmd->callback(
      [&] { run = [&] { return with_exit_code(deploy::RolloutStart(start, std::cout)); }; });

  deploy::RolloutCommandOptions rollout_opts;
  auto add_common = [&](CLI::App* cmd, bool json) {
    cmd->add_option("id", rollout_opts.id, "Rollout id (default: the newest)");
    cmd->add_option("--db", rollout_opts.db, "Rollout database")
        ->required()
        ->envname("EDGEFLEET_ROLLOUT_DB");
    if (json) cmd->add_flag("--json", rollout_opts.json, "Print JSON");
  };
  auto* status_cmd = rollout_cmd->add_subcommand("status", "A rollout's waves and devices");
  add_common(status_cmd, true);
  status_cmd->callback(
      [&] { run = [&] { return deploy::PrintRolloutStatus(rollout_opts, std::cout); }; });
  auto* list_cmd = rollout_cmd->add_subcommand("list", "Every rollout in the database");
  list_cmd->add_option("--db", rollout_opts.db, "Rollout database")
      ->required()
      ->envname("EDGEFLEET_ROLLOUT_DB");
  list_cmd->add_flag("--json", rollout_opts.json, "Print JSON");
  list_cmd->callback([&] { run = [&] { return deploy::RolloutList(rollout_opts, std::cout); }; });
  auto* pause_cmd = rollout_cmd->add_subcommand("pause", "Release no further wave");
  add_common(pause_cmd, false);
  pause_cmd->callback([&] { run = [&] { return deploy::RolloutPause(rollout_opts, std::cout); }; });
  auto* resume_cmd = rollout_cmd->add_subcommand(
      "resume", "Continue a paused or interrupted rollout (drives it when no process does)");
  add_common(resume_cmd, false);
  resume_cmd->add_option("--password-file", rollout_opts.password_file,
                         "File whose first line is the MQTT password");
  resume_cmd->callback([&] {
    run = [&] { return with_exit_code(deploy::RolloutResume(rollout_opts, std::cout)); };
  });
  auto* abort_cmd = rollout_cmd->add_subcommand(
      "abort", "Stop and restore the previous desired state on every released device");
  add_common(abort_cmd, false);
  abort_cmd->add_option("--password-file", rollout_opts.password_file,
                        "File whose first line is the MQTT password");
  abort_cmd->callback(
      [&] { run = [&] { return with_exit_code(deploy::RolloutAbort(rollout_opts, std::cout)); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a "parse error" with exit code 0
  }
  const int status = Report(run());
  return status != 0 ? status : exit_code;
}
