// Signing desired state for `edgefleet rollout`: see rollout_sign.hpp.
#include "deploy/rollout/rollout_sign.hpp"

#include <algorithm>
#include <thread>

#include "manifests/desired_state.hpp"
#include "manifests/envelope.hpp"
#include "manifests/time.hpp"
#include "telemetry/payloads.hpp"

namespace edgefleet::deploy {

using nlohmann::json;

Result<Signer> LoadSigner(const std::vector<std::string>& files, const std::string& fleet,
                          std::int64_t expires_s) {
  if (files.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "--deploy-key: at least one key of the deploy role");
  }
  Signer s;
  s.fleet = fleet;
  s.expires_s = expires_s;
  for (const std::string& f : files) {
    EF_ASSIGN_OR_RETURN(auto key, manifests::LoadPrivateKey(f));
    s.keys.push_back(std::move(key));
  }
  return s;
}

Result<std::string> SignDesired(const Signer& signer, const std::string& kind,
                                const std::string& name, std::uint64_t serial, const json& models) {
  const auto now = manifests::Now();
  json body = {
      {"type", "edgefleet/desired-state"},
      {"spec_version", 1},
      {"fleet", signer.fleet},
      {"target", {{kind, name}}},
      {"serial", serial},
      {"created", manifests::FormatTimestamp(now)},
      {"expires", manifests::FormatTimestamp(now + std::chrono::seconds(signer.expires_s))},
      {"models", models}};
  const std::string source = "desired state for " + kind + "/" + name;
  EF_ASSIGN_OR_RETURN(auto parsed, manifests::DesiredState::FromJson(body, source));
  manifests::SignedEnvelope env;
  env.signed_body = parsed.ToJson();
  for (const auto& key : signer.keys) EF_RETURN_IF_ERROR(env.Sign(key));
  std::string text = env.ToJson().dump();
  if (text.size() > telemetry::kMaxPayloadBytes) {
    return Fail(ErrorCode::kLimit, source + ": " + std::to_string(text.size()) +
                                       " bytes, above the agents' limit of " +
                                       std::to_string(telemetry::kMaxPayloadBytes));
  }
  return text;
}

Result<std::vector<std::string>> SignDeviceDocs(const Signer& signer,
                                                const std::vector<DeviceDoc>& docs) {
  std::vector<Result<std::string>> signed_docs(docs.size(), std::string());
  auto sign_range = [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      signed_docs[i] =
          SignDesired(signer, "device", *docs[i].device, docs[i].serial, docs[i].models);
    }
  };
  // Below a few hundred documents a thread costs more than it saves.
  const std::size_t threads =
      docs.size() < 256 ? 1 : std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 8);
  std::vector<std::thread> helpers;
  const std::size_t per = (docs.size() + threads - 1) / threads;
  for (std::size_t t = 1; t < threads; ++t) {
    helpers.emplace_back(sign_range, std::min(docs.size(), t * per),
                         std::min(docs.size(), (t + 1) * per));
  }
  sign_range(0, std::min(docs.size(), per));
  for (std::thread& h : helpers) h.join();
  std::vector<std::string> out;
  out.reserve(docs.size());
  for (Result<std::string>& r : signed_docs) {
    if (!r) return Unexpected(r.error());
    out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace edgefleet::deploy
