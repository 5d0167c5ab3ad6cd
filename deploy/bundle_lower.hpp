// bundle create --lower <target>: beside every ONNX variant the target backend does not run as
// exported, a variant with the file lowered for it (deploy/model_lower.hpp), checked against the
// bundle's own golden sets within its parity tolerance before it is added.
//
// Thread safety: free functions.
#pragma once

#include <filesystem>
#include <map>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "deploy/model_lower.hpp"
#include "manifests/result.hpp"

namespace edgefleet::deploy {

// Adds the lowered variants to spec["variants"] (each right after its original: id
// "<id>-<target>", file "<dir>/<stem>.<target>.onnx", backends the target's name at its
// major.minor) and the lowered files to `generated` (bundle path -> file in `scratch`). A variant
// the target already runs as exported is left alone and said so. Fails naming the variant and the
// node, the golden output, or the golden file when a lowering fails: the bundle is then not made.
Status AddLoweredVariants(nlohmann::json& spec, const std::filesystem::path& source_dir,
                          const std::filesystem::path& spec_path, const std::string& target,
                          const std::filesystem::path& backends_dir, const ScratchDir& scratch,
                          std::map<std::string, std::filesystem::path>& generated,
                          std::ostream& out);

}  // namespace edgefleet::deploy
