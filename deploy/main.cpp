// edgefleet: the operator's command line (keys, trust roots, bundles, the fleet collector and
// its device table, serving bundles; later rollout). Exit codes: 0 success, 1 the operation
// failed (the message says why), 2 bad usage.
#include <iostream>

#include <CLI/CLI.hpp>

#include "deploy/commands.hpp"

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

  deploy::KeygenOptions keygen;
  auto* keygen_cmd = app.add_subcommand("keygen", "Make an Ed25519 key pair (<out>.key, <out>.pub)");
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

  deploy::CollectOptions collect;
  std::string port_file;
  auto* collect_cmd = app.add_subcommand(
      "collect", "Store the fleet's status, telemetry and events from MQTT; serve /metrics and a "
                 "JSON API (runs until SIGTERM/SIGINT)");
  collect_cmd->add_option("--broker", collect.broker, "MQTT broker HOST:PORT")->required();
  collect_cmd->add_option("--fleet", collect.fleet, "Fleet name, or + for every fleet")
      ->required();
  collect_cmd->add_option("--db", collect.db, "Collector database (SQLite; created if missing)")
      ->required();
  collect_cmd->add_option("--http", collect.http, "HTTP HOST:PORT for /metrics and /api (port 0: "
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a "parse error" with exit code 0
  }
  return Report(run());
}
