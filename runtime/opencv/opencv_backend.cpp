// The `opencv` backend plugin: ONNX models on OpenCV DNN 4.6, CPU.
//
// A shared library behind the backend plugin ABI (runtime/include/edgefleet/backend_plugin.h),
// built as lib/edgefleet/backends/libedgefleet_backend_opencv.so; the agent itself does not
// link OpenCV. It uses nothing of edgefleet but that header and the header-only
// runtime/plugin_kit.hpp (the C-boundary helpers the in-tree plugins share), and links nothing
// of it, like a vendor's plugin.
//
// The agent checks inputs (names, order, dtypes, shapes), outputs (dtype, shape, size) and the
// output limits below before and after every call, so this file checks only what is OpenCV's
// own (rank, dimension range, integers float32 cannot hold). Every OpenCV call that can throw
// is inside a try block: no exception crosses the C boundary.
#include <edgefleet/backend_plugin.h>

#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/core/version.hpp>
#include <opencv2/dnn.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/plugin_kit.hpp"

namespace {

// cv::Mat takes at most 32 dimensions (CV_MAX_DIM, from the C API headers).
constexpr std::size_t kMaxRank = 32;

// The default-domain opsets we claim. OpenCV 4.6's ONNX importer has no opset gate: it logs the
// model's opset and imports any number (measured: the digits model relabelled opset 1, 7, 9, 13,
// 17, 18, 19, 25 and 100 all load and run). What it cannot run is decided per node, so the real
// limit is the measured operator table. The range stops at 17, the newest opset of libonnx
// 1.12, whose conformance cases are what the table is measured with: above it nothing was
// measured, so nothing is claimed.
constexpr std::int32_t kMinOpset = 1;
constexpr std::int32_t kMaxOpset = 17;

constexpr ef_operator kOperators[] = {
#include "runtime/opencv/supported_ops.inc"
};

// Forms of the operators kOperators leaves unclaimed at some opsets (runtime/onnx_forms.hpp),
// measured on ONNX's conformance cases and on cases cut from real exports.
constexpr ef_form_claim kForms[] = {
#include "runtime/opencv/supported_forms.inc"
};

// Operators OpenCV 4.6 runs, but not with every output ONNX allows. Found by running ONNX's
// conformance cases under valgrind (tests/runtime/op_table_test.cpp runs them all).
constexpr ef_output_limit kOutputLimits[] = {
    {"", "Dropout", 1,
     "OpenCV imports Dropout as a pass-through layer with one input per output and writes past "
     "its buffers for the mask output (libonnx-testdata test_dropout_default_mask)"},
};

constexpr const char* kFormats[] = {"onnx"};
constexpr const char* kDevices[] = {"cpu"};

using edgefleet::runtime::plugin_kit::Check;
using edgefleet::runtime::plugin_kit::CopySpecs;
using edgefleet::runtime::plugin_kit::Declared;
using edgefleet::runtime::plugin_kit::DTypeName;
using edgefleet::runtime::plugin_kit::Failure;

std::string CvError(const cv::Exception& e) {
  // e.what() repeats file and line of OpenCV's source; err is the reason itself.
  return e.err.empty() ? std::string(e.what()) : e.err;
}

std::size_t ElementSize(std::int32_t dtype) {
  switch (dtype) {
    case EF_FLOAT64:
    case EF_INT64:
      return 8;
    case EF_FLOAT32:
    case EF_INT32:
      return 4;
    case EF_FLOAT16:
    case EF_INT16:
      return 2;
    case EF_INT8:
    case EF_UINT8:
    case EF_BOOL:
      return 1;
    default:
      return 0;
  }
}

// cv::setNumThreads is process-global: OpenCV has one worker pool for every net in the
// process. Sessions therefore cannot each have their own count; the last load that asks for a
// different count sets it for all. The agent loads every model with the one count from its
// config, so in practice the value is set once. The mutex only keeps the read-compare-set
// atomic when two loads race.
void ApplyThreads(int threads) {
  static std::mutex mu;
  static int applied = 0;  // guarded by mu; 0 = OpenCV's default, never set by us
  std::lock_guard<std::mutex> lock(mu);
  if (applied != threads) {
    cv::setNumThreads(threads);
    applied = threads;
  }
}

// Calls `each(T{})` with the C++ storage type of `dtype` for the types both conversions treat
// element by element; float32 (a plain copy) and float16 (bit conversion) are the callers' own.
template <typename Each>
Check ForEachStorageType(std::int32_t dtype, Each&& each) {
  switch (dtype) {
    case EF_FLOAT64:
      return each(double{});
    case EF_INT8:
      return each(std::int8_t{});
    case EF_UINT8:
    case EF_BOOL:
      return each(std::uint8_t{});
    case EF_INT16:
      return each(std::int16_t{});
    case EF_INT32:
      return each(std::int32_t{});
    case EF_INT64:
      return each(std::int64_t{});
    default:
      return Failure{EF_INVALID_ARGUMENT, "element type " + DTypeName(dtype) + " is not supported"};
  }
}

// Copies `t` into `dst` as float32. Integers beyond 2^24 have no exact float32 and are refused
// rather than silently rounded; float64 is narrowed (OpenCV itself computes in float32).
Check ConvertToFloat(const ef_tensor& t, std::size_t n, float* dst) {
  const auto* src = static_cast<const std::byte*>(t.data);
  if (t.spec.dtype == EF_FLOAT32) {
    std::memcpy(dst, src, n * sizeof(float));
    return std::nullopt;
  }
  if (t.spec.dtype == EF_FLOAT16) {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t bits;
      std::memcpy(&bits, src + i * 2, 2);
      dst[i] = static_cast<float>(cv::float16_t::fromBits(bits));
    }
    return std::nullopt;
  }
  auto each = [&](auto tag) -> Check {
    using T = decltype(tag);
    for (std::size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, src + i * sizeof(T), sizeof(T));
      if constexpr (std::is_integral_v<T> && sizeof(T) >= 4) {
        constexpr T kExact = T{1} << 24;
        if (v > kExact || v < -kExact) {
          return Failure{EF_UNSUPPORTED, "input \"" + std::string(t.spec.name) + "\": value " +
                                             std::to_string(v) + " at index " + std::to_string(i) +
                                             " has no exact float32, which OpenCV computes in"};
        }
      }
      dst[i] = static_cast<float>(v);
    }
    return std::nullopt;
  };
  return ForEachStorageType(t.spec.dtype, each);
}

// Writes OpenCV's float32 output as `dtype`. Integer outputs (ArgMax and the like, which OpenCV
// computes as floats) must hold exact in-range integers; anything else is a backend result the
// declared dtype cannot carry, reported instead of truncated.
Check ConvertFromFloat(const float* src, std::size_t n, std::int32_t dtype, const char* name,
                       std::byte* dst) {
  if (dtype == EF_FLOAT32) {
    std::memcpy(dst, src, n * sizeof(float));
    return std::nullopt;
  }
  if (dtype == EF_FLOAT16) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t bits = cv::float16_t(src[i]).bits();
      std::memcpy(dst + i * 2, &bits, 2);
    }
    return std::nullopt;
  }
  auto each = [&](auto tag) -> Check {
    using T = decltype(tag);
    for (std::size_t i = 0; i < n; ++i) {
      T v;
      if constexpr (std::is_integral_v<T>) {
        const double d = src[i];
        const bool is_bool = dtype == EF_BOOL;
        const double lo = is_bool ? 0 : static_cast<double>(std::numeric_limits<T>::min());
        const double hi = is_bool ? 1 : static_cast<double>(std::numeric_limits<T>::max());
        if (!(d >= lo && d <= hi) || d != std::trunc(d)) {
          return Failure{EF_INTERNAL, "output \"" + std::string(name) + "\": value " +
                                          std::to_string(d) + " at index " + std::to_string(i) +
                                          " is not a " + DTypeName(dtype)};
        }
        v = static_cast<T>(d);
      } else {
        v = static_cast<T>(src[i]);
      }
      std::memcpy(dst + i * sizeof(T), &v, sizeof(T));
    }
    return std::nullopt;
  };
  return ForEachStorageType(dtype, each);
}

// The shape reported for an output, written into `out` (returns the rank). OpenCV's Mat has at
// least two dimensions, so a rank-0 or rank-1 ONNX output comes back as [1,N] or [N,1]; when the
// declared rank differs and the declared shape (with its single wildcard filled in) has the same
// element count, the declared shape is the truth and is used. Otherwise OpenCV's own shape is
// returned as is. No allocation: this runs for every output of every request.
std::size_t OutputShape(const cv::Mat& m, const std::vector<std::int64_t>& declared,
                        std::array<std::int64_t, kMaxRank>& out) {
  const auto real_rank = static_cast<std::size_t>(m.dims);
  auto real = [&] {
    for (std::size_t d = 0; d < real_rank; ++d) out[d] = m.size[static_cast<int>(d)];
    return real_rank;
  };
  if (declared.size() == real_rank || declared.size() > kMaxRank) return real();
  const auto total = static_cast<std::int64_t>(m.total());
  std::int64_t known = 1;
  int wildcards = 0;
  for (auto d : declared) {
    if (d == -1) {
      ++wildcards;
    } else {
      known *= d;
    }
  }
  if (wildcards > 1 || known == 0) return real();
  if (wildcards == 0 && known != total) return real();
  if (wildcards == 1 && total % known != 0) return real();
  for (std::size_t d = 0; d < declared.size(); ++d) {
    out[d] = declared[d] == -1 ? total / known : declared[d];
  }
  return declared.size();
}

}  // namespace

struct ef_backend {
  ef_backend_info info{};
};

// How concurrent runs are served: a pool of `parallel_runs` nets, each a separate
// cv::dnn::Net loaded from the same bytes. A run takes a free net from the free list (and
// waits on the condition variable when all are busy), so no net is ever run by two threads, and
// with parallel_runs = 1 this is exactly "one net behind one lock".
//
// Chosen by measurement (bench/opencv_concurrency.cpp; bench/RESULTS.md, "OpenCV DNN: pool of
// nets vs one locked net"): on 2 cores with the digits CNN, one locked net served 2 and 4 client
// threads at 0.28-0.36x the pool's throughput with a p99 of 0.05-2.6 ms against the pool's
// 15-36 us, because every request queues behind the lock while the pool runs one forward per
// core; with one client, or with only one core free, the two are within 5 %. The pool costs
// one copy of the weights per net, so a model too large to hold twice is loaded with
// parallel_runs = 1, which is exactly the locked design.
struct ef_session {
  std::vector<Declared> inputs;
  std::vector<Declared> outputs;
  std::vector<cv::String> output_names;
  // Fixed after load. A net is used only by the thread that took its index off free.
  std::vector<cv::dnn::Net> nets;
  std::mutex free_mu;
  std::condition_variable free_cv;
  std::vector<std::size_t> free;  // guarded by free_mu: indices of nets not in use
};

namespace {

// Holds one net of the pool for the duration of a run.
class Lease {
 public:
  explicit Lease(ef_session& s) : session_(s) {
    std::unique_lock<std::mutex> lock(session_.free_mu);
    session_.free_cv.wait(lock, [this] { return !session_.free.empty(); });
    slot_ = session_.free.back();
    session_.free.pop_back();
  }
  ~Lease() {
    {
      std::lock_guard<std::mutex> lock(session_.free_mu);
      session_.free.push_back(slot_);
    }
    session_.free_cv.notify_one();
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  cv::dnn::Net& net() { return session_.nets[slot_]; }

 private:
  ef_session& session_;
  std::size_t slot_ = 0;
};

// Names are checked once at load so a wrong manifest fails there, not on every request.
Check CheckNames(cv::dnn::Net& net, const ef_session& session, const std::string& where) {
  // Layer 0 is OpenCV's input layer; its outputs are the graph inputs.
  cv::Ptr<cv::dnn::Layer> input_layer = net.getLayer(0);
  for (const auto& in : session.inputs) {
    if (input_layer->outputNameToIndex(in.name) < 0) {
      return Failure{EF_UNSUPPORTED, where + ": the graph has no input \"" + in.name + "\""};
    }
  }
  for (const auto& out : session.outputs) {
    if (net.getLayerId(out.name) < 0) {
      return Failure{EF_UNSUPPORTED,
                     where + ": opencv finds no output \"" + out.name + "\" in the graph"};
    }
  }
  return std::nullopt;
}

Check Load(const char* path, const ef_model_spec& spec, const ef_session_options& options,
           std::unique_ptr<ef_session>& session) {
  const std::string where(path);
  if (options.threads < 1 || options.parallel_runs < 1) {
    return Failure{EF_INVALID_ARGUMENT, "threads and parallel_runs must be at least 1"};
  }
  if (spec.format == nullptr || std::string_view(spec.format) != "onnx") {
    return Failure{EF_UNSUPPORTED,
                   "format \"" + std::string(spec.format ? spec.format : "") + "\" is not onnx"};
  }
  session = std::make_unique<ef_session>();
  session->inputs = CopySpecs(spec.inputs, spec.input_count);
  session->outputs = CopySpecs(spec.outputs, spec.output_count);
  if (session->inputs.empty() || session->outputs.empty()) {
    return Failure{EF_INVALID_ARGUMENT, "the model spec has no inputs or no outputs"};
  }
  for (const auto& out : session->outputs) session->output_names.push_back(out.name);
  std::string bytes;
  if (auto failed = edgefleet::runtime::plugin_kit::ReadModelFile(path, bytes)) return failed;

  ApplyThreads(options.threads);
  for (int i = 0; i < options.parallel_runs; ++i) {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
    if (net.empty()) {
      return Failure{EF_UNSUPPORTED, "cannot import " + where + ": the network is empty"};
    }
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    if (i == 0) {
      if (auto failed = CheckNames(net, *session, where)) return failed;
    }
    session->nets.push_back(std::move(net));
    session->free.push_back(static_cast<std::size_t>(i));
  }
  return std::nullopt;
}

// The inputs as float32 blobs (a header over the caller's float32 data, no copy).
Check MakeBlobs(const ef_session& session, const ef_tensor* inputs, std::size_t count,
                std::vector<cv::Mat>& blobs) {
  if (count != session.inputs.size()) {
    return Failure{EF_INVALID_ARGUMENT, "expected " + std::to_string(session.inputs.size()) +
                                            " input(s), found " + std::to_string(count)};
  }
  blobs.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const ef_tensor& t = inputs[i];
    if (t.spec.rank > kMaxRank) {
      return Failure{EF_INVALID_ARGUMENT, "input \"" + session.inputs[i].name + "\": rank " +
                                              std::to_string(t.spec.rank) +
                                              " is more than opencv's " + std::to_string(kMaxRank)};
    }
    std::array<int, kMaxRank> sizes{};
    std::size_t rank = 0;
    std::size_t n = 1;
    for (std::size_t d = 0; d < t.spec.rank; ++d) {
      const std::int64_t dim = t.spec.shape[d];
      if (dim < 0 || dim > std::numeric_limits<int>::max()) {
        return Failure{EF_INVALID_ARGUMENT, "input \"" + session.inputs[i].name + "\": dimension " +
                                                std::to_string(dim) + " is out of opencv's range"};
      }
      sizes[rank++] = static_cast<int>(dim);
      n *= static_cast<std::size_t>(dim);
    }
    if (rank == 0) sizes[rank++] = 1;  // a scalar; no rank-0 Mat
    const std::size_t element = ElementSize(t.spec.dtype);
    if (element == 0 || t.byte_size != n * element) {
      return Failure{EF_INVALID_ARGUMENT,
                     "input \"" + session.inputs[i].name + "\": data size does not fit"};
    }
    if (t.spec.dtype == EF_FLOAT32 && n > 0) {
      // No copy: setInput only reads it (it copies into the net's own input buffer), and the
      // tensor outlives the run that reads it.
      blobs.emplace_back(static_cast<int>(rank), sizes.data(), CV_32F,
                         const_cast<void*>(t.data));  // NOLINT: read-only use
      continue;
    }
    cv::Mat blob(static_cast<int>(rank), sizes.data(), CV_32F);
    if (auto failed = ConvertToFloat(t, n, blob.ptr<float>())) return failed;
    blobs.push_back(std::move(blob));
  }
  return std::nullopt;
}

// Converts each output straight into the buffer the agent allocates for it (the Mats alias the
// net's buffers, so this happens while the net is still leased).
Check WriteOutputs(const ef_session& session, std::span<const cv::Mat> outs,
                   const ef_output_sink& sink) {
  if (outs.size() != session.outputs.size()) {
    return Failure{EF_INTERNAL, "opencv returned " + std::to_string(outs.size()) +
                                    " outputs, expected " + std::to_string(session.outputs.size())};
  }
  for (std::size_t i = 0; i < outs.size(); ++i) {
    cv::Mat m = outs[i];
    if (m.depth() != CV_32F) m.convertTo(m, CV_32F);
    if (!m.isContinuous()) m = m.clone();
    const Declared& declared = session.outputs[i];
    std::array<std::int64_t, kMaxRank> shape;
    const std::size_t rank = OutputShape(m, declared.shape, shape);
    const ef_tensor_spec spec{declared.name.c_str(), declared.dtype, shape.data(), rank};
    const std::size_t bytes = m.total() * ElementSize(declared.dtype);
    void* buffer = sink.allocate(sink.context, i, &spec, bytes);
    if (buffer == nullptr) {
      return Failure{EF_INTERNAL, "the agent refused output \"" + declared.name + "\""};
    }
    if (auto failed = ConvertFromFloat(m.ptr<float>(), m.total(), declared.dtype,
                                       declared.name.c_str(), static_cast<std::byte*>(buffer))) {
      return failed;
    }
  }
  return std::nullopt;
}

Check Run(ef_session& session, const ef_tensor* inputs, std::size_t count,
          const ef_output_sink& sink) {
  std::vector<cv::Mat> blobs;
  if (auto failed = MakeBlobs(session, inputs, count, blobs)) return failed;
  Lease lease(session);
  cv::dnn::Net& net = lease.net();
  for (std::size_t i = 0; i < blobs.size(); ++i) net.setInput(blobs[i], session.inputs[i].name);
  if (session.output_names.size() == 1) {
    // One output: forward(name) returns it without the vector forward's per-call output array
    // set-up, about half of what OpenCV spends around a small model's layers.
    const cv::Mat out = net.forward(session.output_names[0]);
    return WriteOutputs(session, {&out, 1}, sink);
  }
  std::vector<cv::Mat> outs;
  net.forward(outs, session.output_names);
  return WriteOutputs(session, outs, sink);
}

// A one-layer net built in code (no importer involved): ReLU on four values.
Check SelfTest() {
  cv::dnn::Net net;
  cv::dnn::LayerParams params;
  params.name = "relu";
  params.type = "ReLU";
  net.addLayerToPrev(params.name, params.type, params);
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const int sizes[] = {1, 1, 1, 4};
  cv::Mat input(4, sizes, CV_32F);
  const float values[] = {-1.5F, 0.0F, 2.0F, -3.0F};
  const float expected[] = {0.0F, 0.0F, 2.0F, 0.0F};
  std::memcpy(input.ptr<float>(), values, sizeof(values));
  net.setInput(input);
  const cv::Mat out = net.forward();
  if (out.total() != 4 || out.depth() != CV_32F) {
    return Failure{EF_INTERNAL, "a ReLU of 4 values gave " + std::to_string(out.total())};
  }
  for (std::size_t i = 0; i < 4; ++i) {
    if (out.ptr<float>()[i] != expected[i]) {
      return Failure{EF_INTERNAL, "a ReLU gave " + std::to_string(out.ptr<float>()[i]) +
                                      " at index " + std::to_string(i) + ", expected " +
                                      std::to_string(expected[i])};
    }
  }
  return std::nullopt;
}

// Runs `step`, turning every exception into a failure whose message is `prefix` and the reason.
template <typename Step>
std::int32_t Guarded(Step&& step, const std::string& prefix, char* err, std::size_t err_size) {
  return edgefleet::runtime::plugin_kit::Guarded(
      std::forward<Step>(step), prefix, err, err_size, [](const std::exception& e) {
        const auto* cv_error = dynamic_cast<const cv::Exception*>(&e);
        return cv_error ? CvError(*cv_error) : std::string(e.what());
      });
}

}  // namespace

EDGEFLEET_PLUGIN_KIT_COMMON_EXPORTS()

extern "C" EF_BACKEND_EXPORT const ef_form_claim* edgefleet_backend_forms(const ef_backend*,
                                                                          size_t* count) {
  *count = std::size(kForms);
  return kForms;
}

extern "C" {

EF_BACKEND_EXPORT int32_t edgefleet_backend_create(const char* /*options_json*/,
                                                   ef_backend** backend, char* err,
                                                   size_t err_size) {
  return Guarded(
      [&]() -> Check {
        auto made = std::make_unique<ef_backend>();
        ef_backend_info& info = made->info;
        info.name = "opencv";
        info.version = CV_VERSION;
        info.engine = "OpenCV DNN " CV_VERSION " (CPU)";
        info.formats = kFormats;
        info.format_count = std::size(kFormats);
        info.devices = kDevices;
        info.device_count = std::size(kDevices);
        info.min_opset = kMinOpset;
        info.max_opset = kMaxOpset;
        info.operators = kOperators;
        info.operator_count = std::size(kOperators);
        info.output_limits = kOutputLimits;
        info.output_limit_count = std::size(kOutputLimits);
        *backend = made.release();
        return std::nullopt;
      },
      "create: ", err, err_size);
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_self_test(ef_backend* /*backend*/, char* err,
                                                      size_t err_size) {
  return Guarded(SelfTest, "", err, err_size);
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_load(ef_backend* /*backend*/, const char* model_path,
                                                 const ef_model_spec* spec,
                                                 const ef_session_options* options,
                                                 ef_session** session, char* err, size_t err_size) {
  std::unique_ptr<ef_session> made;
  const std::string prefix = "cannot import " + std::string(model_path) + ": ";
  const std::int32_t status =
      Guarded([&] { return Load(model_path, *spec, *options, made); }, prefix, err, err_size);
  // An importer exception is the model's fault, not an engine failure.
  if (status == EF_INTERNAL) return EF_UNSUPPORTED;
  if (status == EF_OK) *session = made.release();
  return status;
}

EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session) { delete session; }

}  // extern "C"
