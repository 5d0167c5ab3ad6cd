// The shared half of the schema example writers (tests/manifests/schema_examples.cpp for the
// signed documents, tests/telemetry/schema_examples.cpp for the MQTT payloads): documents judged
// by a C++ parser are written as <kind>.<verdict>.<label>.json for
// tests/manifests/check_schemas.py, which requires the JSON Schemas to reach the same verdicts:
//
//   valid     the C++ parser accepts it; the schema must accept it
//   invalid   the C++ parser refuses it; the schema must refuse it
//   semantic  the C++ parser refuses it for a rule JSON Schema cannot express; the schema must
//             accept it, documenting the limit
//
// Header-only, so a writer needs no test library. Thread safety: one thread per writer.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

namespace edgefleet::testing {

enum class Verdict { kValid, kInvalid, kSemantic };

class ExampleWriter {
 public:
  explicit ExampleWriter(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // Writes `text` under its verdict's name; a failure when the parser's verdict (`accepted`)
  // is not the intended one (a broken example is a failure too, not a skip) or on I/O errors.
  void Write(std::string_view kind, Verdict verdict, std::string_view label, bool accepted,
             std::string_view text) {
    const char* tag = verdict == Verdict::kValid     ? "valid"
                      : verdict == Verdict::kInvalid ? "invalid"
                                                     : "semantic";
    const std::string file = std::string(kind) + "." + tag + "." + std::string(label) + ".json";
    if (accepted != (verdict == Verdict::kValid)) {
      std::fprintf(stderr, "FAIL %s: the C++ parser %s it\n", file.c_str(),
                   accepted ? "accepts" : "refuses");
      ++failures_;
    }
    std::ofstream out(dir_ / file, std::ios::binary);
    out << text;
    if (!out) {
      std::fprintf(stderr, "FAIL %s: cannot write\n", file.c_str());
      ++failures_;
    }
    ++count_;
  }

  int failures() const { return failures_; }
  int count() const { return count_; }

 private:
  std::filesystem::path dir_;
  int failures_ = 0;
  int count_ = 0;
};

// The whole main() of a writer: `<program> <output dir>`; the directory is emptied first (no
// stale examples from an earlier run), then `fill` writes. Returns the process exit code:
// 0, 1 when an example disagreed with its parser, 2 on usage or I/O errors.
inline int RunExampleWriter(int argc, char** argv,
                            const std::function<void(ExampleWriter&)>& fill) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", argv[1], ec.message().c_str());
    return 2;
  }
  ExampleWriter writer(dir);
  fill(writer);
  std::printf("wrote %d example documents to %s; %d disagreed with the C++ parser\n",
              writer.count(), argv[1], writer.failures());
  return writer.failures() == 0 ? 0 : 1;
}

}  // namespace edgefleet::testing
