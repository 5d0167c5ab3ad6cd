#include "runtime/torchscript_model.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>

#include "manifests/log_value.hpp"

namespace edgefleet::runtime {
namespace {

bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// The identifier starting at `pos`, or empty.
std::string_view Identifier(std::string_view text, std::size_t pos) {
  std::size_t end = pos;
  while (end < text.size() && IsIdentChar(text[end])) ++end;
  if (end == pos || std::isdigit(static_cast<unsigned char>(text[pos])) != 0) return {};
  return text.substr(pos, end - pos);
}

// Whether a call's "(" follows `pos` (spaces allowed).
bool CallFollows(std::string_view text, std::size_t pos) {
  while (pos < text.size() && text[pos] == ' ') ++pos;
  return pos < text.size() && text[pos] == '(';
}

// "<file>:<line>: <the line>" for the line that starts at `start`, cut to 160 bytes.
std::string LineAt(std::string_view text, std::size_t start, std::size_t line,
                   const std::string& file) {
  const std::size_t end = std::min(text.find('\n', start), text.size());
  std::string_view content = text.substr(start, end - start);
  while (!content.empty() && content.front() == ' ') content.remove_prefix(1);
  constexpr std::size_t kMaxLine = 160;
  std::string shown(content.substr(0, kMaxLine));
  if (content.size() > kMaxLine) shown += "...";
  return file + ":" + std::to_string(line) + ": " + shown;
}

// An entry's bytes, up to `budget` (reduced by what is read); false past it or on a read error.
bool ReadEntry(archive* a, std::size_t size_hint, std::size_t& budget, std::string& out) {
  out.clear();
  if (size_hint > budget) return false;
  char buffer[1 << 14];
  for (;;) {
    const la_ssize_t n = archive_read_data(a, buffer, sizeof buffer);
    if (n < 0) return false;
    if (n == 0) return true;
    const auto got = static_cast<std::size_t>(n);
    if (got > budget) return false;
    budget -= got;
    out.append(buffer, got);
  }
}

}  // namespace

std::vector<TorchScriptOperator> ScanTorchScriptCode(std::string_view code,
                                                     const std::string& file) {
  std::vector<TorchScriptOperator> out;
  std::size_t line = 1;        // the line `pos` is on, counted as the scan passes newlines
  std::size_t line_start = 0;  // where that line starts
  for (std::size_t pos = 0; pos < code.size(); ++pos) {
    if (code[pos] == '\n') {
      ++line;
      line_start = pos + 1;
      continue;
    }
    if (pos > 0 && (IsIdentChar(code[pos - 1]) || code[pos - 1] == '.')) continue;
    std::string domain;
    std::size_t op_at = 0;
    if (code.compare(pos, 6, "torch.") == 0) {
      domain = "aten";
      op_at = pos + 6;
    } else if (code.compare(pos, 4, "ops.") == 0) {
      const auto ns = Identifier(code, pos + 4);
      if (ns.empty() || pos + 4 + ns.size() >= code.size() || code[pos + 4 + ns.size()] != '.') {
        continue;
      }
      domain = std::string(ns);
      op_at = pos + 4 + ns.size() + 1;
    } else {
      continue;
    }
    const auto op = Identifier(code, op_at);
    if (op.empty() || !CallFollows(code, op_at + op.size())) continue;
    out.push_back({domain + ":" + std::string(op), LineAt(code, line_start, line, file)});
    pos = op_at + op.size() - 1;  // the identifier holds no newline; the loop steps past it
  }
  return out;
}

Result<TorchScriptModelInfo> InspectTorchScript(const std::filesystem::path& model_file) {
  const std::string where = manifests::QuoteName(model_file.string());
  std::unique_ptr<archive, decltype(&archive_read_free)> reader(archive_read_new(),
                                                                &archive_read_free);
  if (!reader) return Fail(ErrorCode::kInternal, where + ": cannot create an archive reader");
  archive* a = reader.get();
  archive_read_support_format_zip(a);
  if (archive_read_open_filename(a, model_file.c_str(), 1 << 16) != ARCHIVE_OK) {
    return Fail(
        ErrorCode::kParse,
        where + ": not a TorchScript archive (zip): " +
            manifests::SafeText(archive_error_string(a) ? archive_error_string(a) : "unreadable"));
  }
  TorchScriptModelInfo info;
  std::map<std::string, std::string> first;  // key -> node
  std::size_t budget = kMaxTorchScriptCodeBytes;
  std::size_t entries = 0;
  std::string code;
  for (;;) {
    archive_entry* entry = nullptr;
    const int r = archive_read_next_header(a, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return Fail(ErrorCode::kParse,
                  where + ": damaged zip archive after " + std::to_string(entries) + " entries: " +
                      manifests::SafeText(archive_error_string(a) ? archive_error_string(a)
                                                                  : "unreadable"));
    }
    if (++entries > kMaxTorchScriptEntries) {
      return Fail(ErrorCode::kLimit,
                  where + ": more than " + std::to_string(kMaxTorchScriptEntries) + " entries");
    }
    const char* raw = archive_entry_pathname(entry);
    const std::string name = raw ? raw : "";
    const bool is_code = name.find("/code/") != std::string::npos && name.ends_with(".py");
    if (!is_code) continue;
    const auto size =
        archive_entry_size_is_set(entry) != 0
            ? static_cast<std::size_t>(std::max<la_int64_t>(archive_entry_size(entry), 0))
            : 0;
    if (!ReadEntry(a, size, budget, code)) {
      return Fail(ErrorCode::kLimit, where + ": code entry " + manifests::QuoteName(name) +
                                         " cannot be read within the " +
                                         std::to_string(kMaxTorchScriptCodeBytes >> 20) +
                                         " MiB of code read");
    }
    ++info.code_files;
    for (auto& op : ScanTorchScriptCode(code, name)) first.emplace(op.key, std::move(op.node));
  }
  if (info.code_files == 0) {
    return Fail(ErrorCode::kParse, where +
                                       ": no TorchScript code in the archive (no "
                                       "<name>/code/*.py entry): not a torch.jit.save file");
  }
  for (auto& [key, node] : first) info.operators.push_back({key, std::move(node)});
  return info;
}

std::vector<std::string> TorchScriptOperatorKeys(const TorchScriptModelInfo& model) {
  std::vector<std::string> out;
  for (const auto& op : model.operators) out.push_back(op.key);
  return out;
}

}  // namespace edgefleet::runtime
