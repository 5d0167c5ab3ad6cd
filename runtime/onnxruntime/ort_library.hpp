// The ONNX Runtime shared library the `onnxruntime` plugin drives: found, checked, dlopen()ed and
// asked for its C API table, once per process. Nothing of ORT is linked into the plugin, so the
// library can be the one it was built against (copied beside the backends,
// lib/edgefleet/onnxruntime/libonnxruntime.so.1) or a box's own install named in the agent config.
//
// Thread safety: OpenOrtLibrary may be called from any thread (it is serialised inside); the
// returned OrtLibrary is immutable.
#pragma once

#include <onnxruntime_c_api.h>

#include <string>

#include "runtime/plugin_kit.hpp"

namespace edgefleet::runtime::ort {

struct OrtLibrary {
  std::string path;     // what was opened
  std::string version;  // the library's own version string, e.g. "1.30.0"
  const OrtApi* api = nullptr;
};

// The library this plugin uses by default: <dir of this plugin>/../onnxruntime/libonnxruntime.so.1.
std::string DefaultLibraryPath();

// Opens `path` (RTLD_NOW | RTLD_LOCAL) after checking that neither it nor its directory is
// writable by group or others (the rule the agent applies to backend libraries), and gets the C
// API of ORT_API_VERSION, the headers' version. A library older than the headers is refused
// naming both versions. The first library opened stays for the process: asking for another path
// later is refused (two ORT builds in one process would share nothing and confuse everyone).
plugin_kit::Check OpenOrtLibrary(const std::string& path, OrtLibrary& out);

}  // namespace edgefleet::runtime::ort
