// The agent's backends: the libraries of its backends_dir, loaded, logged and put in the order
// the config prefers (agent/config.hpp: backends_dir, backends, backend_options).
//
// Thread safety: call once at start; the result is read-only afterwards.
#pragma once

#include <memory>
#include <vector>

#include "agent/config.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::agent {

struct AgentBackends {
  std::vector<std::unique_ptr<runtime::Backend>> owned;
  std::vector<runtime::Backend*> ordered;  // in preference order; what the agent uses
};

// Loads every library of the configured directory and logs one line per library: loaded (name,
// version, engine, formats, devices, file), refused (file and reason), or not enabled by
// `backends`; a name in `backends` that no library provides is logged as an error. Never fails:
// an agent without backends still reports its status and refuses every model with the reason.
AgentBackends LoadAgentBackends(const AgentConfig& config);

}  // namespace edgefleet::agent
