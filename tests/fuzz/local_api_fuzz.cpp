// Fuzzes the local API's infer request decoding (agent::DecodeInferRequest): the JSON body, or
// with the binary tensor extension a JSON header plus raw tensor bytes, against a model that
// declares inputs of several datatypes. Shared memory is on with no region registered, so such
// inputs get as far as the registry's lookup.
//
// Input: when it starts with '#', its first line (after the '#') is the
// Inference-Header-Content-Length header's value and the rest the body; otherwise all of it is
// a JSON body without that header.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/kserve_codec.hpp"
#include "agent/local_api.hpp"
#include "agent/shared_memory.hpp"
#include "runtime/backend.hpp"

namespace agent = edgefleet::agent;
namespace runtime = edgefleet::runtime;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<runtime::TensorInfo> kInputs = {
      {"input", runtime::DType::kFloat32, {-1, 1, 8, 8}},
      {"ids", runtime::DType::kInt64, {-1, -1}},
      {"mask", runtime::DType::kBool, {-1}},
      {"pixels", runtime::DType::kUInt8, {2, -1, 3}},
      {"scale", runtime::DType::kFloat64, {1}},
      {"half", runtime::DType::kFloat16, {-1}}};
  static const std::vector<runtime::TensorInfo> kOutputs = {
      {"logits", runtime::DType::kFloat32, {-1, 10}}, {"label", runtime::DType::kInt64, {-1}}};
  static const agent::LocalApiOptions kOptions = [] {
    agent::LocalApiOptions options;
    options.max_elements = 1u << 16;  // small, so the limit itself is reached
    return options;
  }();
  static const agent::SharedMemoryRegistry kNoRegions(4);

  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string header;
  const std::string* header_length = nullptr;
  if (!body.empty() && body.front() == '#') {
    const std::size_t newline = body.find('\n');
    header = std::string(body.substr(1, newline == std::string_view::npos ? newline : newline - 1));
    body = newline == std::string_view::npos ? std::string_view() : body.substr(newline + 1);
    header_length = &header;
  }
  std::string request_id = "fuzz";
  agent::InferRequest request;
  (void)agent::DecodeInferRequest(body, header_length, kInputs, kOutputs, kOptions, kNoRegions,
                                  &request_id, &request);
  return 0;
}
