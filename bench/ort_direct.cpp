#include "bench/ort_direct.hpp"

#include <onnxruntime_c_api.h>

#include "runtime/onnxruntime/ort_library.hpp"

namespace edgefleet::bench {

struct OrtDirect::Impl {
  const OrtApi* api = nullptr;
  OrtEnv* env = nullptr;
  OrtSession* session = nullptr;
  OrtMemoryInfo* cpu = nullptr;
  std::string output;
};

namespace {

bool Ok(const OrtApi* api, OrtStatus* status, std::string& error) {
  if (status == nullptr) return true;
  error = api->GetErrorMessage(status);
  api->ReleaseStatus(status);
  return false;
}

}  // namespace

std::unique_ptr<OrtDirect> OrtDirect::Open(const std::string& library, const std::string& model,
                                           int threads, std::string& error) {
  runtime::ort::OrtLibrary lib;
  if (auto failed = runtime::ort::OpenOrtLibrary(library, lib)) {
    error = failed->message;
    return nullptr;
  }
  std::unique_ptr<OrtDirect> out(new OrtDirect());
  out->impl_ = std::make_unique<Impl>();
  Impl& d = *out->impl_;
  const OrtApi* api = d.api = lib.api;
  OrtSessionOptions* options = nullptr;
  bool ok = Ok(api, api->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "bench", &d.env), error) &&
            Ok(api, api->CreateSessionOptions(&options), error) &&
            Ok(api, api->SetIntraOpNumThreads(options, threads), error) &&
            Ok(api, api->SetInterOpNumThreads(options, 1), error) &&
            Ok(api, api->SetSessionExecutionMode(options, ORT_SEQUENTIAL), error) &&
            Ok(api, api->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL), error) &&
            Ok(api, api->CreateSession(d.env, model.c_str(), options, &d.session), error) &&
            Ok(api, api->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &d.cpu), error);
  if (options != nullptr) api->ReleaseSessionOptions(options);
  if (ok) {
    OrtAllocator* allocator = nullptr;
    char* name = nullptr;
    ok = Ok(api, api->GetAllocatorWithDefaultOptions(&allocator), error) &&
         Ok(api, api->SessionGetOutputName(d.session, 0, allocator, &name), error);
    if (ok) {
      d.output = name;
      ok = Ok(api, api->AllocatorFree(allocator, name), error);
    }
  }
  return ok ? std::move(out) : nullptr;
}

OrtDirect::~OrtDirect() {
  if (!impl_ || impl_->api == nullptr) return;
  if (impl_->cpu != nullptr) impl_->api->ReleaseMemoryInfo(impl_->cpu);
  if (impl_->session != nullptr) impl_->api->ReleaseSession(impl_->session);
  if (impl_->env != nullptr) impl_->api->ReleaseEnv(impl_->env);
}

bool OrtDirect::Run(std::vector<float>& values, const std::vector<std::int64_t>& shape) {
  const OrtApi* api = impl_->api;
  std::string error;
  OrtValue* input = nullptr;
  OrtValue* output = nullptr;
  const char* input_name = "input";
  const char* output_name = impl_->output.c_str();
  bool ok =
      Ok(api,
         api->CreateTensorWithDataAsOrtValue(
             impl_->cpu, values.data(), values.size() * sizeof(float), shape.data(), shape.size(),
             ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &input),
         error) &&
      Ok(api, api->Run(impl_->session, nullptr, &input_name, &input, 1, &output_name, 1, &output),
         error);
  if (input != nullptr) api->ReleaseValue(input);
  if (output != nullptr) api->ReleaseValue(output);
  return ok;
}

}  // namespace edgefleet::bench
