// Field-precise JSON reading (see manifests/json_fields.hpp).
#include "manifests/json_fields.hpp"

#include <cmath>
#include <limits>

#include "manifests/crypto.hpp"
#include "manifests/log_value.hpp"

namespace edgefleet::manifests {
namespace {

// Deeper nesting than this is never legitimate in our documents; refusing it keeps recursive
// code (dump, destructors, our readers) far from the stack limit on hostile input.
constexpr int kMaxDepth = 64;

std::string Found(const nlohmann::json& value) { return std::string(JsonTypeName(value)); }

std::string StripExceptionId(std::string_view what) {
  // nlohmann messages start with "[json.exception.parse_error.101] "; the id helps nobody.
  if (!what.empty() && what.front() == '[') {
    if (const auto close = what.find("] "); close != std::string_view::npos) {
      what.remove_prefix(close + 2);
    }
  }
  return std::string(what);
}

}  // namespace

std::string_view JsonTypeName(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "integer";
    case nlohmann::json::value_t::number_float:
      return "number";
    case nlohmann::json::value_t::binary:
      return "binary";
    case nlohmann::json::value_t::discarded:
      return "discarded";
  }
  return "unknown";
}

Result<nlohmann::json> ParseJsonText(std::string_view text, std::string_view source,
                                     std::size_t max_bytes) {
  if (text.size() > max_bytes) {
    return Fail(ErrorCode::kLimit, std::string(source) + ": document is " +
                                       std::to_string(text.size()) + " bytes, limit is " +
                                       std::to_string(max_bytes));
  }
  // nlohmann keeps the last of duplicate keys silently; two parsers disagreeing on which one
  // counts is a classic signed-document attack, so duplicates are refused outright. One set of
  // keys per open object tracks them.
  std::vector<std::set<std::string, std::less<>>> open_objects;
  std::string structural_problem;
  const nlohmann::json::parser_callback_t callback =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using Event = nlohmann::json::parse_event_t;
        if (!structural_problem.empty()) return false;
        switch (event) {
          case Event::object_start:
            open_objects.emplace_back();
            [[fallthrough]];
          case Event::array_start:
            if (depth >= kMaxDepth) {
              structural_problem = "nesting deeper than " + std::to_string(kMaxDepth) + " levels";
              return false;
            }
            return true;
          case Event::object_end:
            if (!open_objects.empty()) open_objects.pop_back();
            return true;
          case Event::key: {
            if (open_objects.empty()) return true;
            const auto& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second) {
              structural_problem = "duplicate object key \"" + key + "\"";
              return false;
            }
            return true;
          }
          default:
            return true;
        }
      };
  try {
    nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), callback);
    if (!structural_problem.empty()) {
      return Fail(ErrorCode::kParse,
                  std::string(source) + ": malformed JSON: " + structural_problem);
    }
    return doc;
  } catch (const nlohmann::json::parse_error& e) {
    return Fail(ErrorCode::kParse, std::string(source) + ": malformed JSON at byte " +
                                       std::to_string(e.byte) + ": " + StripExceptionId(e.what()));
  } catch (const nlohmann::json::exception& e) {
    return Fail(ErrorCode::kParse,
                std::string(source) + ": malformed JSON: " + StripExceptionId(e.what()));
  }
}

void FieldReader::Problem(std::string_view path, std::string_view what) {
  std::string line = source_;
  line += ": ";
  if (!path.empty()) {
    line += path;
    line += ": ";
  }
  line += what;
  problems_.push_back(std::move(line));
}

namespace {

// Finds `key` in `obj`, recording "missing" when required. Non-objects have no members.
const nlohmann::json* Member(FieldReader& reader, const nlohmann::json& obj, std::string_view key,
                             const std::string& path, bool required, std::string_view expected) {
  if (obj.is_object()) {
    const auto it = obj.find(key);
    if (it != obj.end()) return &*it;
  }
  if (required) {
    reader.Problem(path,
                   "missing required field, expected " + std::string(expected) + ", found nothing");
  }
  return nullptr;
}

void WrongType(FieldReader& reader, const std::string& path, std::string_view expected,
               const nlohmann::json& found) {
  reader.Problem(path, "wrong type, expected " + std::string(expected) + ", found " + Found(found));
}

}  // namespace

std::optional<std::string> FieldReader::String(const nlohmann::json& obj, std::string_view key,
                                               std::string_view path, bool required) {
  const std::string p(path);
  const nlohmann::json* v = Member(*this, obj, key, p, required, "string");
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    WrongType(*this, p, "string", *v);
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<std::int64_t> FieldReader::Integer(const nlohmann::json& obj, std::string_view key,
                                                 std::string_view path, bool required) {
  const std::string p(path);
  const nlohmann::json* v = Member(*this, obj, key, p, required, "integer");
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      Problem(p, "expected an integer below 2^63, found " + std::to_string(u));
      return std::nullopt;
    }
    return static_cast<std::int64_t>(u);
  }
  if (v->is_number_integer()) return v->get<std::int64_t>();
  // 1.0 is refused too: integer fields are written as integers, and a float would make the
  // canonical bytes depend on float formatting.
  WrongType(*this, p, "integer", *v);
  return std::nullopt;
}

std::optional<double> FieldReader::Number(const nlohmann::json& obj, std::string_view key,
                                          std::string_view path, bool required) {
  const std::string p(path);
  const nlohmann::json* v = Member(*this, obj, key, p, required, "number");
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) {
    WrongType(*this, p, "number", *v);
    return std::nullopt;
  }
  const double d = v->get<double>();
  if (!std::isfinite(d)) {  // only reachable for values built in code, not parsed text
    Problem(p, "expected a finite number, found " + v->dump());
    return std::nullopt;
  }
  return d;
}

std::optional<bool> FieldReader::Bool(const nlohmann::json& obj, std::string_view key,
                                      std::string_view path, bool required) {
  const std::string p(path);
  const nlohmann::json* v = Member(*this, obj, key, p, required, "boolean");
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) {
    WrongType(*this, p, "boolean", *v);
    return std::nullopt;
  }
  return v->get<bool>();
}

const nlohmann::json* FieldReader::Object(const nlohmann::json& obj, std::string_view key,
                                          std::string_view path, bool required) {
  const std::string p(path);
  const nlohmann::json* v = Member(*this, obj, key, p, required, "object");
  if (v == nullptr) return nullptr;
  if (!v->is_object()) {
    WrongType(*this, p, "object", *v);
    return nullptr;
  }
  return v;
}

const nlohmann::json* FieldReader::Array(const nlohmann::json& obj, std::string_view key,
                                         std::string_view path, bool required) {
  const std::string p(path);
  const nlohmann::json* v = Member(*this, obj, key, p, required, "array");
  if (v == nullptr) return nullptr;
  if (!v->is_array()) {
    WrongType(*this, p, "array", *v);
    return nullptr;
  }
  return v;
}

void FieldReader::RejectUnknown(const nlohmann::json& obj,
                                const std::set<std::string, std::less<>>& allowed,
                                std::string_view path) {
  if (!obj.is_object()) return;
  for (const auto& [key, value] : obj.items()) {
    if (allowed.contains(key) || key.starts_with("x-")) continue;
    std::string expected;
    for (const auto& name : allowed) {
      if (!expected.empty()) expected += ", ";
      expected += name;
    }
    Problem(Child(path, key), "unknown field, expected one of " + expected +
                                  " (or an \"x-\" extension), found \"" + key + "\"");
  }
}

Status FieldReader::ToStatus() const {
  if (problems_.empty()) return Ok();
  std::string message;
  for (const auto& line : problems_) {
    if (!message.empty()) message += '\n';
    message += line;
  }
  return Fail(ErrorCode::kParse, std::move(message));
}

std::string Child(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  std::string out(parent);
  out += '.';
  out += key;
  return out;
}

std::string Index(std::string_view parent, std::size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

}  // namespace edgefleet::manifests

namespace edgefleet::manifests {

std::string QuoteForMessage(std::string_view text) { return QuoteName(text, '"'); }

void ReadDocumentHeader(FieldReader& reader, const nlohmann::json& body, std::string_view type,
                        std::string_view path) {
  if (auto found = reader.String(body, "type", Child(path, "type")); found && *found != type) {
    reader.Problem(Child(path, "type"),
                   "expected \"" + std::string(type) + "\", found " + QuoteForMessage(*found));
  }
  if (auto version = reader.Integer(body, "spec_version", Child(path, "spec_version"));
      version && *version != 1) {
    reader.Problem(
        Child(path, "spec_version"),
        "expected 1 (the only spec version this build reads), found " + std::to_string(*version));
  }
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  const auto lower_or_digit = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!lower_or_digit(name[0])) return false;
  for (char c : name.substr(1)) {
    if (!lower_or_digit(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

std::optional<std::string> ReadName(FieldReader& reader, const nlohmann::json& obj,
                                    std::string_view key, std::string_view path, bool required) {
  auto name = reader.String(obj, key, path, required);
  if (name && !IsValidName(*name)) {
    reader.Problem(path, "expected a name matching [a-z0-9][a-z0-9._-]{0,63}, found " +
                             QuoteForMessage(*name));
    return std::nullopt;
  }
  return name;
}

std::optional<std::string> ReadSha256(FieldReader& reader, const nlohmann::json& obj,
                                      std::string_view key, std::string_view path) {
  auto hex = reader.String(obj, key, path);
  if (hex && !IsLowerHex(*hex, 64)) {
    reader.Problem(path, HexProblem(*hex, 64));
    return std::nullopt;
  }
  return hex;
}

std::optional<SemVer> ReadSemVer(FieldReader& reader, const nlohmann::json& obj,
                                 std::string_view key, std::string_view path) {
  const auto text = reader.String(obj, key, path);
  if (!text) return std::nullopt;
  auto version = SemVer::Parse(*text);
  if (!version) {
    reader.Problem(path, version.error().message);
    return std::nullopt;
  }
  return std::move(version).value();
}

std::optional<Timestamp> ReadTimestamp(FieldReader& reader, const nlohmann::json& obj,
                                       std::string_view key, std::string_view path) {
  const auto text = reader.String(obj, key, path);
  if (!text) return std::nullopt;
  auto t = ParseTimestamp(*text);
  if (!t) {
    reader.Problem(path, t.error().message);
    return std::nullopt;
  }
  return *t;
}

}  // namespace edgefleet::manifests
