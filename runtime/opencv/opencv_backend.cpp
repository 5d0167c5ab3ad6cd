// The `opencv` backend: ONNX on OpenCV DNN 4.6, CPU (see runtime/opencv/opencv_backend.hpp).
//
// Every OpenCV call that can throw is wrapped here and comes back as an Error; no cv:: type
// leaves this file.
#include "runtime/opencv/opencv_backend.hpp"

#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/core/version.hpp>
#include <opencv2/dnn.hpp>

#include <array>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "manifests/log_value.hpp"
#include "runtime/compat.hpp"

namespace edgefleet::runtime {
namespace {

// cv::Mat takes at most 32 dimensions (CV_MAX_DIM, from the C API headers).
constexpr int kMaxRank = 32;

// The default-domain opsets we claim. OpenCV 4.6's ONNX importer has no opset gate: it logs the
// model's opset and imports any number (measured: the digits model relabelled opset 1, 7, 9, 13,
// 17, 18, 19, 25 and 100 all load and run). What it cannot run is decided per node, so the real
// limit is the measured operator table. The range stops at 17, the newest opset of libonnx
// 1.12, whose conformance cases are what the table is measured with: above it nothing was
// measured, so nothing is claimed.
constexpr int kMinOpset = 1;
constexpr int kMaxOpset = 17;

// Models are verified by SHA-256 before they get here; the cap only keeps a corrupt slot from
// turning into an allocation of arbitrary size. protobuf cannot parse more than 2 GiB anyway.
constexpr std::uintmax_t kMaxModelBytes = std::uintmax_t{2} << 30;

std::string CvError(const cv::Exception& e) {
  // e.what() repeats file and line of OpenCV's source; err is the reason itself.
  return e.err.empty() ? std::string(e.what()) : e.err;
}

// cv::setNumThreads is process-global: OpenCV has one worker pool for every net in the
// process. Sessions therefore cannot each have their own count; the last Load that asks for a
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

Result<std::string> ReadModelFile(const std::filesystem::path& path) {
  const std::string where = path.string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Fail(ErrorCode::kIo, where + ": " + ec.message());
  if (size > kMaxModelBytes) {
    return Fail(ErrorCode::kLimit, where + ": " + std::to_string(size) + " bytes, over 2 GiB");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kIo, where + ": cannot open");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::size_t>(in.gcount()) != bytes.size()) {
    return Fail(ErrorCode::kIo, where + ": short read");
  }
  return bytes;
}

Result<std::vector<TensorInfo>> InfosFromSpecs(const std::vector<manifests::TensorSpec>& specs,
                                               std::string_view what) {
  std::vector<TensorInfo> infos;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto dtype = ParseDType(specs[i].dtype);
    if (!dtype) {
      return Fail(ErrorCode::kInvalidArgument, std::string(what) + "[" + std::to_string(i) +
                                                   "] \"" + specs[i].name +
                                                   "\": " + dtype.error().message);
    }
    infos.push_back({specs[i].name, *dtype, specs[i].shape});
  }
  return infos;
}

// Calls `each(T{})` with the C++ storage type of `dtype` for the types both conversions treat
// element by element; float32 (a plain copy) and float16 (bit conversion) are the callers' own.
template <typename Each>
Status ForEachStorageType(DType dtype, Each&& each) {
  switch (dtype) {
    case DType::kFloat64:
      return each(double{});
    case DType::kInt8:
      return each(std::int8_t{});
    case DType::kUInt8:
    case DType::kBool:
      return each(std::uint8_t{});
    case DType::kInt16:
      return each(std::int16_t{});
    case DType::kInt32:
      return each(std::int32_t{});
    case DType::kInt64:
      return each(std::int64_t{});
    case DType::kFloat32:
    case DType::kFloat16:
      break;
  }
  return Fail(ErrorCode::kInternal, "unhandled dtype");
}

// Copies `t` into `dst` as float32. Integers beyond 2^24 have no exact float32 and are refused
// rather than silently rounded; float64 is narrowed (OpenCV itself computes in float32).
Status ConvertToFloat(const Tensor& t, float* dst) {
  const std::byte* src = t.data.data();
  const std::size_t n = t.data.size() / ElementSize(t.dtype);
  auto each = [&](auto tag) -> Status {
    using T = decltype(tag);
    for (std::size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, src + i * sizeof(T), sizeof(T));
      if constexpr (std::is_integral_v<T> && sizeof(T) >= 4) {
        constexpr T kExact = T{1} << 24;
        if (v > kExact || v < -kExact) {
          return Fail(ErrorCode::kUnsupported,
                      "input " + manifests::QuoteName(t.name, '"') + ": value " +
                          std::to_string(v) + " at index " + std::to_string(i) +
                          " has no exact float32, which OpenCV computes in");
        }
      }
      dst[i] = static_cast<float>(v);
    }
    return Ok();
  };
  if (t.dtype == DType::kFloat32) {
    std::memcpy(dst, src, t.data.size());
    return Ok();
  }
  if (t.dtype == DType::kFloat16) {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t bits;
      std::memcpy(&bits, src + i * 2, 2);
      dst[i] = static_cast<float>(cv::float16_t::fromBits(bits));
    }
    return Ok();
  }
  return ForEachStorageType(t.dtype, each);
}

// Writes OpenCV's float32 output as `dtype`. Integer outputs (ArgMax and the like, which OpenCV
// computes as floats) must hold exact in-range integers; anything else is a backend result the
// declared dtype cannot carry, reported instead of truncated.
Status ConvertFromFloat(const float* src, std::size_t n, DType dtype, std::string_view name,
                        std::byte* dst) {
  auto each = [&](auto tag) -> Status {
    using T = decltype(tag);
    for (std::size_t i = 0; i < n; ++i) {
      T v;
      if constexpr (std::is_integral_v<T>) {
        const double d = src[i];
        const bool is_bool = dtype == DType::kBool;
        const double lo = is_bool ? 0 : static_cast<double>(std::numeric_limits<T>::min());
        const double hi = is_bool ? 1 : static_cast<double>(std::numeric_limits<T>::max());
        if (!(d >= lo && d <= hi) || d != std::trunc(d)) {
          return Fail(ErrorCode::kInternal, "output \"" + std::string(name) + "\": value " +
                                                std::to_string(d) + " at index " +
                                                std::to_string(i) + " is not a " +
                                                std::string(ToString(dtype)));
        }
        v = static_cast<T>(d);
      } else {
        v = static_cast<T>(src[i]);
      }
      std::memcpy(dst + i * sizeof(T), &v, sizeof(T));
    }
    return Ok();
  };
  if (dtype == DType::kFloat32) {
    std::memcpy(dst, src, n * sizeof(float));
    return Ok();
  }
  if (dtype == DType::kFloat16) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t bits = cv::float16_t(src[i]).bits();
      std::memcpy(dst + i * 2, &bits, 2);
    }
    return Ok();
  }
  return ForEachStorageType(dtype, each);
}

// The shape reported for an output. OpenCV's Mat has at least two dimensions, so a rank-0 or
// rank-1 ONNX output comes back as [1,N] or [N,1]; when the declared rank differs and the
// declared shape (with its single wildcard filled in) has the same element count, the declared
// shape is the truth and is used. Otherwise OpenCV's own shape is returned as is.
std::vector<std::int64_t> OutputShape(const cv::Mat& m, const std::vector<std::int64_t>& declared) {
  std::vector<std::int64_t> real;
  for (int d = 0; d < m.dims; ++d) real.push_back(m.size[d]);
  if (declared.size() == real.size()) return real;
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
  if (wildcards > 1 || known == 0) return real;
  if (wildcards == 0) return known == total ? declared : real;
  if (total % known != 0) return real;
  std::vector<std::int64_t> shape = declared;
  for (auto& d : shape) {
    if (d == -1) d = total / known;
  }
  return shape;
}

// Operators OpenCV 4.6 runs, but not with every output ONNX allows. Found by running ONNX's
// conformance cases under valgrind (tests/runtime/op_table_test.cpp runs them all).
const std::vector<OutputLimit>& OutputLimits() {
  static const std::vector<OutputLimit> limits = {
      {"", "Dropout", 1,
       "OpenCV imports Dropout as a pass-through layer with one input per output and writes past "
       "its buffers for the mask output (libonnx-testdata test_dropout_default_mask)"},
  };
  return limits;
}

// How concurrent Run calls are served: a pool of `parallel_runs` nets, each a separate
// cv::dnn::Net loaded from the same bytes. A request takes a free net from the free list (and
// waits on the condition variable when all are busy), so no net is ever run by two threads, and
// with parallel_runs = 1 this is exactly "one net behind one lock".
//
// Chosen by measurement (bench/opencv_concurrency.cpp; bench/RESULTS.md, "OpenCV DNN: pool of
// nets vs one locked net"): on 2 cores with the digits CNN, one locked net served 2 and 4 client
// threads at 0.28-0.36x the pool's throughput with a p99 of 0.05-2.6 ms against the pool's
// 15-36 us, because every request queues behind the lock while the pool runs one forward per
// core; with one client, or with only one core free, the two are within 5 %. The pool costs
// one copy of the weights per net, so a model too large to hold twice is loaded with
// parallel_runs = 1, which is exactly the locked design. The free list replaces one mutex per
// net with try_lock polling: a waiting request sleeps and is woken by the first net returned.
class OpenCvSession final : public Session {
 public:
  static Result<std::unique_ptr<Session>> Create(const std::filesystem::path& model_file,
                                                 const manifests::Variant& variant,
                                                 const SessionOptions& options) {
    const std::string where = model_file.string();
    if (options.threads < 1) {
      return Fail(ErrorCode::kInvalidArgument,
                  "threads must be at least 1, found " + std::to_string(options.threads));
    }
    if (options.parallel_runs < 1) {
      return Fail(ErrorCode::kInvalidArgument, "parallel_runs must be at least 1, found " +
                                                   std::to_string(options.parallel_runs));
    }
    if (variant.format != "onnx") {
      return Fail(ErrorCode::kUnsupported,
                  "variant \"" + variant.id + "\": format \"" + variant.format + "\" is not onnx");
    }
    auto session = std::unique_ptr<OpenCvSession>(new OpenCvSession());
    EF_ASSIGN_OR_RETURN(session->inputs_, InfosFromSpecs(variant.inputs, "inputs"));
    EF_ASSIGN_OR_RETURN(session->outputs_, InfosFromSpecs(variant.outputs, "outputs"));
    if (session->inputs_.empty() || session->outputs_.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "variant \"" + variant.id + "\" declares no inputs or no outputs");
    }
    for (const auto& out : session->outputs_) session->output_names_.push_back(out.name);
    EF_ASSIGN_OR_RETURN(const std::string bytes, ReadModelFile(model_file));
    // Node shapes OpenCV imports but cannot run safely are refused before OpenCV sees them, on
    // every load path (the agent has refused them in CheckGraph already; this also covers
    // parity runs and the conformance measurement, which load directly).
    // Bytes that are not a ModelProto are left to OpenCV's importer, which refuses them.
    auto nodes = OnnxNodes(bytes, where);
    if (auto problems = nodes ? OutputLimitProblems(*nodes, OutputLimits(), "opencv " CV_VERSION)
                              : std::vector<std::string>();
        !problems.empty()) {
      std::string message = where + ": ";
      for (std::size_t i = 0; i < problems.size(); ++i) {
        message += (i == 0 ? "" : "; ") + problems[i];
      }
      return Fail(ErrorCode::kUnsupported, message);
    }

    ApplyThreads(options.threads);
    try {
      for (int i = 0; i < options.parallel_runs; ++i) {
        cv::dnn::Net net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
        if (net.empty()) {
          return Fail(ErrorCode::kUnsupported,
                      "opencv " CV_VERSION " cannot import " + where + ": the network is empty");
        }
        net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        if (i == 0) EF_RETURN_IF_ERROR(session->CheckNames(net, where));
        session->nets_.push_back(std::move(net));
        session->free_.push_back(static_cast<std::size_t>(i));
      }
    } catch (const cv::Exception& e) {
      return Fail(ErrorCode::kUnsupported,
                  "opencv " CV_VERSION " cannot import " + where + ": " + CvError(e));
    } catch (const std::exception& e) {
      return Fail(ErrorCode::kUnsupported,
                  "opencv " CV_VERSION " cannot import " + where + ": " + e.what());
    }
    return std::unique_ptr<Session>(std::move(session));
  }

  const std::vector<TensorInfo>& inputs() const override { return inputs_; }
  const std::vector<TensorInfo>& outputs() const override { return outputs_; }

  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) override {
    EF_ASSIGN_OR_RETURN(std::vector<cv::Mat> blobs, MakeBlobs(inputs));
    Lease lease(*this);
    try {
      cv::dnn::Net& net = nets_[lease.slot];
      for (std::size_t i = 0; i < blobs.size(); ++i) net.setInput(blobs[i], inputs_[i].name);
      // The Mats alias the net's buffers: copy out before the net goes back to the pool.
      if (output_names_.size() == 1) {
        // One output: forward(name) returns it without the vector forward's per-call output
        // array set-up, about half of what OpenCV spends around a small model's layers.
        const cv::Mat out = net.forward(output_names_[0]);
        return CopyOutputs({&out, 1});
      }
      std::vector<cv::Mat> outs;
      net.forward(outs, output_names_);
      return CopyOutputs(outs);
    } catch (const cv::Exception& e) {
      return Fail(ErrorCode::kInternal, "opencv: " + CvError(e));
    } catch (const std::exception& e) {
      return Fail(ErrorCode::kInternal, std::string("opencv: ") + e.what());
    }
  }

 private:
  OpenCvSession() = default;

  // Names are checked once at load so a wrong manifest fails there, not on every request.
  Status CheckNames(cv::dnn::Net& net, const std::string& where) const {
    // Layer 0 is OpenCV's input layer; its outputs are the graph inputs.
    cv::Ptr<cv::dnn::Layer> input_layer = net.getLayer(0);
    for (const auto& in : inputs_) {
      if (input_layer->outputNameToIndex(in.name) < 0) {
        return Fail(ErrorCode::kUnsupported,
                    where + ": the graph has no input " + manifests::QuoteName(in.name, '"'));
      }
    }
    for (const auto& out : outputs_) {
      if (net.getLayerId(out.name) < 0) {
        return Fail(ErrorCode::kUnsupported, where + ": opencv finds no output " +
                                                 manifests::QuoteName(out.name, '"') +
                                                 " in the graph");
      }
    }
    return Ok();
  }

  // Checks inputs against inputs() and puts them in declaration order as float32 blobs.
  Result<std::vector<cv::Mat>> MakeBlobs(const std::vector<Tensor>& given) const {
    if (given.size() != inputs_.size()) {
      return Fail(ErrorCode::kInvalidArgument, "expected " + std::to_string(inputs_.size()) +
                                                   " input(s), found " +
                                                   std::to_string(given.size()));
    }
    std::vector<const Tensor*> ordered(inputs_.size(), nullptr);
    for (std::size_t i = 0; i < given.size(); ++i) {
      std::size_t index = i;
      if (!given[i].name.empty()) {
        index = inputs_.size();
        for (std::size_t j = 0; j < inputs_.size(); ++j) {
          if (inputs_[j].name == given[i].name) index = j;
        }
        if (index == inputs_.size()) {
          std::string expected;
          for (const auto& in : inputs_)
            expected += (expected.empty() ? "\"" : ", \"") + in.name + "\"";
          return Fail(ErrorCode::kInvalidArgument, "input \"" + given[i].name +
                                                       "\": not an input of this model (expected " +
                                                       expected + ")");
        }
      }
      if (ordered[index] != nullptr) {
        return Fail(ErrorCode::kInvalidArgument,
                    "input \"" + inputs_[index].name + "\": given more than once");
      }
      ordered[index] = &given[i];
    }

    std::vector<cv::Mat> blobs;
    blobs.reserve(inputs_.size());
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      const TensorInfo& info = inputs_[i];
      const Tensor& t = *ordered[i];
      // Built only on failure: this runs on every request, where a string costs more than the
      // checks (the digits forward itself is ~11 us).
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
      auto valid = t.Validate();
      if (!valid) return Fail(ErrorCode::kInvalidArgument, what() + ": " + valid.error().message);
      if (t.shape.size() > static_cast<std::size_t>(kMaxRank)) {
        return Fail(ErrorCode::kInvalidArgument,
                    what() + ": rank " + std::to_string(t.shape.size()) +
                        " is more than opencv's " + std::to_string(kMaxRank));
      }
      std::array<int, kMaxRank> sizes{};
      int rank = 0;
      for (auto d : t.shape) {
        if (d > std::numeric_limits<int>::max()) {
          return Fail(ErrorCode::kInvalidArgument,
                      what() + ": dimension " + std::to_string(d) + " is too large for opencv");
        }
        sizes[static_cast<std::size_t>(rank++)] = static_cast<int>(d);
      }
      if (rank == 0) sizes[static_cast<std::size_t>(rank++)] = 1;  // a scalar; no rank-0 Mat
      try {
        if (t.dtype == DType::kFloat32 && !t.data.empty()) {
          // No copy: a header over the caller's data. setInput only reads it (it copies into the
          // net's own input buffer), and the tensor outlives the Run that reads it.
          blobs.emplace_back(rank, sizes.data(), CV_32F,
                             const_cast<std::byte*>(t.data.data()));  // NOLINT: read-only use
          continue;
        }
        cv::Mat blob(rank, sizes.data(), CV_32F);
        EF_RETURN_IF_ERROR(ConvertToFloat(t, blob.ptr<float>()));
        blobs.push_back(std::move(blob));
      } catch (const cv::Exception& e) {
        return Fail(ErrorCode::kInternal, what() + ": opencv: " + CvError(e));
      }
    }
    return blobs;
  }

  Result<std::vector<Tensor>> CopyOutputs(std::span<const cv::Mat> outs) const {
    if (outs.size() != outputs_.size()) {
      return Fail(ErrorCode::kInternal, "opencv returned " + std::to_string(outs.size()) +
                                            " outputs, expected " +
                                            std::to_string(outputs_.size()));
    }
    std::vector<Tensor> result;
    result.reserve(outs.size());
    for (std::size_t i = 0; i < outs.size(); ++i) {
      cv::Mat m = outs[i];
      if (m.depth() != CV_32F) m.convertTo(m, CV_32F);
      if (!m.isContinuous()) m = m.clone();
      Tensor t;
      t.name = outputs_[i].name;
      t.dtype = outputs_[i].dtype;
      t.shape = OutputShape(m, outputs_[i].shape);
      t.data.resize(m.total() * ElementSize(t.dtype));
      EF_RETURN_IF_ERROR(
          ConvertFromFloat(m.ptr<float>(), m.total(), t.dtype, t.name, t.data.data()));
      result.push_back(std::move(t));
    }
    return result;
  }

  // Holds one net of the pool for the duration of a Run.
  struct Lease {
    explicit Lease(OpenCvSession& s) : session(s) {
      std::unique_lock<std::mutex> lock(session.free_mu_);
      session.free_cv_.wait(lock, [this] { return !session.free_.empty(); });
      slot = session.free_.back();
      session.free_.pop_back();
    }
    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(session.free_mu_);
        session.free_.push_back(slot);
      }
      session.free_cv_.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    OpenCvSession& session;
    std::size_t slot = 0;
  };

  std::vector<TensorInfo> inputs_;
  std::vector<TensorInfo> outputs_;
  std::vector<cv::String> output_names_;
  // Fixed after Create. A net is used only by the thread that took its index off free_.
  std::vector<cv::dnn::Net> nets_;
  std::mutex free_mu_;
  std::condition_variable free_cv_;
  std::vector<std::size_t> free_;  // guarded by free_mu_: indices of nets not in use
};

class OpenCvBackend final : public Backend {
 public:
  OpenCvBackend() {
    caps_.name = "opencv";
    caps_.version = manifests::SemVer{CV_VERSION_MAJOR, CV_VERSION_MINOR, CV_VERSION_REVISION, ""};
    caps_.formats = {"onnx"};
    caps_.min_opset = kMinOpset;
    caps_.max_opset = kMaxOpset;
    caps_.targets = {"cpu"};
    caps_.output_limits = OutputLimits();
    caps_.operators = std::vector<OperatorSupport>{
#include "runtime/opencv/supported_ops.inc"
    };
  }

  const BackendCapabilities& capabilities() const override { return caps_; }

  Result<std::unique_ptr<Session>> Load(const std::filesystem::path& model_file,
                                        const manifests::Variant& variant,
                                        const SessionOptions& options) override {
    return OpenCvSession::Create(model_file, variant, options);
  }

 private:
  BackendCapabilities caps_;  // fixed after construction
};

}  // namespace

Result<std::unique_ptr<Backend>> CreateOpenCvBackend() {
  return std::unique_ptr<Backend>(std::make_unique<OpenCvBackend>());
}

}  // namespace edgefleet::runtime
