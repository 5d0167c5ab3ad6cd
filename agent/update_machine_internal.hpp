// Internals shared by the update machine's source files (update_machine.cpp: the steps from
// verifying on and the offline commands; update_online.cpp: desired state and downloads;
// update_watch.cpp: the watch window). Not part of the agent's interface.
//
// Thread safety: as UpdateMachine (one update thread).
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/update_machine.hpp"
#include "manifests/manifest.hpp"
#include "updater/journal.hpp"
#include "updater/slots.hpp"

namespace edgefleet::agent {

// One deployment in flight.
struct UpdateMachine::Run {
  updater::Deployment dep;
  std::optional<updater::InstalledModel> active;  // the journal's active when it began
  bool offline = false;
  manifests::Manifest manifest;
  std::unique_ptr<updater::StagingSink> sink;
  bool unpacked = false;  // the candidate's files are in its slot directory
  bool loaded = false;    // the candidate is in the host's slot
  std::optional<double> parity_active_median_ms;
};

// Refuses a verified manifest that names another model or version than the deployment
// (mix-and-match): kIntegrity naming both.
Status MixAndMatch(const manifests::Manifest& manifest, const updater::DeploymentRequest& request,
                   std::string_view bundle_name);

// A number for a message or log field: three significant digits.
inline std::string Fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

}  // namespace edgefleet::agent
