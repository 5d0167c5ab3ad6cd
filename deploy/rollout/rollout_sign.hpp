// How `edgefleet rollout` signs desired-state documents: the deploy-role keys (Signer), one
// document, and a wave's documents on every core.
//
// Thread safety: the functions keep no state; SignDeviceDocs runs helper threads that share only
// its const arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/result.hpp"

namespace edgefleet::deploy {

struct Signer {
  std::vector<manifests::PrivateKey> keys;
  std::string fleet;
  std::int64_t expires_s = 0;
};

// The deploy-role keys in `files`; kInvalidArgument when there is none, the key loader's error
// when one cannot be read.
Result<Signer> LoadSigner(const std::vector<std::string>& files, const std::string& fleet,
                          std::int64_t expires_s);

// The signed desired-state document (the envelope as published) for `kind` ("device"|"group")
// `name`: kLimit when it is above the agents' payload limit, the desired-state checks' error for
// a body they refuse.
Result<std::string> SignDesired(const Signer& signer, const std::string& kind,
                                const std::string& name, std::uint64_t serial,
                                const nlohmann::json& models);

// One device's desired-state document to sign: the device, its serial and its models array.
struct DeviceDoc {
  const std::string* device;
  std::uint64_t serial;
  nlohmann::json models;
};

// The signed documents (envelopes as published) of `docs`, in order, signed on every core (a
// wave's thousands of Ed25519 signatures and their JSON decide how soon its documents leave);
// below a few hundred documents on the calling thread only. The first error, if any: a body the
// desired-state checks refuse, or a document above the agents' payload limit.
Result<std::vector<std::string>> SignDeviceDocs(const Signer& signer,
                                                const std::vector<DeviceDoc>& docs);

}  // namespace edgefleet::deploy
