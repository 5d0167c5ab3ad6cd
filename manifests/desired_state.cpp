// The desired-state document (see manifests/desired_state.hpp).
#include "manifests/desired_state.hpp"

#include <map>

#include "manifests/json_fields.hpp"

namespace edgefleet::manifests {
namespace {

bool HasAllowedScheme(std::string_view url) {
  for (std::string_view scheme : {"http://", "https://", "file://"}) {
    if (url.starts_with(scheme) && url.size() > scheme.size()) return true;
  }
  return false;
}

std::optional<DesiredModel> ReadModel(FieldReader& reader, const nlohmann::json& obj,
                                      const std::string& path) {
  reader.RejectUnknown(obj, {"name", "version", "bundle", "allow_downgrade", "requirements"}, path);
  DesiredModel model;
  bool ok = true;
  if (auto name = ReadName(reader, obj, "name", Child(path, "name"))) {
    model.name = *name;
  } else {
    ok = false;
  }
  if (auto version = ReadSemVer(reader, obj, "version", Child(path, "version"))) {
    model.version = *version;
  } else {
    ok = false;
  }
  const std::string bundle_path = Child(path, "bundle");
  if (const auto* bundle = reader.Object(obj, "bundle", bundle_path)) {
    reader.RejectUnknown(*bundle, {"url", "size", "sha256"}, bundle_path);
    if (auto url = reader.String(*bundle, "url", Child(bundle_path, "url"))) {
      if (!HasAllowedScheme(*url)) {
        reader.Problem(Child(bundle_path, "url"),
                       "expected a URL starting with http://, https:// or file://, found " +
                           QuoteForMessage(*url));
        ok = false;
      }
      model.bundle.url = *url;
    } else {
      ok = false;
    }
    if (auto size = reader.Integer(*bundle, "size", Child(bundle_path, "size"))) {
      // Even an empty tar is 1 KiB; zero would disable the endless-data cap in practice.
      if (*size < 1) {
        reader.Problem(Child(bundle_path, "size"),
                       "expected an integer >= 1, found " + std::to_string(*size));
        ok = false;
      }
      model.bundle.size = static_cast<std::uint64_t>(*size);
    } else {
      ok = false;
    }
    if (auto sha = ReadSha256(reader, *bundle, "sha256", Child(bundle_path, "sha256"))) {
      model.bundle.sha256 = *sha;
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (auto allow = reader.Bool(obj, "allow_downgrade", Child(path, "allow_downgrade"), false)) {
    model.allow_downgrade = *allow;
  }
  const std::string req_path = Child(path, "requirements");
  if (const auto* reqs = reader.Array(obj, "requirements", req_path, false)) {
    std::map<std::string, std::string> ids;
    for (std::size_t i = 0; i < reqs->size(); ++i) {
      const std::string item_path = Index(req_path, i);
      const auto& item = (*reqs)[i];
      if (!item.is_object()) {
        reader.Problem(item_path,
                       "wrong type, expected object, found " + std::string(JsonTypeName(item)));
        ok = false;
        continue;
      }
      auto variant = ReadVariant(reader, item, item_path, false);
      if (!variant) {
        ok = false;
        continue;
      }
      if (const auto [it, inserted] = ids.emplace(variant->id, Child(item_path, "id")); !inserted) {
        reader.Problem(Child(item_path, "id"), "expected unique variant ids, found " +
                                                   QuoteForMessage(variant->id) +
                                                   " already used at " + it->second);
        ok = false;
      }
      model.requirements.push_back(std::move(*variant));
    }
  }
  if (!ok) return std::nullopt;
  return model;
}

Result<DesiredState> Parse(const nlohmann::json& body, std::string_view source) {
  FieldReader reader{std::string(source)};
  const std::string root = "signed";
  if (!body.is_object()) {
    reader.Problem(root, "wrong type, expected object, found " + std::string(JsonTypeName(body)));
    return Unexpected(reader.ToStatus().error());
  }
  reader.RejectUnknown(
      body, {"type", "spec_version", "fleet", "target", "serial", "created", "expires", "models"},
      root);
  ReadDocumentHeader(reader, body, kDesiredStateType, root);

  DesiredState state;
  if (auto fleet = ReadName(reader, body, "fleet", Child(root, "fleet"))) state.fleet = *fleet;

  const std::string target_path = Child(root, "target");
  if (const auto* target = reader.Object(body, "target", target_path)) {
    reader.RejectUnknown(*target, {"device", "group"}, target_path);
    const bool has_device = target->contains("device");
    const bool has_group = target->contains("group");
    if (has_device == has_group) {
      reader.Problem(target_path, std::string("expected exactly one of \"device\" or \"group\", "
                                              "found ") +
                                      (has_device ? "both" : "neither"));
    } else {
      state.target_kind = has_device ? "device" : "group";
      if (auto name =
              ReadName(reader, *target, state.target_kind, Child(target_path, state.target_kind))) {
        state.target = *name;
      }
    }
  }
  if (auto serial = reader.Integer(body, "serial", Child(root, "serial"))) {
    if (*serial < 0) {
      reader.Problem(Child(root, "serial"),
                     "expected an integer >= 0, found " + std::to_string(*serial));
    } else {
      state.serial = static_cast<std::uint64_t>(*serial);
    }
  }
  const auto created = ReadTimestamp(reader, body, "created", Child(root, "created"));
  const auto expires = ReadTimestamp(reader, body, "expires", Child(root, "expires"));
  if (created) state.created = *created;
  if (expires) state.expires = *expires;
  if (created && expires && *expires <= *created) {
    reader.Problem(Child(root, "expires"), "expected a time after created (" +
                                               FormatTimestamp(*created) + "), found " +
                                               FormatTimestamp(*expires));
  }

  const std::string models_path = Child(root, "models");
  if (const auto* models = reader.Array(body, "models", models_path)) {
    std::map<std::string, std::string> names;
    for (std::size_t i = 0; i < models->size(); ++i) {
      const std::string path = Index(models_path, i);
      const auto& item = (*models)[i];
      if (!item.is_object()) {
        reader.Problem(path,
                       "wrong type, expected object, found " + std::string(JsonTypeName(item)));
        continue;
      }
      auto model = ReadModel(reader, item, path);
      if (!model) continue;
      if (const auto [it, inserted] = names.emplace(model->name, Child(path, "name")); !inserted) {
        reader.Problem(Child(path, "name"), "expected unique model names, found " +
                                                QuoteForMessage(model->name) +
                                                " already listed at " + it->second);
        continue;
      }
      state.models.push_back(std::move(*model));
    }
  }
  for (const auto& [key, value] : body.items()) {
    if (key.starts_with("x-")) state.extensions[key] = value;
  }
  EF_RETURN_IF_ERROR(reader.ToStatus());
  return state;
}

}  // namespace

Result<DesiredState> DesiredState::FromJson(const nlohmann::json& body, std::string_view source) {
  try {
    return Parse(body, source);
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kParse, std::string(source) + ": " + e.what());
  }
}

nlohmann::json DesiredState::ToJson() const {
  nlohmann::json models_json = nlohmann::json::array();
  for (const auto& m : models) {
    nlohmann::json reqs = nlohmann::json::array();
    for (const auto& v : m.requirements) reqs.push_back(VariantToJson(v, false));
    models_json.push_back(
        {{"name", m.name},
         {"version", m.version.ToString()},
         {"bundle", {{"url", m.bundle.url}, {"size", m.bundle.size}, {"sha256", m.bundle.sha256}}},
         {"allow_downgrade", m.allow_downgrade},
         {"requirements", std::move(reqs)}});
  }
  nlohmann::json out = {{"type", kDesiredStateType},
                        {"spec_version", 1},
                        {"fleet", fleet},
                        {"target", {{target_kind, target}}},
                        {"serial", serial},
                        {"created", FormatTimestamp(created)},
                        {"expires", FormatTimestamp(expires)},
                        {"models", std::move(models_json)}};
  for (const auto& [key, value] : extensions.items()) out[key] = value;
  return out;
}

Status CheckNotExpired(Timestamp expires, Timestamp now, std::string_view source) {
  if (expires <= now) {
    return Fail(ErrorCode::kExpired, std::string(source) + ": expired at " +
                                         FormatTimestamp(expires) + " (now " +
                                         FormatTimestamp(now) + ")");
  }
  return Ok();
}

}  // namespace edgefleet::manifests
