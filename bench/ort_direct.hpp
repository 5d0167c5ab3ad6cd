// The peer of the onnxruntime plugin in bench/inference_overhead: one ONNX Runtime session
// driven through the C API directly, as an app would without edgefleet, with the plugin's
// session settings (intra-op threads, one inter-op thread, sequential execution, all graph
// optimisations). It opens the same library the plugin loads (runtime/onnxruntime/ort_library),
// so both run the same ORT in the same process.
//
// Thread safety: one OrtDirect is used from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace edgefleet::bench {

class OrtDirect {
 public:
  // Loads `model` with `threads` intra-op threads; `error` says why on failure (nullptr back).
  static std::unique_ptr<OrtDirect> Open(const std::string& library, const std::string& model,
                                         int threads, std::string& error);
  ~OrtDirect();
  OrtDirect(const OrtDirect&) = delete;
  OrtDirect& operator=(const OrtDirect&) = delete;

  // One run on float32 `values` of `shape` into input "input"; false on an ORT error.
  bool Run(std::vector<float>& values, const std::vector<std::int64_t>& shape);

 private:
  OrtDirect() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::bench
