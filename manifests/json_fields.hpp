// Field-precise reading of JSON documents: every problem is recorded with its JSON path and
// "expected X, found Y", and reading continues so one run reports all problems at once.
//
// Example message: "manifest.json: signed.files[3].sha256: expected 64 lowercase hex digits,
// found 12 characters".
//
// Thread safety: a FieldReader is used by one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifests/result.hpp"
#include "manifests/semver.hpp"
#include "manifests/time.hpp"

namespace edgefleet::manifests {

// Short description of a JSON value's type for messages: "string", "integer", "object", ...
std::string_view JsonTypeName(const nlohmann::json& value);

// Parses text to JSON, refusing more than `max_bytes` (kLimit) and malformed text (kParse, with
// the byte offset). `source` names the document in messages.
Result<nlohmann::json> ParseJsonText(std::string_view text, std::string_view source,
                                     std::size_t max_bytes);

class FieldReader {
 public:
  // `source` prefixes every message (e.g. "manifest.json").
  explicit FieldReader(std::string source) : source_(std::move(source)) {}

  // Records a problem at `path` (e.g. "signed.files[3].sha256").
  void Problem(std::string_view path, std::string_view what);

  // Typed accessors: return the value when present and of the right type, otherwise record a
  // problem (missing or wrong type) and return nullopt. `obj` must be an object (callers check
  // with Object()).
  std::optional<std::string> String(const nlohmann::json& obj, std::string_view key,
                                    std::string_view path, bool required = true);
  std::optional<std::int64_t> Integer(const nlohmann::json& obj, std::string_view key,
                                      std::string_view path, bool required = true);
  std::optional<double> Number(const nlohmann::json& obj, std::string_view key,
                               std::string_view path, bool required = true);
  std::optional<bool> Bool(const nlohmann::json& obj, std::string_view key, std::string_view path,
                           bool required = true);
  // Returns the member when it is an object / array, else records a problem.
  const nlohmann::json* Object(const nlohmann::json& obj, std::string_view key,
                               std::string_view path, bool required = true);
  const nlohmann::json* Array(const nlohmann::json& obj, std::string_view key,
                              std::string_view path, bool required = true);

  // Records a problem for every key of `obj` not in `allowed` and not starting with "x-".
  void RejectUnknown(const nlohmann::json& obj, const std::set<std::string, std::less<>>& allowed,
                     std::string_view path);

  bool ok() const { return problems_.empty(); }
  const std::vector<std::string>& problems() const { return problems_; }
  // kParse error with one line per problem ("<source>: <path>: <what>"), or Ok().
  Status ToStatus() const;

 private:
  std::string source_;
  std::vector<std::string> problems_;
};

// Joins a parent path and a key / index: Child("signed", "files") == "signed.files",
// Index("signed.files", 3) == "signed.files[3]".
std::string Child(std::string_view parent, std::string_view key);
std::string Index(std::string_view parent, std::size_t index);

// Checks shared by the signed bodies (manifest, desired state, root). Each records a problem in
// `reader` and returns nullopt when the field is missing (and required) or invalid.

// "type" must equal `type` and "spec_version" must be 1 (the only version this build reads).
void ReadDocumentHeader(FieldReader& reader, const nlohmann::json& body, std::string_view type,
                        std::string_view path);
// Names of models, fleets, devices, groups, variants, golden sets: [a-z0-9][a-z0-9._-]{0,63}.
bool IsValidName(std::string_view name);
std::optional<std::string> ReadName(FieldReader& reader, const nlohmann::json& obj,
                                    std::string_view key, std::string_view path,
                                    bool required = true);
std::optional<std::string> ReadSha256(FieldReader& reader, const nlohmann::json& obj,
                                      std::string_view key, std::string_view path);
std::optional<SemVer> ReadSemVer(FieldReader& reader, const nlohmann::json& obj,
                                 std::string_view key, std::string_view path);
std::optional<Timestamp> ReadTimestamp(FieldReader& reader, const nlohmann::json& obj,
                                       std::string_view key, std::string_view path);
// Quotes a value for a message: QuoteName (log_value.hpp) with double quotes.
std::string QuoteForMessage(std::string_view text);

}  // namespace edgefleet::manifests
