// Loading the agent's backend libraries (see agent/backends.hpp).
#include "agent/backends.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "agent/log_value.hpp"
#include "manifests/join.hpp"
#include "runtime/plugin_backend.hpp"

namespace edgefleet::agent {
AgentBackends LoadAgentBackends(const AgentConfig& config) {
  const std::filesystem::path dir =
      config.backends_dir.empty() ? DefaultBackendsDir() : config.backends_dir;
  AgentBackends result;
  auto scan = runtime::LoadBackendPlugins(dir, config.backend_options_json, config.backends);
  if (!scan) {
    spdlog::error("event=backends_dir_unreadable dir={} error={}", LogValue(dir.string()),
                  LogValue(scan.error().message));
    return result;
  }
  for (const auto& refusal : scan->refused) {
    spdlog::error("event=backend_refused library={} reason={}", LogValue(refusal.library.string()),
                  LogValue(refusal.reason));
  }
  const auto& wanted = config.backends;
  for (const auto& library : scan->not_opened) {
    spdlog::info("event=backend_not_enabled name={} library={} enabled={} opened=false",
                 LogValue(runtime::BackendNameFromFile(library)), LogValue(library.string()),
                 LogValue(Join(wanted, ",")));
  }
  for (std::size_t i = 0; i < scan->backends.size(); ++i) {
    const auto& caps = scan->backends[i]->capabilities();
    const std::string library = scan->libraries[i].string();
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), caps.name) == wanted.end()) {
      spdlog::info("event=backend_not_enabled name={} library={} enabled={}", caps.name,
                   LogValue(library), LogValue(Join(wanted, ",")));
      continue;
    }
    spdlog::info(
        "event=backend_loaded name={} version={} engine={} formats={} devices={} operators={} "
        "library={}",
        caps.name, caps.version.ToString(), LogValue(caps.engine),
        LogValue(Join(caps.formats, ",")), LogValue(Join(caps.targets, ",")), caps.operators.size(),
        LogValue(library));
    result.owned.push_back(std::move(scan->backends[i]));
  }
  if (wanted.empty()) {
    for (auto& backend : result.owned) result.ordered.push_back(backend.get());
  } else {
    for (const auto& name : wanted) {
      auto found = std::find_if(result.owned.begin(), result.owned.end(),
                                [&](const auto& b) { return b->capabilities().name == name; });
      if (found == result.owned.end()) {
        spdlog::error("event=backend_missing name={} backends_dir={}", LogValue(name),
                      LogValue(dir.string()));
        continue;
      }
      result.ordered.push_back(found->get());
    }
  }
  if (result.ordered.empty()) {
    spdlog::error("event=no_backends backends_dir={} effect={}", LogValue(dir.string()),
                  LogValue("no backend is usable: every model will be refused"));
  }
  return result;
}

}  // namespace edgefleet::agent
