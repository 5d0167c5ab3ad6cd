// The model host: named models, each with slots A and B; one slot is active and serves.
//
// Activation is one pointer store (under a mutex held only for pointer copies). A request takes a
// snapshot (shared_ptr) of the active instance when it starts and finishes on it, so a switch never
// fails or stalls a request in flight; the old instance is freed when its last request ends. A slot
// is ready only after its warm-up run.
//
// Thread safety: all methods are thread-safe. Infer and Active never wait for Load (loading
// happens outside the lock that guards the model table).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "manifests/manifest.hpp"
#include "manifests/result.hpp"
#include "manifests/semver.hpp"
#include "runtime/backend.hpp"
#include "runtime/tensor.hpp"

namespace edgefleet::runtime {

enum class Slot { kA, kB };
std::string_view ToString(Slot slot);
Slot Other(Slot slot);

// A model loaded into a slot; immutable once published.
struct ModelInstance {
  std::string name;
  manifests::SemVer version;
  Slot slot = Slot::kA;
  std::string variant_id;
  std::string backend;        // backend name
  std::string format;         // the variant's format ("onnx", "torchscript")
  std::string bundle_sha256;  // of the bundle it came from (status reports)
  std::optional<manifests::Preprocessing> preprocessing;
  std::shared_ptr<Session> session;
};

struct LoadRequest {
  std::string name;
  manifests::SemVer version;
  Slot slot = Slot::kA;
  std::filesystem::path model_file;
  manifests::Variant variant;
  std::optional<manifests::Preprocessing> preprocessing;
  std::string bundle_sha256;
  Backend* backend = nullptr;
  SessionOptions options;
  // A session the caller already loaded from model_file with `backend` (e.g. the one parity
  // measured when variants were compared); when set, Load uses it instead of loading again.
  std::shared_ptr<Session> session;
  int warmup_runs = 1;
};

struct InferOutcome {
  std::vector<Tensor> outputs;
  std::shared_ptr<const ModelInstance> instance;  // what served this request
  double infer_ms = 0;
};

struct SlotStatus {
  Slot slot = Slot::kA;
  manifests::SemVer version;
  std::string variant_id;
  std::string bundle_sha256;
};

struct ModelStatus {
  std::string name;
  std::optional<Slot> active;
  std::vector<SlotStatus> slots;  // loaded slots, A before B
};

class ModelHost {
 public:
  ModelHost() = default;
  ModelHost(const ModelHost&) = delete;
  ModelHost& operator=(const ModelHost&) = delete;

  // Loads the model into `request.slot` and warms it up (runs on zero tensors of the declared
  // input shapes, dynamic dimensions as 1). Fails with kInvalidArgument when that slot is the
  // active one, with the backend's error when loading or warm-up fails (the slot is then left as
  // it was).
  Status Load(const LoadRequest& request);
  // Makes `slot` the active one (kNotFound when it holds nothing).
  Status Activate(std::string_view name, Slot slot);
  // Empties a slot that is not active (kInvalidArgument for the active slot).
  Status Unload(std::string_view name, Slot slot);

  // Snapshot of the active instance; nullptr when the model is unknown or has none.
  std::shared_ptr<const ModelInstance> Active(std::string_view name) const;
  std::shared_ptr<const ModelInstance> InSlot(std::string_view name, Slot slot) const;
  std::vector<ModelStatus> List() const;

  // Runs `inputs` on the active instance (kNotFound when there is none; the session's errors
  // otherwise).
  Result<InferOutcome> Infer(std::string_view name, const std::vector<Tensor>& inputs) const;

 private:
  struct Entry {
    std::shared_ptr<const ModelInstance> slots[2];
    std::shared_ptr<const ModelInstance> active;
    // A Load in progress for that slot (guarded by mu_ like the whole table): a second Load
    // into it is refused rather than racing the first to publish.
    bool loading[2] = {false, false};
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> models_;  // guarded by mu_
};

}  // namespace edgefleet::runtime
