// Fuzzes ONNX TensorProto files (golden inputs and outputs in a bundle) through
// runtime::ParseTensorProto. A tensor that parses must be valid and must survive
// SerializeTensorProto -> ParseTensorProto unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "runtime/tensor.hpp"

namespace runtime = edgefleet::runtime;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto tensor = runtime::ParseTensorProto(bytes, "input_0.pb");
  if (!tensor) return 0;
  if (auto valid = tensor->Validate(); !valid) {
    std::fprintf(stderr, "a parsed tensor is not valid: %s\n", valid.error().message.c_str());
    std::abort();
  }
  auto serialized = runtime::SerializeTensorProto(*tensor);
  if (!serialized) return 0;  // e.g. over protobuf's limits; not a parser defect
  auto again = runtime::ParseTensorProto(*serialized, "input_0.pb (again)");
  if (!again || again->name != tensor->name || again->dtype != tensor->dtype ||
      again->shape != tensor->shape || again->data != tensor->data) {
    std::fprintf(stderr, "a parsed tensor does not round-trip: %s\n",
                 again ? "values differ" : again.error().message.c_str());
    std::abort();
  }
  return 0;
}
