#include "tests/support/grafana.hpp"

#include <functional>
#include <regex>
#include <sstream>

namespace edgefleet::testing {

std::set<std::string> GrafanaMetricNames(const nlohmann::json& dashboard) {
  std::set<std::string> names;
  const std::regex metric("edgefleet_[a-z0-9_]+");
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& node) {
    if (node.is_string()) {
      const std::string text = node.get<std::string>();
      for (auto it = std::sregex_iterator(text.begin(), text.end(), metric);
           it != std::sregex_iterator(); ++it) {
        names.insert(it->str());
      }
    } else if (node.is_structured()) {
      for (const auto& child : node) walk(child);
    }
  };
  walk(dashboard);
  return names;
}

std::set<std::string> MetricSampleNames(const std::string& prometheus_text) {
  std::set<std::string> names;
  std::istringstream lines(prometheus_text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("edgefleet_", 0) == 0) names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

}  // namespace edgefleet::testing
