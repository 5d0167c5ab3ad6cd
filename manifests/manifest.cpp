// The bundle manifest (see manifests/manifest.hpp).
#include "manifests/manifest.hpp"

#include <map>
#include <set>

#include "manifests/bundle_layout.hpp"
#include "manifests/crypto.hpp"
#include "manifests/json_fields.hpp"

namespace edgefleet::manifests {
namespace {

const std::set<std::string, std::less<>> kDtypes = {
    "float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"};
constexpr std::int64_t kMinOpset = 1;
constexpr std::int64_t kMaxOpset = 30;
// A variant's form list (runtime/onnx_forms.hpp keeps a form under 420 bytes with its operator).
constexpr std::size_t kMaxForms = 10000;
constexpr std::size_t kMaxFormItemBytes = 512;

constexpr std::string_view kSafePathExpectation =
    "expected a safe relative path ('/'-separated, no leading '/', no empty, '.' or '..' "
    "segments, no backslashes or control characters, at most 255 bytes, not manifest.json)";

std::string Num(double d) { return nlohmann::json(d).dump(); }

// Number field within [min, max] (or (min, max] when `min_exclusive`).
std::optional<double> ReadRanged(FieldReader& reader, const nlohmann::json& obj,
                                 std::string_view key, const std::string& path, bool required,
                                 double min, double max, bool min_exclusive,
                                 std::string_view expectation) {
  auto value = reader.Number(obj, key, path, required);
  if (!value) return std::nullopt;
  if ((min_exclusive ? *value <= min : *value < min) || *value > max) {
    reader.Problem(path, "expected " + std::string(expectation) + ", found " + Num(*value));
    return std::nullopt;
  }
  return value;
}

constexpr double kHuge = 1e300;

std::optional<double> ReadNonNegative(FieldReader& r, const nlohmann::json& o, std::string_view key,
                                      const std::string& path) {
  return ReadRanged(r, o, key, path, false, 0, kHuge, false, "a number >= 0");
}
std::optional<double> ReadFraction(FieldReader& r, const nlohmann::json& o, std::string_view key,
                                   const std::string& path) {
  return ReadRanged(r, o, key, path, false, 0, 1, false, "a number from 0 to 1");
}
std::optional<double> ReadFactor(FieldReader& r, const nlohmann::json& o, std::string_view key,
                                 const std::string& path) {
  return ReadRanged(r, o, key, path, false, 0, kHuge, true, "a number > 0");
}

std::optional<std::int64_t> ReadIntAtLeast(FieldReader& reader, const nlohmann::json& obj,
                                           std::string_view key, const std::string& path,
                                           bool required, std::int64_t min) {
  auto value = reader.Integer(obj, key, path, required);
  if (value && *value < min) {
    reader.Problem(path, "expected an integer >= " + std::to_string(min) + ", found " +
                             std::to_string(*value));
    return std::nullopt;
  }
  return value;
}

// A non-empty string (identifiers such as tensor and backend names).
std::optional<std::string> ReadNonEmpty(FieldReader& reader, const nlohmann::json& obj,
                                        std::string_view key, const std::string& path) {
  auto value = reader.String(obj, key, path);
  if (value && value->empty()) {
    reader.Problem(path, "expected a non-empty string, found \"\"");
    return std::nullopt;
  }
  return value;
}

// The array at obj[key] with at least `min_items` entries.
const nlohmann::json* ReadArray(FieldReader& reader, const nlohmann::json& obj,
                                std::string_view key, const std::string& path,
                                std::size_t min_items, bool required = true) {
  const auto* array = reader.Array(obj, key, path, required);
  if (array != nullptr && array->size() < min_items) {
    reader.Problem(path, "expected at least " + std::to_string(min_items) + " entr" +
                             (min_items == 1 ? "y" : "ies") + ", found " +
                             std::to_string(array->size()));
  }
  return array;
}

// Element `i` of `array` as an object, else a problem.
const nlohmann::json* ItemObject(FieldReader& reader, const nlohmann::json& array, std::size_t i,
                                 const std::string& path) {
  const auto& item = array[i];
  if (!item.is_object()) {
    reader.Problem(path, "wrong type, expected object, found " + std::string(JsonTypeName(item)));
    return nullptr;
  }
  return &item;
}

std::optional<std::string> ItemString(FieldReader& reader, const nlohmann::json& array,
                                      std::size_t i, const std::string& path) {
  const auto& item = array[i];
  if (!item.is_string()) {
    reader.Problem(path, "wrong type, expected string, found " + std::string(JsonTypeName(item)));
    return std::nullopt;
  }
  return item.get<std::string>();
}

std::optional<std::string> CheckSafePath(FieldReader& reader, std::optional<std::string> path_value,
                                         const std::string& path) {
  if (path_value && !IsSafeRelativePath(*path_value)) {
    reader.Problem(path,
                   std::string(kSafePathExpectation) + ", found " + QuoteForMessage(*path_value));
    return std::nullopt;
  }
  return path_value;
}

std::optional<TensorSpec> ReadTensor(FieldReader& reader, const nlohmann::json& obj,
                                     const std::string& path) {
  reader.RejectUnknown(obj, {"name", "dtype", "shape"}, path);
  TensorSpec spec;
  bool ok = true;
  if (auto name = ReadNonEmpty(reader, obj, "name", Child(path, "name"))) {
    spec.name = *name;
  } else {
    ok = false;
  }
  if (auto dtype = reader.String(obj, "dtype", Child(path, "dtype"))) {
    if (!kDtypes.contains(*dtype)) {
      reader.Problem(Child(path, "dtype"),
                     "expected one of bool, float16, float32, float64, int16, int32, int64, "
                     "int8, uint8, found " +
                         QuoteForMessage(*dtype));
      ok = false;
    }
    spec.dtype = *dtype;
  } else {
    ok = false;
  }
  if (const auto* shape = reader.Array(obj, "shape", Child(path, "shape"))) {
    for (std::size_t i = 0; i < shape->size(); ++i) {
      const auto& dim = (*shape)[i];
      const std::string dim_path = Index(Child(path, "shape"), i);
      if (!dim.is_number_integer()) {
        reader.Problem(dim_path,
                       "wrong type, expected integer, found " + std::string(JsonTypeName(dim)));
        ok = false;
        continue;
      }
      if (dim.is_number_unsigned() &&
          dim.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
        reader.Problem(dim_path, "expected an integer below 2^63, found " + dim.dump());
        ok = false;
        continue;
      }
      const auto d = dim.get<std::int64_t>();
      if (d < -1) {
        reader.Problem(dim_path,
                       "expected a dimension >= 0 or -1 (dynamic), found " + std::to_string(d));
        ok = false;
        continue;
      }
      spec.shape.push_back(d);
    }
  } else {
    ok = false;
  }
  if (!ok) return std::nullopt;
  return spec;
}

bool ReadTensorList(FieldReader& reader, const nlohmann::json& obj, std::string_view key,
                    const std::string& path, std::vector<TensorSpec>* out) {
  const auto* array = ReadArray(reader, obj, key, path, 1);
  if (array == nullptr) return false;
  bool ok = array->size() >= 1;
  std::set<std::string> names;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string item_path = Index(path, i);
    const auto* item = ItemObject(reader, *array, i, item_path);
    if (item == nullptr) {
      ok = false;
      continue;
    }
    auto spec = ReadTensor(reader, *item, item_path);
    if (!spec) {
      ok = false;
      continue;
    }
    if (!names.insert(spec->name).second) {
      reader.Problem(Child(item_path, "name"), "expected unique tensor names, found " +
                                                   QuoteForMessage(spec->name) + " again");
      ok = false;
    }
    out->push_back(std::move(*spec));
  }
  return ok;
}

nlohmann::json TensorToJson(const TensorSpec& t) {
  return {{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}};
}

nlohmann::json TensorsToJson(const std::vector<TensorSpec>& list) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : list) out.push_back(TensorToJson(t));
  return out;
}

std::size_t Channels(std::string_view color) { return color == "GRAY" ? 1 : 3; }

std::optional<Preprocessing> ReadPreprocessing(FieldReader& reader, const nlohmann::json& obj,
                                               const std::string& path) {
  reader.RejectUnknown(obj, {"layout", "color", "height", "width", "scale", "mean", "std"}, path);
  Preprocessing p;
  bool ok = true;
  if (auto layout = reader.String(obj, "layout", Child(path, "layout"))) {
    if (*layout != "NCHW" && *layout != "NHWC") {
      reader.Problem(Child(path, "layout"),
                     "expected one of NCHW, NHWC, found " + QuoteForMessage(*layout));
      ok = false;
    }
    p.layout = *layout;
  } else {
    ok = false;
  }
  std::optional<std::size_t> channels;
  if (auto color = reader.String(obj, "color", Child(path, "color"))) {
    if (*color != "GRAY" && *color != "RGB" && *color != "BGR") {
      reader.Problem(Child(path, "color"),
                     "expected one of GRAY, RGB, BGR, found " + QuoteForMessage(*color));
      ok = false;
    } else {
      channels = Channels(*color);
    }
    p.color = *color;
  } else {
    ok = false;
  }
  if (auto h = ReadIntAtLeast(reader, obj, "height", Child(path, "height"), true, 1)) {
    p.height = *h;
  } else {
    ok = false;
  }
  if (auto w = ReadIntAtLeast(reader, obj, "width", Child(path, "width"), true, 1)) {
    p.width = *w;
  } else {
    ok = false;
  }
  if (obj.contains("scale")) {
    if (auto s = ReadFactor(reader, obj, "scale", Child(path, "scale"))) {
      p.scale = *s;
    } else {
      ok = false;
    }
  }
  const auto read_channels = [&](std::string_view key, bool positive, std::vector<double>* out) {
    const std::string list_path = Child(path, key);
    const auto* array = reader.Array(obj, key, list_path);
    if (array == nullptr) {
      ok = false;
      return;
    }
    if (channels && array->size() != *channels) {
      reader.Problem(list_path, "expected " + std::to_string(*channels) +
                                    " value(s), one per channel of " + p.color + ", found " +
                                    std::to_string(array->size()));
      ok = false;
    }
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto& v = (*array)[i];
      const std::string item_path = Index(list_path, i);
      if (!v.is_number()) {
        reader.Problem(item_path,
                       "wrong type, expected number, found " + std::string(JsonTypeName(v)));
        ok = false;
        continue;
      }
      const double d = v.get<double>();
      if (positive && !(d > 0)) {
        reader.Problem(item_path, "expected a number > 0, found " + Num(d));
        ok = false;
        continue;
      }
      out->push_back(d);
    }
  };
  read_channels("mean", false, &p.mean);
  read_channels("std", true, &p.std);
  if (!ok) return std::nullopt;
  return p;
}

std::optional<GoldenSet> ReadGolden(FieldReader& reader, const nlohmann::json& obj,
                                    const std::string& path) {
  reader.RejectUnknown(obj, {"name", "inputs", "outputs"}, path);
  GoldenSet set;
  bool ok = true;
  if (auto name = ReadName(reader, obj, "name", Child(path, "name"))) {
    set.name = *name;
  } else {
    ok = false;
  }
  const auto read_paths = [&](std::string_view key, std::vector<std::string>* out) {
    const std::string list_path = Child(path, key);
    const auto* array = ReadArray(reader, obj, key, list_path, 1);
    if (array == nullptr || array->empty()) {
      ok = false;
      return;
    }
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string item_path = Index(list_path, i);
      auto p = CheckSafePath(reader, ItemString(reader, *array, i, item_path), item_path);
      if (!p) {
        ok = false;
        continue;
      }
      // Golden files live in their set's folder, so sets cannot shadow each other's data.
      const std::string prefix = std::string(kGoldenDir) + set.name + "/";
      if (!set.name.empty() && !p->starts_with(prefix)) {
        reader.Problem(item_path,
                       "expected a path under " + prefix + ", found " + QuoteForMessage(*p));
        ok = false;
        continue;
      }
      out->push_back(std::move(*p));
    }
  };
  read_paths("inputs", &set.inputs);
  read_paths("outputs", &set.outputs);
  if (!ok) return std::nullopt;
  return set;
}

nlohmann::json ParityToJson(const ParityPolicy& p) {
  nlohmann::json out = {{"atol", p.atol},
                        {"rtol", p.rtol},
                        {"min_top1_agreement", p.min_top1_agreement},
                        {"max_latency_factor", p.max_latency_factor}};
  if (p.min_accuracy) out["min_accuracy"] = *p.min_accuracy;
  return out;
}

nlohmann::json WatchToJson(const WatchPolicy& w) {
  nlohmann::json out = {{"window_s", w.window_s},
                        {"min_requests", w.min_requests},
                        {"max_error_rate", w.max_error_rate},
                        {"max_p95_latency_factor", w.max_p95_latency_factor}};
  if (w.min_online_accuracy) out["min_online_accuracy"] = *w.min_online_accuracy;
  return out;
}

Result<Manifest> ParseManifest(const nlohmann::json& body, std::string_view source) {
  FieldReader reader{std::string(source)};
  const std::string root = "signed";
  if (!body.is_object()) {
    reader.Problem(root, "wrong type, expected object, found " + std::string(JsonTypeName(body)));
    return Unexpected(reader.ToStatus().error());
  }
  reader.RejectUnknown(
      body,
      {"type", "spec_version", "name", "version", "created", "description", "files", "variants",
       "preprocessing", "golden", "labels", "parity", "watch"},
      root);
  ReadDocumentHeader(reader, body, kManifestType, root);

  Manifest m;
  if (auto name = ReadName(reader, body, "name", Child(root, "name"))) m.name = *name;
  if (auto version = ReadSemVer(reader, body, "version", Child(root, "version"))) {
    m.version = *version;
  }
  if (auto created = ReadTimestamp(reader, body, "created", Child(root, "created"))) {
    m.created = *created;
  }
  if (auto d = reader.String(body, "description", Child(root, "description"), false)) {
    m.description = *d;
  }

  // Files first: the cross references below are checked against the paths that parsed.
  std::map<std::string, std::string> file_paths;  // path -> where it was first listed
  const std::string files_path = Child(root, "files");
  if (const auto* files = ReadArray(reader, body, "files", files_path, 1)) {
    for (std::size_t i = 0; i < files->size(); ++i) {
      const std::string path = Index(files_path, i);
      const auto* item = ItemObject(reader, *files, i, path);
      if (item == nullptr) continue;
      reader.RejectUnknown(*item, {"path", "size", "sha256"}, path);
      FileEntry entry;
      auto p = CheckSafePath(reader, reader.String(*item, "path", Child(path, "path")),
                             Child(path, "path"));
      auto size = ReadIntAtLeast(reader, *item, "size", Child(path, "size"), true, 0);
      auto sha = ReadSha256(reader, *item, "sha256", Child(path, "sha256"));
      if (p) {
        const auto [it, inserted] = file_paths.emplace(*p, Child(path, "path"));
        if (!inserted) {
          reader.Problem(Child(path, "path"), "expected unique file paths, found " +
                                                  QuoteForMessage(*p) + " already listed at " +
                                                  it->second);
          continue;
        }
      }
      if (!p || !size || !sha) continue;
      entry.path = std::move(*p);
      entry.size = static_cast<std::uint64_t>(*size);
      entry.sha256 = std::move(*sha);
      m.files.push_back(std::move(entry));
    }
  }
  const auto require_listed = [&](const std::string& file, const std::string& path) {
    if (!file_paths.contains(file)) {
      reader.Problem(path, "expected a path listed in signed.files, found " +
                               QuoteForMessage(file) + " (not listed)");
    }
  };

  const std::string variants_path = Child(root, "variants");
  if (const auto* variants = ReadArray(reader, body, "variants", variants_path, 1)) {
    std::map<std::string, std::string> ids;
    for (std::size_t i = 0; i < variants->size(); ++i) {
      const std::string path = Index(variants_path, i);
      const auto* item = ItemObject(reader, *variants, i, path);
      if (item == nullptr) continue;
      auto variant = ReadVariant(reader, *item, path, true);
      if (!variant) continue;
      if (const auto [it, inserted] = ids.emplace(variant->id, Child(path, "id")); !inserted) {
        reader.Problem(Child(path, "id"), "expected unique variant ids, found " +
                                              QuoteForMessage(variant->id) + " already used at " +
                                              it->second);
      }
      require_listed(variant->file, Child(path, "file"));
      m.variants.push_back(std::move(*variant));
    }
  }

  if (body.contains("preprocessing")) {
    const std::string path = Child(root, "preprocessing");
    if (const auto* obj = reader.Object(body, "preprocessing", path)) {
      m.preprocessing = ReadPreprocessing(reader, *obj, path);
    }
  }

  const std::string golden_path = Child(root, "golden");
  if (const auto* golden = ReadArray(reader, body, "golden", golden_path, 1)) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < golden->size(); ++i) {
      const std::string path = Index(golden_path, i);
      const auto* item = ItemObject(reader, *golden, i, path);
      if (item == nullptr) continue;
      auto set = ReadGolden(reader, *item, path);
      if (!set) continue;
      if (!names.insert(set->name).second) {
        reader.Problem(Child(path, "name"), "expected unique golden set names, found " +
                                                QuoteForMessage(set->name) + " again");
      }
      for (std::size_t k = 0; k < set->inputs.size(); ++k) {
        require_listed(set->inputs[k], Index(Child(path, "inputs"), k));
      }
      for (std::size_t k = 0; k < set->outputs.size(); ++k) {
        require_listed(set->outputs[k], Index(Child(path, "outputs"), k));
      }
      m.golden.push_back(std::move(*set));
    }
  }

  if (body.contains("labels")) {
    const std::string path = Child(root, "labels");
    if (auto labels = CheckSafePath(reader, reader.String(body, "labels", path), path)) {
      require_listed(*labels, path);
      m.labels = *labels;
    }
  }

  const std::string parity_path = Child(root, "parity");
  if (const auto* parity = reader.Object(body, "parity", parity_path)) {
    reader.RejectUnknown(
        *parity, {"atol", "rtol", "min_top1_agreement", "min_accuracy", "max_latency_factor"},
        parity_path);
    ParityPolicy& p = m.parity;
    if (auto v = ReadNonNegative(reader, *parity, "atol", Child(parity_path, "atol"))) p.atol = *v;
    if (auto v = ReadNonNegative(reader, *parity, "rtol", Child(parity_path, "rtol"))) p.rtol = *v;
    if (auto v = ReadFraction(reader, *parity, "min_top1_agreement",
                              Child(parity_path, "min_top1_agreement"))) {
      p.min_top1_agreement = *v;
    }
    if (auto v =
            ReadFraction(reader, *parity, "min_accuracy", Child(parity_path, "min_accuracy"))) {
      p.min_accuracy = *v;
    }
    if (auto v = ReadFactor(reader, *parity, "max_latency_factor",
                            Child(parity_path, "max_latency_factor"))) {
      p.max_latency_factor = *v;
    }
  }

  const std::string watch_path = Child(root, "watch");
  if (const auto* watch = reader.Object(body, "watch", watch_path)) {
    reader.RejectUnknown(*watch,
                         {"window_s", "min_requests", "max_error_rate", "max_p95_latency_factor",
                          "min_online_accuracy"},
                         watch_path);
    WatchPolicy& w = m.watch;
    if (auto v =
            ReadIntAtLeast(reader, *watch, "window_s", Child(watch_path, "window_s"), false, 1)) {
      w.window_s = *v;
    }
    if (auto v = ReadIntAtLeast(reader, *watch, "min_requests", Child(watch_path, "min_requests"),
                                false, 1)) {
      w.min_requests = *v;
    }
    if (auto v =
            ReadFraction(reader, *watch, "max_error_rate", Child(watch_path, "max_error_rate"))) {
      w.max_error_rate = *v;
    }
    if (auto v = ReadFactor(reader, *watch, "max_p95_latency_factor",
                            Child(watch_path, "max_p95_latency_factor"))) {
      w.max_p95_latency_factor = *v;
    }
    if (auto v = ReadFraction(reader, *watch, "min_online_accuracy",
                              Child(watch_path, "min_online_accuracy"))) {
      w.min_online_accuracy = *v;
    }
  }

  for (const auto& [key, value] : body.items()) {
    if (key.starts_with("x-")) m.extensions[key] = value;
  }
  EF_RETURN_IF_ERROR(reader.ToStatus());
  return m;
}

}  // namespace

bool IsSafeRelativePath(std::string_view path) {
  if (path.empty() || path.size() > kMaxPathBytes || path == kManifestFile) return false;
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') return false;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = path.find('/', start);
    const std::string_view segment = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    // Also catches a leading '/' (first segment empty) and "a//b" or a trailing '/'.
    if (segment.empty() || segment == "." || segment == "..") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

// A variant's optional "forms": printable ASCII items "<operator>(<form>)" of at most
// kMaxFormItemBytes, at most kMaxForms of them.
bool ReadForms(FieldReader& reader, const nlohmann::json& obj, const std::string& forms_path,
               std::vector<std::string>& out) {
  if (!obj.contains("forms")) return true;
  const auto* forms = reader.Array(obj, "forms", forms_path);
  if (forms == nullptr) return false;
  if (forms->size() > kMaxForms) {
    reader.Problem(forms_path, "expected at most " + std::to_string(kMaxForms) + " forms, found " +
                                   std::to_string(forms->size()));
    return false;
  }
  bool ok = true;
  for (std::size_t i = 0; i < forms->size(); ++i) {
    auto form = ItemString(reader, *forms, i, Index(forms_path, i));
    if (!form) {
      ok = false;
      continue;
    }
    const auto open = form->find('(');
    const bool printable = std::all_of(form->begin(), form->end(), [](char c) {
      return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (form->size() > kMaxFormItemBytes || !printable || open == 0 || open == std::string::npos ||
        form->back() != ')') {
      reader.Problem(Index(forms_path, i),
                     "expected \"<operator>(<form>)\" in printable ASCII of at most " +
                         std::to_string(kMaxFormItemBytes) + " bytes, found " +
                         QuoteForMessage(*form));
      ok = false;
      continue;
    }
    out.push_back(std::move(*form));
  }
  return ok;
}

std::optional<Variant> ReadVariant(FieldReader& reader, const nlohmann::json& obj,
                                   std::string_view path_view, bool with_file) {
  const std::string path(path_view);
  if (with_file) {
    reader.RejectUnknown(
        obj,
        {"id", "file", "format", "opset", "operators", "forms", "backends", "inputs", "outputs"},
        path);
  } else {
    reader.RejectUnknown(
        obj, {"id", "format", "opset", "operators", "forms", "backends", "inputs", "outputs"},
        path);
  }
  Variant v;
  bool ok = true;
  if (auto id = ReadName(reader, obj, "id", Child(path, "id"))) {
    v.id = *id;
  } else {
    ok = false;
  }
  if (with_file) {
    const std::string file_path = Child(path, "file");
    auto file = CheckSafePath(reader, reader.String(obj, "file", file_path), file_path);
    if (file && !file->starts_with(kModelDir)) {
      reader.Problem(file_path, "expected a path under " + std::string(kModelDir) + ", found " +
                                    QuoteForMessage(*file));
      file.reset();
    }
    if (file) {
      v.file = *file;
    } else {
      ok = false;
    }
  }
  if (auto format = ReadNonEmpty(reader, obj, "format", Child(path, "format"))) {
    v.format = *format;
  } else {
    ok = false;
  }
  if (auto opset = reader.Integer(obj, "opset", Child(path, "opset"))) {
    if (*opset < kMinOpset || *opset > kMaxOpset) {
      reader.Problem(Child(path, "opset"), "expected an integer from " + std::to_string(kMinOpset) +
                                               " to " + std::to_string(kMaxOpset) + ", found " +
                                               std::to_string(*opset));
      ok = false;
    } else {
      v.opset = static_cast<int>(*opset);
    }
  } else {
    ok = false;
  }
  const std::string ops_path = Child(path, "operators");
  if (const auto* ops = reader.Array(obj, "operators", ops_path)) {
    for (std::size_t i = 0; i < ops->size(); ++i) {
      auto op = ItemString(reader, *ops, i, Index(ops_path, i));
      if (op && op->empty()) {
        reader.Problem(Index(ops_path, i), "expected a non-empty operator name, found \"\"");
        op.reset();
      }
      if (!op) {
        ok = false;
        continue;
      }
      v.operators.push_back(std::move(*op));
    }
  } else {
    ok = false;
  }
  ok = ReadForms(reader, obj, Child(path, "forms"), v.forms) && ok;
  const std::string backends_path = Child(path, "backends");
  if (const auto* backends = ReadArray(reader, obj, "backends", backends_path, 1)) {
    ok = ok && !backends->empty();
    for (std::size_t i = 0; i < backends->size(); ++i) {
      const std::string item_path = Index(backends_path, i);
      const auto* item = ItemObject(reader, *backends, i, item_path);
      if (item == nullptr) {
        ok = false;
        continue;
      }
      reader.RejectUnknown(*item, {"name", "version"}, item_path);
      BackendRequirement req;
      auto name = ReadNonEmpty(reader, *item, "name", Child(item_path, "name"));
      auto range_text = reader.String(*item, "version", Child(item_path, "version"));
      std::optional<VersionRange> range;
      if (range_text) {
        auto parsed = VersionRange::Parse(*range_text);
        if (parsed) {
          range = std::move(parsed).value();
        } else {
          reader.Problem(Child(item_path, "version"), parsed.error().message);
        }
      }
      if (!name || !range) {
        ok = false;
        continue;
      }
      v.backends.push_back(BackendRequirement{std::move(*name), std::move(*range)});
    }
  } else {
    ok = false;
  }
  ok = ReadTensorList(reader, obj, "inputs", Child(path, "inputs"), &v.inputs) && ok;
  ok = ReadTensorList(reader, obj, "outputs", Child(path, "outputs"), &v.outputs) && ok;
  if (!ok) return std::nullopt;
  return v;
}

nlohmann::json VariantToJson(const Variant& v, bool with_file) {
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& b : v.backends)
    backends.push_back({{"name", b.name}, {"version", b.version.text()}});
  nlohmann::json out = {{"id", v.id},
                        {"format", v.format},
                        {"opset", v.opset},
                        {"operators", v.operators},
                        {"backends", std::move(backends)},
                        {"inputs", TensorsToJson(v.inputs)},
                        {"outputs", TensorsToJson(v.outputs)}};
  if (with_file) out["file"] = v.file;
  if (!v.forms.empty()) out["forms"] = v.forms;
  return out;
}

Result<Manifest> Manifest::FromJson(const nlohmann::json& body, std::string_view source) {
  try {
    return ParseManifest(body, source);
  } catch (const nlohmann::json::exception& e) {
    // The readers check types before every access; this is a last line of defence.
    return Fail(ErrorCode::kParse, std::string(source) + ": " + e.what());
  }
}

nlohmann::json Manifest::ToJson() const {
  nlohmann::json files_json = nlohmann::json::array();
  for (const auto& f : files) {
    files_json.push_back({{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}});
  }
  nlohmann::json variants_json = nlohmann::json::array();
  for (const auto& v : variants) variants_json.push_back(VariantToJson(v, true));
  nlohmann::json golden_json = nlohmann::json::array();
  for (const auto& g : golden) {
    golden_json.push_back({{"name", g.name}, {"inputs", g.inputs}, {"outputs", g.outputs}});
  }
  nlohmann::json out = {{"type", kManifestType},
                        {"spec_version", 1},
                        {"name", name},
                        {"version", version.ToString()},
                        {"created", FormatTimestamp(created)},
                        {"description", description},
                        {"files", std::move(files_json)},
                        {"variants", std::move(variants_json)},
                        {"golden", std::move(golden_json)},
                        {"parity", ParityToJson(parity)},
                        {"watch", WatchToJson(watch)}};
  if (preprocessing) {
    out["preprocessing"] = {{"layout", preprocessing->layout}, {"color", preprocessing->color},
                            {"height", preprocessing->height}, {"width", preprocessing->width},
                            {"scale", preprocessing->scale},   {"mean", preprocessing->mean},
                            {"std", preprocessing->std}};
  }
  if (labels) out["labels"] = *labels;
  for (const auto& [key, value] : extensions.items()) out[key] = value;
  return out;
}

const FileEntry* Manifest::FindFile(std::string_view path) const {
  for (const auto& f : files) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

}  // namespace edgefleet::manifests
