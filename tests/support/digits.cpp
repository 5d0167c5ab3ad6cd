#include "tests/support/digits.hpp"

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

#include "manifests/crypto.hpp"
#include "manifests/time.hpp"

namespace edgefleet::testing {

Result<manifests::Manifest> LoadBundleManifest(const std::filesystem::path& dir) {
  const auto spec_path = dir / "bundle.json";
  std::ifstream in(spec_path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, spec_path.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(text.str());
    // The same files `bundle create` lists (deploy/bundle_commands.cpp), in a stable order.
    std::set<std::string> names;
    for (const auto& v : body.value("variants", nlohmann::json::array())) {
      if (v.contains("file")) names.insert(v["file"].get<std::string>());
    }
    for (const auto& g : body.value("golden", nlohmann::json::array())) {
      for (const char* key : {"inputs", "outputs"}) {
        for (const auto& f : g.value(key, nlohmann::json::array())) {
          names.insert(f.get<std::string>());
        }
      }
    }
    if (body.contains("labels")) names.insert(body["labels"].get<std::string>());
    nlohmann::json files = nlohmann::json::array();
    for (const auto& name : names) {
      const auto path = dir / name;
      std::error_code ec;
      const auto size = std::filesystem::file_size(path, ec);
      if (ec) return Fail(ErrorCode::kIo, path.string() + ": " + ec.message());
      EF_ASSIGN_OR_RETURN(auto sha, manifests::Sha256File(path));
      files.push_back({{"path", name}, {"size", size}, {"sha256", sha}});
    }
    body["type"] = manifests::kManifestType;
    body["spec_version"] = 1;
    body["created"] = manifests::FormatTimestamp(manifests::Now());
    body["files"] = std::move(files);
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kParse, spec_path.string() + ": " + e.what());
  }
  return manifests::Manifest::FromJson(body, spec_path.string());
}

}  // namespace edgefleet::testing
