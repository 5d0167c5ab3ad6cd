#include "runtime/onnxruntime/ort_library.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <filesystem>
#include <mutex>

namespace edgefleet::runtime::ort {
namespace {

using plugin_kit::Check;
using plugin_kit::Failure;

// Refuses a file or directory that group or others may write (or that is missing).
Check NotWritableByOthers(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Failure{EF_IO, std::string(what) + " " + path + " does not exist"};
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Failure{EF_UNSUPPORTED, std::string(what) + " " + path +
                                       " is writable by group or others; refusing to load it"};
  }
  return std::nullopt;
}

std::mutex mu;
OrtLibrary opened;  // guarded by mu; api == nullptr until the first success

}  // namespace

std::string DefaultLibraryPath() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<const void*>(&DefaultLibraryPath), &info) == 0 ||
      info.dli_fname == nullptr) {
    return "libonnxruntime.so.1";
  }
  const std::filesystem::path plugin(info.dli_fname);
  return (plugin.parent_path() / ".." / "onnxruntime" / "libonnxruntime.so.1")
      .lexically_normal()
      .string();
}

Check OpenOrtLibrary(const std::string& path, OrtLibrary& out) {
  std::lock_guard<std::mutex> lock(mu);
  if (opened.api != nullptr && opened.path == path) {
    out = opened;
    return std::nullopt;
  }
  if (auto failed = NotWritableByOthers(path, "ONNX Runtime library")) return failed;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (auto failed = NotWritableByOthers(dir.empty() ? "." : dir, "directory")) return failed;
  // Never closed: ORT keeps process-wide state (its logging manager, thread-local caches) that
  // must outlive every session, and unloading it buys nothing.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return Failure{EF_IO, "cannot load " + path + ": " + (why ? why : "dlopen failed")};
  }
  using GetApiBase = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetApiBase>(::dlsym(handle, "OrtGetApiBase"));
  const OrtApiBase* base = get_base ? get_base() : nullptr;
  if (base == nullptr) {
    return Failure{EF_UNSUPPORTED, path + " has no OrtGetApiBase: not an ONNX Runtime library"};
  }
  if (opened.api != nullptr) {
    return Failure{EF_UNSUPPORTED, "ONNX Runtime " + opened.path +
                                       " is already in use in this process; cannot also use " +
                                       path};
  }
  const char* version = base->GetVersionString();
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    return Failure{EF_UNSUPPORTED,
                   path + " is ONNX Runtime " + (version ? version : "?") +
                       ", which does not offer C API version " + std::to_string(ORT_API_VERSION) +
                       " (this plugin was built against ONNX Runtime 1." +
                       std::to_string(ORT_API_VERSION) + " headers; use that release or newer)"};
  }
  opened = OrtLibrary{path, version ? version : "", api};
  out = opened;
  return std::nullopt;
}

}  // namespace edgefleet::runtime::ort
