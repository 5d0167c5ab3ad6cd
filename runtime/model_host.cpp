// The model host (see runtime/model_host.hpp).
//
// mu_ is held only to read or replace shared_ptrs in the table: never while a model loads, warms
// up or runs, and never while the last reference to an instance is dropped (a Session's
// destructor frees the network, which can take milliseconds). Requests therefore wait at most
// for a few pointer copies.
#include "runtime/model_host.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace edgefleet::runtime {
namespace {

std::size_t Index(Slot slot) { return slot == Slot::kA ? 0 : 1; }

std::string Label(std::string_view name, Slot slot) {
  return "model '" + std::string(name) + "' slot " + std::string(ToString(slot));
}

// Zero tensors of the declared input shapes with dynamic dimensions as 1: the smallest input
// the model must accept, enough to make the backend allocate and initialise its layers.
Result<std::vector<Tensor>> WarmupInputs(const Session& session) {
  std::vector<Tensor> inputs;
  for (const auto& info : session.inputs()) {
    Tensor t;
    t.name = info.name;
    t.dtype = info.dtype;
    t.shape = info.shape;
    for (auto& dim : t.shape) {
      if (dim < 0) dim = 1;
    }
    auto count = ElementCount(t.shape);
    if (!count) return Unexpected(count.error().Wrap("warm-up input '" + info.name + "'"));
    t.data.assign(*count * ElementSize(t.dtype), std::byte{0});
    inputs.push_back(std::move(t));
  }
  return inputs;
}

}  // namespace

std::string_view ToString(Slot slot) { return slot == Slot::kA ? "A" : "B"; }

Slot Other(Slot slot) { return slot == Slot::kA ? Slot::kB : Slot::kA; }

Status ModelHost::Load(const LoadRequest& request) {
  const std::string label = Label(request.name, request.slot);
  if (request.name.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "model name: expected a name, found an empty one");
  }
  if (request.backend == nullptr) {
    return Fail(ErrorCode::kInvalidArgument, label + ": expected a backend, found none");
  }
  const std::size_t index = Index(request.slot);
  {
    std::lock_guard lock(mu_);
    Entry& entry = models_[request.name];
    if (entry.active != nullptr && entry.active->slot == request.slot) {
      return Fail(ErrorCode::kInvalidArgument,
                  label + ": is the active slot (version " + entry.active->version.ToString() +
                      "); load into slot " + std::string(ToString(Other(request.slot))) +
                      " and activate it");
    }
    if (entry.loading[index]) {
      return Fail(ErrorCode::kInvalidArgument, label + ": another load into it is in progress");
    }
    entry.loading[index] = true;
  }

  // Clears the loading mark on every way out; drops the entry a failed first load created.
  std::shared_ptr<const ModelInstance> replaced;
  auto finish = [&](Status status) -> Status {
    {
      std::lock_guard lock(mu_);
      auto it = models_.find(request.name);
      if (it != models_.end()) {
        it->second.loading[index] = false;
        const Entry& e = it->second;
        if (!e.slots[0] && !e.slots[1] && !e.loading[0] && !e.loading[1]) models_.erase(it);
      }
    }
    replaced.reset();  // outside the lock: may free the previous session of this slot
    return status;
  };

  std::shared_ptr<Session> shared = request.session;
  if (shared == nullptr) {
    auto session = request.backend->Load(request.model_file, request.variant, request.options);
    if (!session) return finish(Unexpected(session.error().Wrap(label + ": load")));
    shared = std::move(session).value();
  }

  // Ready means warmed up: the first run of a fresh network allocates and initialises layers and
  // would otherwise land on the first real request. At least one run, whatever was asked.
  auto warmup = WarmupInputs(*shared);
  if (!warmup) return finish(Unexpected(warmup.error().Wrap(label)));
  for (int run = 0; run < std::max(1, request.warmup_runs); ++run) {
    auto outputs = shared->Run(*warmup);
    if (!outputs) return finish(Unexpected(outputs.error().Wrap(label + ": warm-up run")));
  }

  auto instance = std::make_shared<ModelInstance>();
  instance->name = request.name;
  instance->version = request.version;
  instance->slot = request.slot;
  instance->variant_id = request.variant.id;
  instance->backend = request.backend->capabilities().name;
  instance->format = request.variant.format;
  instance->bundle_sha256 = request.bundle_sha256;
  instance->preprocessing = request.preprocessing;
  instance->session = std::move(shared);

  {
    std::lock_guard lock(mu_);
    Entry& entry = models_[request.name];
    // Activate may have made this slot active (with its previous content) while we loaded;
    // replacing it now would swap the serving model without an activation.
    if (entry.active != nullptr && entry.active->slot == request.slot) {
      entry.loading[index] = false;
      return Fail(ErrorCode::kInvalidArgument,
                  label + ": became the active slot while loading; the loaded version " +
                      request.version.ToString() + " was discarded");
    }
    replaced = std::exchange(entry.slots[index], std::move(instance));
  }
  return finish(Ok());
}

Status ModelHost::Activate(std::string_view name, Slot slot) {
  std::lock_guard lock(mu_);
  auto it = models_.find(std::string(name));
  if (it == models_.end()) {
    return Fail(ErrorCode::kNotFound, "model '" + std::string(name) + "': not loaded");
  }
  Entry& entry = it->second;
  const auto& target = entry.slots[Index(slot)];
  if (target == nullptr) {
    return Fail(ErrorCode::kNotFound, Label(name, slot) + ": empty, nothing to activate");
  }
  // The switch: requests that already took a snapshot keep the previous instance alive (the
  // other slot also still holds it), so nothing is freed here.
  entry.active = target;
  return Ok();
}

Status ModelHost::Unload(std::string_view name, Slot slot) {
  std::shared_ptr<const ModelInstance> dropped;
  {
    std::lock_guard lock(mu_);
    auto it = models_.find(std::string(name));
    if (it == models_.end()) {
      return Fail(ErrorCode::kNotFound, "model '" + std::string(name) + "': not loaded");
    }
    Entry& entry = it->second;
    if (entry.active != nullptr && entry.active->slot == slot) {
      return Fail(ErrorCode::kInvalidArgument,
                  Label(name, slot) + ": is the active slot (version " +
                      entry.active->version.ToString() + "); activate the other slot first");
    }
    if (entry.loading[Index(slot)]) {
      return Fail(ErrorCode::kInvalidArgument, Label(name, slot) + ": a load is in progress");
    }
    dropped = std::move(entry.slots[Index(slot)]);
    entry.slots[Index(slot)] = nullptr;
    if (!entry.slots[0] && !entry.slots[1] && !entry.loading[0] && !entry.loading[1]) {
      models_.erase(it);
    }
  }
  // `dropped` dies here, outside the lock; requests still running on it keep it alive longer.
  return Ok();
}

std::shared_ptr<const ModelInstance> ModelHost::Active(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = models_.find(std::string(name));
  return it == models_.end() ? nullptr : it->second.active;
}

std::shared_ptr<const ModelInstance> ModelHost::InSlot(std::string_view name, Slot slot) const {
  std::lock_guard lock(mu_);
  auto it = models_.find(std::string(name));
  return it == models_.end() ? nullptr : it->second.slots[Index(slot)];
}

std::vector<ModelStatus> ModelHost::List() const {
  std::vector<ModelStatus> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, entry] : models_) {
      ModelStatus status;
      status.name = name;
      if (entry.active != nullptr) status.active = entry.active->slot;
      for (const auto& instance : entry.slots) {
        if (instance == nullptr) continue;
        status.slots.push_back(
            {instance->slot, instance->version, instance->variant_id, instance->bundle_sha256});
      }
      // A model whose first load is still running has nothing to show yet.
      if (!status.slots.empty()) out.push_back(std::move(status));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ModelStatus& a, const ModelStatus& b) { return a.name < b.name; });
  return out;
}

Result<InferOutcome> ModelHost::Infer(std::string_view name,
                                      const std::vector<Tensor>& inputs) const {
  // The snapshot is the request's model from here to the end, whatever Activate does meanwhile.
  auto instance = Active(name);
  if (instance == nullptr) {
    return Fail(ErrorCode::kNotFound,
                "model '" + std::string(name) + "': no active slot (not loaded or not activated)");
  }
  const auto start = std::chrono::steady_clock::now();
  auto outputs = instance->session->Run(inputs);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (!outputs) {
    return Unexpected(outputs.error().Wrap(Label(name, instance->slot) + " (version " +
                                           instance->version.ToString() + ")"));
  }
  InferOutcome outcome;
  outcome.outputs = std::move(outputs).value();
  outcome.instance = std::move(instance);
  outcome.infer_ms = std::chrono::duration<double, std::milli>(elapsed).count();
  return outcome;
}

}  // namespace edgefleet::runtime
