// Decoding a JSON infer request of the local API (KServe v2, with the binary tensor and shared
// memory extensions; the protocol is described in local_api.hpp) into input tensors, checked
// against the inputs and outputs the serving model declares. A pure function over the body, so
// it is tested and fuzzed (tests/fuzz/local_api_fuzz.cpp) without a server or a model.
//
// Thread safety: DecodeInferRequest keeps no state; the shared memory registry is thread-safe.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/local_api.hpp"
#include "agent/shared_memory.hpp"
#include "runtime/backend.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::agent {

// An HTTP failure inside a handler: status and the protocol's error message.
struct HttpError {
  int status = 500;
  std::string message;
};

struct InferRequest {
  std::vector<runtime::Tensor> inputs;      // one per declared input, in the request's order
  std::vector<std::string> wanted_outputs;  // empty: all
  // Outputs to return as raw bytes after the JSON header (per output "binary_data": true), or
  // all of them with the request's parameters.binary_data_output except those whose own
  // "binary_data" is false (the per-output parameter wins).
  std::vector<std::string> binary_outputs;
  std::vector<std::string> json_outputs;
  bool all_binary = false;

  // Whether `output` comes back as raw bytes.
  bool Binary(const std::string& output) const {
    auto listed = [&](const std::vector<std::string>& names) {
      return std::find(names.begin(), names.end(), output) != names.end();
    };
    return listed(binary_outputs) || (all_binary && !listed(json_outputs));
  }
};

// Decodes `body`: all JSON, or with `header_length` (the Inference-Header-Content-Length
// header's value; null without it) a JSON header of that many bytes followed by the raw bytes of
// the inputs that give binary_data_size. Inputs naming a shared memory region are read from
// `shared_memory`. Uses options.max_json_depth, max_elements and shared_memory. A usable request
// "id" replaces *request_id as soon as it is read, so an error found later is reported under
// it. Returns the error (400, with the protocol's message) or nothing, with `out` filled.
std::optional<HttpError> DecodeInferRequest(
    std::string_view body, const std::string* header_length,
    const std::vector<runtime::TensorInfo>& declared,
    const std::vector<runtime::TensorInfo>& declared_outputs, const LocalApiOptions& options,
    const SharedMemoryRegistry& shared_memory, std::string* request_id, InferRequest* out);

}  // namespace edgefleet::agent
