// The local API's KServe v2 / Open Inference Protocol codec (the protocol is described in
// local_api.hpp): request ids, datatype names, decoding an infer request (JSON, with the binary
// tensor and shared memory extensions) into input tensors checked against what the serving model
// declares, and encoding its outputs into the response. Pure functions over bytes and tensors, so
// they are unit-tested (tests/agent/kserve_codec_test.cpp) and fuzzed
// (tests/fuzz/local_api_fuzz.cpp) without a server or a model; the routes only call them.
//
// Thread safety: the functions keep no state (NewRequestId has a per-thread generator); the
// shared memory registry is thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/local_api.hpp"
#include "agent/shared_memory.hpp"
#include "runtime/backend.hpp"
#include "runtime/tensor.hpp"
#include "telemetry/accuracy_tracker.hpp"

namespace edgefleet::agent {

// An HTTP failure inside a handler: status and the protocol's error message.
struct HttpError {
  int status = 500;
  std::string message;
};

// Request ids. The X-Request-Id header (ours, from the client or echoed back): printable ASCII
// without spaces, at most 128 bytes, so it can neither inject header lines nor grow memory
// without bound.
bool IsUsableRequestId(std::string_view id);
// A request's JSON "id": the protocol allows any string and echoes it. At most 128 bytes, valid
// UTF-8, no control characters (logs escape it, the feedback table keys on it).
bool IsUsableJsonId(std::string_view id);
// A random (version 4) UUID: request ids only need to be unique, not secret.
std::string NewRequestId();

// The protocol's datatype names ("FP32", "INT64", "BOOL", ...).
std::string_view DatatypeName(runtime::DType dtype);
std::optional<runtime::DType> ParseDatatype(std::string_view name);
// {"name", "datatype", "shape"} of a model input or output (model metadata).
nlohmann::json TensorInfoToJson(const runtime::TensorInfo& info);

// Parses `text` into *doc after refusing documents nested deeper than `max_depth` (nlohmann's
// parser and the json destructor recurse once per level): 400 with the reason.
std::optional<HttpError> ParseJsonWithin(std::string_view text, int max_depth, nlohmann::json* doc);

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

// A successful infer's response.
struct InferResponse {
  std::string body;
  std::string content_type;                  // application/json, or application/octet-stream
                                             // when some output is binary
  std::optional<std::size_t> header_length;  // Inference-Header-Content-Length (binary outputs)
  std::optional<telemetry::Top1> top1;       // the first output's top-1, when it is one row of
                                             // class scores (feedback and drift use it)
};

// Encodes the outputs of a successful infer: {"model_name", "model_version", "id", "outputs",
// "parameters": {"slot", "top1_class", "top1_confidence"}}, with only the outputs `request`
// asked for (all without a list), each as JSON data or, per InferRequest::Binary, as raw bytes
// after the JSON header. Fails with 500 for an output whose datatype JSON cannot carry (FP16).
std::optional<HttpError> EncodeInferResponse(const std::string& model, const std::string& version,
                                             const std::string& request_id, std::string_view slot,
                                             const std::vector<runtime::Tensor>& outputs,
                                             const InferRequest& request, InferResponse* out);

}  // namespace edgefleet::agent
