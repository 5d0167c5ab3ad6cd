// Backend libraries behind the C++ Backend interface (see runtime/plugin_backend.hpp).
#include "runtime/plugin_backend.hpp"

#include <dlfcn.h>
#include <edgefleet/backend_plugin.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <map>
#include <span>
#include <utility>

#include "manifests/log_value.hpp"
#include "runtime/compat.hpp"

namespace edgefleet::runtime {
namespace {

constexpr std::size_t kErrorBytes = 1024;
// Enough for every operator table measured so far (OpenCV's has a few hundred rows); a larger
// count is a garbage pointer or count, not a table.
constexpr std::size_t kMaxTableRows = 100000;

// The library's functions, looked up by name. Each name is listed once, in kSymbols' order.
struct Functions {
  decltype(&edgefleet_backend_abi_version) abi_version = nullptr;
  decltype(&edgefleet_backend_create) create = nullptr;
  decltype(&edgefleet_backend_describe) describe = nullptr;
  decltype(&edgefleet_backend_self_test) self_test = nullptr;
  decltype(&edgefleet_backend_load) load = nullptr;
  decltype(&edgefleet_backend_run) run = nullptr;
  decltype(&edgefleet_backend_release_session) release_session = nullptr;
  decltype(&edgefleet_backend_destroy) destroy = nullptr;
  decltype(&edgefleet_backend_forms) forms = nullptr;  // optional
};

// Owns the dlopen handle and the backend made from it; shared by the Backend and its sessions.
class Library {
 public:
  Library(void* handle, Functions fns) : handle_(handle), fns_(fns) {}
  ~Library() {
    if (backend_ != nullptr) fns_.destroy(backend_);
    dlclose(handle_);  // RTLD_NODELETE: the code stays mapped
  }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  const Functions& fns() const { return fns_; }
  ef_backend* backend() const { return backend_; }
  void set_backend(ef_backend* backend) { backend_ = backend; }

 private:
  void* handle_;
  Functions fns_;
  ef_backend* backend_ = nullptr;
};

std::string ErrorText(const std::array<char, kErrorBytes>& buffer) {
  const std::size_t n = strnlen(buffer.data(), buffer.size());
  if (n == 0) return "(no reason given)";
  return manifests::SafeText(std::string_view(buffer.data(), n));
}

ErrorCode ToErrorCode(std::int32_t status) {
  switch (status) {
    case EF_INVALID_ARGUMENT:
      return ErrorCode::kInvalidArgument;
    case EF_UNSUPPORTED:
      return ErrorCode::kUnsupported;
    case EF_IO:
      return ErrorCode::kIo;
    case EF_LIMIT:
      return ErrorCode::kLimit;
    default:
      return ErrorCode::kInternal;
  }
}

std::int32_t ToEfDType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return EF_FLOAT32;
    case DType::kFloat64:
      return EF_FLOAT64;
    case DType::kFloat16:
      return EF_FLOAT16;
    case DType::kInt8:
      return EF_INT8;
    case DType::kUInt8:
      return EF_UINT8;
    case DType::kInt16:
      return EF_INT16;
    case DType::kInt32:
      return EF_INT32;
    case DType::kInt64:
      return EF_INT64;
    case DType::kBool:
      return EF_BOOL;
  }
  return 0;
}

std::string ShownDType(std::int32_t ef) {
  for (DType d : {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kInt8, DType::kUInt8,
                  DType::kInt16, DType::kInt32, DType::kInt64, DType::kBool}) {
    if (ToEfDType(d) == ef) return std::string(ToString(d));
  }
  return "element type " + std::to_string(ef);
}

// A C string from the library's description: present, and at most `max` bytes.
Result<std::string> InfoString(const char* text, std::string_view field, std::size_t max = 256) {
  if (text == nullptr) return Fail(ErrorCode::kInvalidArgument, std::string(field) + " is NULL");
  const std::size_t n = strnlen(text, max + 1);
  if (n > max) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(field) + " is longer than " + std::to_string(max) + " bytes");
  }
  return std::string(text, n);
}

Result<std::vector<std::string>> InfoList(const char* const* items, std::size_t count,
                                          std::string_view field) {
  if (count == 0 || items == nullptr || count > 64) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(field) + ": expected 1 to 64 entries, found " + std::to_string(count));
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i) {
    EF_ASSIGN_OR_RETURN(auto item,
                        InfoString(items[i], std::string(field) + "[" + std::to_string(i) + "]"));
    if (item.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string(field) + "[" + std::to_string(i) + "] is empty");
    }
    out.push_back(std::move(item));
  }
  return out;
}

bool ValidBackendName(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// The library's description as BackendCapabilities, every field checked.
Result<BackendCapabilities> ReadDescription(const ef_backend_info* info) {
  if (info == nullptr) return Fail(ErrorCode::kInvalidArgument, "describe returned NULL");
  BackendCapabilities caps;
  EF_ASSIGN_OR_RETURN(caps.name, InfoString(info->name, "name", 32));
  if (!ValidBackendName(caps.name)) {
    return Fail(ErrorCode::kInvalidArgument,
                "name " + manifests::QuoteName(caps.name, '"') + " is not [a-z0-9_-]{1,32}");
  }
  EF_ASSIGN_OR_RETURN(auto version, InfoString(info->version, "version", 64));
  auto semver = manifests::SemVer::Parse(version);
  if (!semver) {
    return Fail(ErrorCode::kInvalidArgument, "version " + manifests::QuoteName(version, '"') +
                                                 " is not a SemVer: " + semver.error().message);
  }
  caps.version = *semver;
  EF_ASSIGN_OR_RETURN(caps.engine, InfoString(info->engine, "engine"));
  EF_ASSIGN_OR_RETURN(caps.formats, InfoList(info->formats, info->format_count, "formats"));
  EF_ASSIGN_OR_RETURN(caps.targets, InfoList(info->devices, info->device_count, "devices"));
  caps.min_opset = info->min_opset;
  caps.max_opset = info->max_opset;
  if (caps.min_opset > caps.max_opset) {
    return Fail(ErrorCode::kInvalidArgument, "min_opset " + std::to_string(caps.min_opset) +
                                                 " is above max_opset " +
                                                 std::to_string(caps.max_opset));
  }
  if (info->operator_count > kMaxTableRows ||
      (info->operator_count > 0 && info->operators == nullptr)) {
    return Fail(ErrorCode::kInvalidArgument,
                "operators: " + std::to_string(info->operator_count) + " rows at " +
                    (info->operators == nullptr ? "NULL" : "a pointer") + " (at most " +
                    std::to_string(kMaxTableRows) + ")");
  }
  for (std::size_t i = 0; i < info->operator_count; ++i) {
    const ef_operator& row = info->operators[i];
    const std::string where = "operators[" + std::to_string(i) + "]";
    OperatorSupport op;
    EF_ASSIGN_OR_RETURN(op.domain, InfoString(row.domain, where + ".domain"));
    EF_ASSIGN_OR_RETURN(op.op, InfoString(row.op, where + ".op"));
    op.min_opset = row.min_opset;
    op.max_opset = row.max_opset;
    caps.operators.push_back(std::move(op));
  }
  if (info->output_limit_count > kMaxTableRows ||
      (info->output_limit_count > 0 && info->output_limits == nullptr)) {
    return Fail(ErrorCode::kInvalidArgument, "output_limits: bad count or NULL table");
  }
  for (std::size_t i = 0; i < info->output_limit_count; ++i) {
    const ef_output_limit& row = info->output_limits[i];
    const std::string where = "output_limits[" + std::to_string(i) + "]";
    OutputLimit limit;
    EF_ASSIGN_OR_RETURN(limit.domain, InfoString(row.domain, where + ".domain"));
    EF_ASSIGN_OR_RETURN(limit.op, InfoString(row.op, where + ".op"));
    EF_ASSIGN_OR_RETURN(limit.why, InfoString(row.why, where + ".why", 4096));
    limit.max_outputs = row.max_outputs;
    caps.output_limits.push_back(std::move(limit));
  }
  return caps;
}

// The optional form table (edgefleet_backend_forms), every row checked.
Status ReadForms(const ef_form_claim* rows, std::size_t count, BackendCapabilities& caps) {
  if (count > kMaxTableRows || (count > 0 && rows == nullptr)) {
    return Fail(ErrorCode::kInvalidArgument, "forms: " + std::to_string(count) + " rows at " +
                                                 (rows == nullptr ? "NULL" : "a pointer") +
                                                 " (at most " + std::to_string(kMaxTableRows) +
                                                 ")");
  }
  for (std::size_t i = 0; i < count; ++i) {
    const ef_form_claim& row = rows[i];
    const std::string where = "forms[" + std::to_string(i) + "]";
    FormClaim claim;
    EF_ASSIGN_OR_RETURN(claim.domain, InfoString(row.domain, where + ".domain"));
    EF_ASSIGN_OR_RETURN(claim.op, InfoString(row.op, where + ".op"));
    EF_ASSIGN_OR_RETURN(claim.form, InfoString(row.form, where + ".form", 4096));
    EF_ASSIGN_OR_RETURN(claim.why, InfoString(row.why, where + ".why", 4096));
    if (row.verdict != EF_FORM_RUNS && row.verdict != EF_FORM_FAILS) {
      return Fail(
          ErrorCode::kInvalidArgument,
          where + ".verdict: expected 1 (runs) or 2 (fails), found " + std::to_string(row.verdict));
    }
    if (row.min_opset > row.max_opset) {
      return Fail(ErrorCode::kInvalidArgument, where + ": min_opset above max_opset");
    }
    claim.min_opset = row.min_opset;
    claim.max_opset = row.max_opset;
    claim.runs = row.verdict == EF_FORM_RUNS;
    caps.forms.push_back(std::move(claim));
  }
  return Ok();
}

Result<std::vector<TensorInfo>> InfosFromSpecs(const std::vector<manifests::TensorSpec>& specs,
                                               std::string_view what) {
  std::vector<TensorInfo> infos;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto dtype = ParseDType(specs[i].dtype);
    if (!dtype) {
      return Fail(ErrorCode::kInvalidArgument, std::string(what) + "[" + std::to_string(i) + "] " +
                                                   manifests::QuoteName(specs[i].name, '"') + ": " +
                                                   dtype.error().message);
    }
    infos.push_back({specs[i].name, *dtype, specs[i].shape});
  }
  return infos;
}

std::vector<ef_tensor_spec> ToSpecs(const std::vector<TensorInfo>& infos) {
  std::vector<ef_tensor_spec> specs;
  for (const auto& info : infos) {
    specs.push_back(
        {info.name.c_str(), ToEfDType(info.dtype), info.shape.data(), info.shape.size()});
  }
  return specs;
}

// Collects a run's outputs for the library's allocate calls; the first refusal is kept.
struct OutputCollector {
  const std::vector<TensorInfo>* declared = nullptr;
  std::vector<Tensor> tensors;
  std::string refusal;

  static void* Allocate(void* context, std::size_t index, const ef_tensor_spec* spec,
                        std::size_t byte_size) {
    auto* self = static_cast<OutputCollector*>(context);
    return self->Take(index, spec, byte_size);
  }

  void* Take(std::size_t index, const ef_tensor_spec* spec, std::size_t byte_size) {
    if (!refusal.empty()) return nullptr;
    const auto& outs = *declared;
    if (spec == nullptr || index != tensors.size() || index >= outs.size()) {
      refusal = "output #" + std::to_string(index) + " allocated out of order (expected #" +
                std::to_string(tensors.size()) + " of " + std::to_string(outs.size()) + ")";
      return nullptr;
    }
    const TensorInfo& info = outs[index];
    // Built only on failure: this runs for every output of every request.
    auto what = [&] { return "output " + manifests::QuoteName(info.name, '"'); };
    if (spec->dtype != ToEfDType(info.dtype)) {
      refusal = what() + ": the backend gave " + ShownDType(spec->dtype) + ", the model declares " +
                std::string(ToString(info.dtype));
      return nullptr;
    }
    if (spec->rank > 64 || (spec->rank > 0 && spec->shape == nullptr)) {
      refusal = what() + ": bad shape (rank " + std::to_string(spec->rank) + ")";
      return nullptr;
    }
    const std::span<const std::int64_t> shape(spec->shape, spec->rank);
    if (!ShapeMatches(shape, info.shape)) {
      refusal = what() + ": the backend gave shape " + ShapeToString(shape) +
                ", the model declares " + ShapeToString(info.shape);
      return nullptr;
    }
    auto count = ElementCount(shape);
    if (!count || *count > kMaxPluginOutputBytes / ElementSize(info.dtype) ||
        *count * ElementSize(info.dtype) != byte_size) {
      refusal = what() + ": " + std::to_string(byte_size) + " bytes do not fit shape " +
                ShapeToString(shape) + " (or are over " +
                std::to_string(kMaxPluginOutputBytes >> 20) + " MiB)";
      return nullptr;
    }
    Tensor& t = tensors.emplace_back();
    t.name = info.name;
    t.dtype = info.dtype;
    t.shape.assign(shape.begin(), shape.end());
    t.data.resize(byte_size);
    // A zero-size output still needs a pointer the library may write nothing to.
    return t.data.empty() ? static_cast<void*>(this) : static_cast<void*>(t.data.data());
  }
};

class PluginSession final : public Session {
 public:
  PluginSession(std::shared_ptr<Library> library, std::string backend_name,
                std::vector<TensorInfo> inputs, std::vector<TensorInfo> outputs)
      : library_(std::move(library)),
        backend_name_(std::move(backend_name)),
        inputs_(std::move(inputs)),
        outputs_(std::move(outputs)) {}
  ~PluginSession() override {
    if (session_ != nullptr) library_->fns().release_session(session_);
  }
  PluginSession(const PluginSession&) = delete;
  PluginSession& operator=(const PluginSession&) = delete;

  void set_session(ef_session* session) { session_ = session; }
  const std::vector<TensorInfo>& inputs() const override { return inputs_; }
  const std::vector<TensorInfo>& outputs() const override { return outputs_; }

  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& given) override {
    // Models with few inputs (nearly all) need no heap allocation for the call itself: on a
    // small model the forward takes ~15 us, and each allocation is a visible share of the
    // adapter's cost (bench/inference_overhead.sh, limit 1.03x over the engine's direct call).
    std::array<const Tensor*, kInlineInputs> inline_order{};
    std::array<ef_tensor, kInlineInputs> inline_tensors{};
    std::vector<const Tensor*> heap_order;
    std::vector<ef_tensor> heap_tensors;
    const std::size_t n = inputs_.size();
    if (n > kInlineInputs) {
      heap_order.assign(n, nullptr);
      heap_tensors.resize(n);
    }
    const std::span<const Tensor*> ordered = n > kInlineInputs
                                                 ? std::span<const Tensor*>(heap_order)
                                                 : std::span(inline_order.data(), n);
    const std::span<ef_tensor> tensors = n > kInlineInputs ? std::span<ef_tensor>(heap_tensors)
                                                           : std::span(inline_tensors.data(), n);
    EF_RETURN_IF_ERROR(Order(given, ordered));
    for (std::size_t i = 0; i < n; ++i) {
      const Tensor& t = *ordered[i];
      tensors[i].spec = {inputs_[i].name.c_str(), ToEfDType(t.dtype), t.shape.data(),
                         t.shape.size()};
      tensors[i].data = t.data.data();
      tensors[i].byte_size = t.data.size();
    }
    OutputCollector collector;
    collector.declared = &outputs_;
    collector.tensors.reserve(outputs_.size());
    const ef_output_sink sink{&collector, &OutputCollector::Allocate};
    std::array<char, kErrorBytes> err;  // written only on failure
    err[0] = '\0';
    const std::int32_t status = library_->fns().run(session_, tensors.data(), tensors.size(), &sink,
                                                    err.data(), err.size());
    if (!collector.refusal.empty()) {
      return Fail(ErrorCode::kInternal, backend_name_ + ": " + collector.refusal);
    }
    if (status != EF_OK) return Fail(ToErrorCode(status), backend_name_ + ": " + ErrorText(err));
    if (collector.tensors.size() != outputs_.size()) {
      return Fail(ErrorCode::kInternal,
                  backend_name_ + " returned " + std::to_string(collector.tensors.size()) +
                      " output(s), the model declares " + std::to_string(outputs_.size()));
    }
    return std::move(collector.tensors);
  }

 private:
  static constexpr std::size_t kInlineInputs = 8;

  // Checks inputs against inputs() and puts them in declaration order.
  // `ordered` has one null entry per input.
  Status Order(const std::vector<Tensor>& given, std::span<const Tensor*> ordered) const {
    if (given.size() != inputs_.size()) {
      return Fail(ErrorCode::kInvalidArgument, "expected " + std::to_string(inputs_.size()) +
                                                   " input(s), found " +
                                                   std::to_string(given.size()));
    }
    for (std::size_t i = 0; i < given.size(); ++i) {
      std::size_t index = i;
      if (!given[i].name.empty()) {
        index = inputs_.size();
        for (std::size_t j = 0; j < inputs_.size(); ++j) {
          if (inputs_[j].name == given[i].name) index = j;
        }
        if (index == inputs_.size()) {
          std::string expected;
          for (const auto& in : inputs_) {
            expected += (expected.empty() ? "" : ", ") + manifests::QuoteName(in.name, '"');
          }
          return Fail(ErrorCode::kInvalidArgument,
                      "input " + manifests::QuoteName(given[i].name, '"') +
                          ": not an input of this model (expected " + expected + ")");
        }
      }
      if (ordered[index] != nullptr) {
        return Fail(
            ErrorCode::kInvalidArgument,
            "input " + manifests::QuoteName(inputs_[index].name, '"') + ": given more than once");
      }
      ordered[index] = &given[i];
    }
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      const TensorInfo& info = inputs_[i];
      const Tensor& t = *ordered[i];
      // Built only on failure: this runs on every request.
      auto what = [&] { return "input " + manifests::QuoteName(info.name, '"'); };
      if (t.dtype != info.dtype) {
        return Fail(ErrorCode::kInvalidArgument, what() + ": expected dtype " +
                                                     std::string(ToString(info.dtype)) +
                                                     ", found " + std::string(ToString(t.dtype)));
      }
      if (!ShapeMatches(t.shape, info.shape)) {
        return Fail(ErrorCode::kInvalidArgument, what() + ": expected shape " +
                                                     ShapeToString(info.shape) + ", found " +
                                                     ShapeToString(t.shape));
      }
      // An empty batch (or any empty dynamic dimension) is the client's mistake, said here:
      // engines fail on it, and their failure would count as a server error against the model
      // (a client sending batch 0 during a watch window could roll back a good model).
      for (std::size_t d = 0; d < t.shape.size(); ++d) {
        if (t.shape[d] == 0 && info.shape[d] != 0) {
          return Fail(ErrorCode::kInvalidArgument, what() + ": dimension " + std::to_string(d) +
                                                       " is 0 (shape " + ShapeToString(t.shape) +
                                                       "); at least 1 is needed");
        }
      }
      if (auto valid = t.Validate(); !valid) {
        return Fail(ErrorCode::kInvalidArgument, what() + ": " + valid.error().message);
      }
    }
    return Ok();
  }

  std::shared_ptr<Library> library_;
  std::string backend_name_;
  std::vector<TensorInfo> inputs_;
  std::vector<TensorInfo> outputs_;
  ef_session* session_ = nullptr;  // set once after load, before the session is shared
};

// Node shapes the backend declared it cannot run, checked on the real file before the library
// sees it (the agent checked them in CheckGraph already; this covers every other load path).
Status CheckOutputLimits(const std::filesystem::path& model_file, const BackendCapabilities& caps) {
  if (caps.output_limits.empty()) return Ok();
  std::ifstream in(model_file, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, model_file.string() + ": cannot open");
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  // Bytes that are not a ModelProto are left to the backend's importer, which refuses them.
  auto nodes = OnnxNodes(bytes, model_file.string());
  if (!nodes) return Ok();
  const std::string label = caps.name + " " + caps.version.ToString();
  auto problems = OutputLimitProblems(*nodes, caps.output_limits, label);
  if (problems.empty()) return Ok();
  std::string message = model_file.string() + ": ";
  for (std::size_t i = 0; i < problems.size(); ++i) message += (i == 0 ? "" : "; ") + problems[i];
  return Fail(ErrorCode::kUnsupported, message);
}

class PluginBackend final : public Backend {
 public:
  PluginBackend(std::shared_ptr<Library> library, BackendCapabilities caps)
      : library_(std::move(library)), caps_(std::move(caps)) {}

  const BackendCapabilities& capabilities() const override { return caps_; }

  Result<std::unique_ptr<Session>> Load(const std::filesystem::path& model_file,
                                        const manifests::Variant& variant,
                                        const SessionOptions& options) override {
    if (options.threads < 1 || options.parallel_runs < 1) {
      return Fail(ErrorCode::kInvalidArgument,
                  "threads and parallel_runs must be at least 1, found " +
                      std::to_string(options.threads) + " and " +
                      std::to_string(options.parallel_runs));
    }
    if (std::find(caps_.formats.begin(), caps_.formats.end(), variant.format) ==
        caps_.formats.end()) {
      return Fail(ErrorCode::kUnsupported, "variant " + manifests::QuoteName(variant.id, '"') +
                                               ": " + caps_.name + " does not load format " +
                                               manifests::QuoteName(variant.format, '"'));
    }
    EF_ASSIGN_OR_RETURN(auto inputs, InfosFromSpecs(variant.inputs, "inputs"));
    EF_ASSIGN_OR_RETURN(auto outputs, InfosFromSpecs(variant.outputs, "outputs"));
    if (inputs.empty() || outputs.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "variant " + manifests::QuoteName(variant.id, '"') +
                                                   " declares no inputs or no outputs");
    }
    if (variant.format == "onnx") EF_RETURN_IF_ERROR(CheckOutputLimits(model_file, caps_));

    auto session = std::make_unique<PluginSession>(library_, caps_.name, std::move(inputs),
                                                   std::move(outputs));
    const auto in_specs = ToSpecs(session->inputs());
    const auto out_specs = ToSpecs(session->outputs());
    const ef_model_spec spec{variant.id.c_str(), variant.format.c_str(), variant.opset,
                             in_specs.data(),    in_specs.size(),        out_specs.data(),
                             out_specs.size()};
    const ef_session_options opts{options.threads, options.parallel_runs,
                                  options.backend_options_json.c_str()};
    const std::string path = model_file.string();
    ef_session* handle = nullptr;
    std::array<char, kErrorBytes> err{};
    const std::int32_t status = library_->fns().load(library_->backend(), path.c_str(), &spec,
                                                     &opts, &handle, err.data(), err.size());
    if (status != EF_OK) return Fail(ToErrorCode(status), caps_.name + ": " + ErrorText(err));
    if (handle == nullptr) {
      return Fail(ErrorCode::kInternal, caps_.name + ": load succeeded without a session");
    }
    session->set_session(handle);
    return std::unique_ptr<Session>(std::move(session));
  }

 private:
  std::shared_ptr<Library> library_;
  BackendCapabilities caps_;  // fixed after construction
};

template <typename T>
bool Lookup(void* handle, const char* name, T& fn, std::vector<std::string>& missing) {
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) {
    missing.emplace_back(name);
    return false;
  }
  fn = reinterpret_cast<T>(symbol);  // NOLINT: dlsym's contract
  return true;
}

// Writable by anyone but its owner (and not a sticky directory's entry we own): whoever can
// write it can run code in the agent.
std::optional<std::string> WritableByOthers(const std::filesystem::path& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return std::nullopt;  // open reports the error
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return path.string() + " is writable by group or others (mode " +
           std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
           std::to_string(st.st_mode & 7) + ")";
  }
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<Backend>> LoadBackendPlugin(const std::filesystem::path& library,
                                                   std::string_view options_json) {
  const std::string shown = manifests::QuoteName(library.string());
  if (auto writable = WritableByOthers(library)) {
    return Fail(ErrorCode::kInvalidArgument,
                "backend library " + shown + ": refused, " + manifests::SafeText(*writable));
  }
  dlerror();
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Fail(ErrorCode::kIo, "backend library " + shown + ": cannot load: " +
                                    manifests::SafeText(why != nullptr ? why : "dlopen failed"));
  }
  Functions fns;
  std::vector<std::string> missing;
  Lookup(handle, "edgefleet_backend_abi_version", fns.abi_version, missing);
  Lookup(handle, "edgefleet_backend_create", fns.create, missing);
  Lookup(handle, "edgefleet_backend_describe", fns.describe, missing);
  Lookup(handle, "edgefleet_backend_self_test", fns.self_test, missing);
  Lookup(handle, "edgefleet_backend_load", fns.load, missing);
  Lookup(handle, "edgefleet_backend_run", fns.run, missing);
  Lookup(handle, "edgefleet_backend_release_session", fns.release_session, missing);
  Lookup(handle, "edgefleet_backend_destroy", fns.destroy, missing);
  // Optional: not in `missing`.
  fns.forms = reinterpret_cast<decltype(fns.forms)>(  // NOLINT: dlsym's contract
      dlsym(handle, "edgefleet_backend_forms"));
  if (!missing.empty()) {
    dlclose(handle);
    std::string names;
    for (const auto& name : missing) names += (names.empty() ? "" : ", ") + name;
    return Fail(ErrorCode::kUnsupported, "backend library " + shown + ": missing symbol" +
                                             (missing.size() > 1 ? "s " : " ") + names +
                                             " (ABI version " +
                                             std::to_string(EDGEFLEET_BACKEND_ABI_VERSION) +
                                             " needs all of edgefleet/backend_plugin.h)");
  }
  const std::uint32_t abi = fns.abi_version();
  if (abi != EDGEFLEET_BACKEND_ABI_VERSION) {
    dlclose(handle);
    return Fail(ErrorCode::kUnsupported, "backend library " + shown +
                                             ": built for backend ABI version " +
                                             std::to_string(abi) + ", this agent loads version " +
                                             std::to_string(EDGEFLEET_BACKEND_ABI_VERSION));
  }
  auto lib = std::make_shared<Library>(handle, fns);
  const std::string options(options_json);
  std::array<char, kErrorBytes> err{};
  ef_backend* backend = nullptr;
  const std::int32_t created = fns.create(options.c_str(), &backend, err.data(), err.size());
  if (created != EF_OK || backend == nullptr) {
    return Fail(ErrorCode::kInternal,
                "backend library " + shown + ": create failed: " +
                    (created != EF_OK ? ErrorText(err) : std::string("no backend returned")));
  }
  lib->set_backend(backend);
  auto caps = ReadDescription(fns.describe(backend));
  if (!caps) {
    return Fail(ErrorCode::kInvalidArgument,
                "backend library " + shown + ": bad description: " + caps.error().message);
  }
  if (fns.forms != nullptr) {
    std::size_t count = 0;
    const ef_form_claim* rows = fns.forms(backend, &count);
    if (auto read = ReadForms(rows, count, *caps); !read) {
      return Fail(ErrorCode::kInvalidArgument,
                  "backend library " + shown + ": bad form table: " + read.error().message);
    }
  }
  err.fill('\0');
  if (const std::int32_t tested = fns.self_test(backend, err.data(), err.size()); tested != EF_OK) {
    return Fail(ErrorCode::kInternal, "backend library " + shown + " (" + caps->name + " " +
                                          caps->version.ToString() +
                                          "): self-test failed: " + ErrorText(err));
  }
  return std::unique_ptr<Backend>(std::make_unique<PluginBackend>(std::move(lib), *caps));
}

std::filesystem::path DefaultBackendsDir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/lib/edgefleet/backends";
  return (exe.parent_path() / ".." / "lib" / "edgefleet" / "backends").lexically_normal();
}

std::string BackendNameFromFile(const std::filesystem::path& library) {
  constexpr std::string_view kPrefix = "libedgefleet_backend_";
  const std::string name = library.filename().string();
  if (!name.starts_with(kPrefix) || !name.ends_with(".so")) return {};
  return name.substr(kPrefix.size(), name.size() - kPrefix.size() - 3);
}

Result<PluginScan> LoadBackendPlugins(const std::filesystem::path& dir,
                                      std::string_view options_json,
                                      const std::vector<std::string>& wanted) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& path = it->path();
    if (path.extension() == ".so" && it->is_regular_file()) files.push_back(path);
  }
  if (ec) {
    const auto code =
        ec == std::errc::no_such_file_or_directory ? ErrorCode::kNotFound : ErrorCode::kIo;
    return Fail(code, "backends_dir " + manifests::QuoteName(dir.string()) + ": " + ec.message());
  }
  std::sort(files.begin(), files.end());
  PluginScan scan;
  if (auto writable = WritableByOthers(dir)) {
    for (const auto& file : files) {
      scan.refused.push_back({file, "backend library " + manifests::QuoteName(file.string()) +
                                        ": refused, " + manifests::SafeText(*writable)});
    }
    return scan;
  }
  std::map<std::string, std::filesystem::path> loaded;  // backend name -> library
  for (const auto& file : files) {
    const std::string announced = BackendNameFromFile(file);
    if (!wanted.empty() && !announced.empty() &&
        std::find(wanted.begin(), wanted.end(), announced) == wanted.end()) {
      scan.not_opened.push_back(file);
      continue;
    }
    auto backend = LoadBackendPlugin(file, options_json);
    if (!backend) {
      scan.refused.push_back({file, backend.error().message});
      continue;
    }
    const std::string& name = (*backend)->capabilities().name;
    if (const auto [it, fresh] = loaded.emplace(name, file); !fresh) {
      scan.refused.push_back({file, "backend library " + manifests::QuoteName(file.string()) +
                                        ": backend " + manifests::QuoteName(name, '"') +
                                        " is already loaded from " +
                                        manifests::QuoteName(it->second.string())});
      continue;
    }
    scan.backends.push_back(std::move(*backend));
    scan.libraries.push_back(file);
  }
  return scan;
}

}  // namespace edgefleet::runtime
