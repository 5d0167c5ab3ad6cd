// Converting an ONNX graph's default-domain nodes to an older opset where the meaning is
// unchanged, so that an engine which runs the older forms can run the model (edgefleet model
// lower, runtime/onnx_lower.hpp).
//
// libonnx 1.12's version converter has down-adapters for few operators (none from 14 to 13 or
// from 17 to 16), and several of them pass a negative axis on to a version that has none. This
// converter is edgefleet's own. For every version boundary a node crosses (a `since_version` of
// its operator above the target's), an adapter either knows the change does not matter for
// this node (new element types, which the caller's strict type check at the target opset then
// verifies), rewrites the node into the older form (constant inputs back into attributes: Clip
// min/max, Squeeze/Unsqueeze/ReduceSum axes, Split sizes, Pad pads and value; negative axes to
// positive ones from the input's rank; Softmax over the last axis), or refuses with the reason.
// A boundary without an adapter is refused: nothing is converted on trust.
//
// libonnx types appear here, so only runtime's own sources include this header.
//
// Thread safety: free functions without shared state.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "manifests/result.hpp"

namespace edgefleet::runtime {

// Value name -> rank, from shape inference; a name not in it has an unknown rank.
using RankMap = std::map<std::string, int>;

// What the conversion changed: "Clip: min/max inputs to attributes" -> number of nodes.
using DowngradeSteps = std::map<std::string, int>;

// Rewrites `model`'s main graph from its default-domain opset to `target` (lower) and sets the
// import to `target`. Fails with kUnsupported naming the first node that cannot be converted
// ("node 'Clip_3' (#3): Clip across opset 11: min is computed at run time ..."). On failure
// `model` is half-converted: convert a copy.
Result<DowngradeSteps> DowngradeOpset(onnx::ModelProto& model, std::int64_t target,
                                      const RankMap& ranks);

// The number of elements `tensor`'s dims declare; nullopt for a negative dim or an overflow.
std::optional<std::uint64_t> DeclaredElements(const onnx::TensorProto& tensor);
// The number of elements `tensor` holds in its data fields (raw or typed); nullopt for an
// element type without a fixed size in those fields (strings, undefined).
std::optional<std::uint64_t> StoredElements(const onnx::TensorProto& tensor);

// A constant's integers (INT64 or INT32, at most `max_count`, data matching the declared
// dims); nullopt otherwise.
std::optional<std::vector<std::int64_t>> ConstantInts(const onnx::TensorProto& tensor,
                                                      std::size_t max_count);
// A constant float32 with exactly one element; nullopt otherwise.
std::optional<float> ConstantFloatScalar(const onnx::TensorProto& tensor);

}  // namespace edgefleet::runtime
