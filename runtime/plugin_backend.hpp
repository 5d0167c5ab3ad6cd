// Backends from shared libraries: the plugin loader, and the adapter that puts a library's C
// table (runtime/include/edgefleet/backend_plugin.h) behind the C++ Backend interface.
//
// A library is refused, with one reason, when it cannot be opened, lacks a function of the ABI,
// was built for another ABI version, fails to create, describes itself badly (name, SemVer
// version, formats) or fails its self-test. Refusals never stop the scan: the other libraries
// still load. Nothing here logs; the caller reports what was loaded and refused.
//
// Checks done here for every plugin, so that a backend gets only well-formed calls: inputs are
// matched by name (or position), ordered as the variant declares them, and checked for dtype and
// shape before the library sees them; outputs must arrive in declared order with the declared
// dtype, a shape that fits the declared one and a byte size that fits the shape; an ONNX model
// is checked against the backend's output limits before the library loads it. Messages from a
// library pass through manifests::SafeText (a library may return any bytes).
//
// Lifetime: a library stays loaded while its Backend or any Session made from it lives (shared
// ownership); it is opened with RTLD_NODELETE, so an engine's worker threads that outlive the
// library's last user never run unmapped code.
//
// Thread safety: LoadBackendPlugin(s) may run concurrently with anything; the Backend and
// Session objects follow runtime/backend.hpp (Run is called concurrently, and the library
// promises to serve that).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/result.hpp"
#include "runtime/backend.hpp"

namespace edgefleet::runtime {

// The largest output one run may return (per output); a library asking for more fails the run.
inline constexpr std::size_t kMaxPluginOutputBytes = std::size_t{1} << 30;

// <directory of the running executable>/../lib/edgefleet/backends: /usr/lib/edgefleet/backends
// for /usr/bin/edgefleet-agent (and /usr/bin/edgefleet), and the build tree's own plugin
// directory for a built agent or CLI.
std::filesystem::path DefaultBackendsDir();

// Loads one backend library. `options_json` is passed to the library's create (the agent
// config's `backend_options` object; "{}" when there is none). Fails with kNotFound / kIo when
// the file cannot be opened, kUnsupported for another ABI version or a missing function,
// kInvalidArgument for a bad description, kInternal when create or the self-test fails; the
// message names the library and what is wrong.
Result<std::unique_ptr<Backend>> LoadBackendPlugin(const std::filesystem::path& library,
                                                   std::string_view options_json = "{}");

struct PluginRefusal {
  std::filesystem::path library;
  std::string reason;  // already names the library
};

struct PluginScan {
  std::vector<std::unique_ptr<Backend>> backends;  // in file-name order
  std::vector<std::filesystem::path> libraries;    // the file each backend came from
  std::vector<PluginRefusal> refused;
  std::vector<std::filesystem::path> not_opened;  // named for a backend `wanted` leaves out
};

// The backend a library's file name announces: "opencv" for libedgefleet_backend_opencv.so;
// empty for a name that does not follow that pattern.
std::string BackendNameFromFile(const std::filesystem::path& library);

// Loads every `*.so` regular file in `dir` (sorted by name). With a non-empty `wanted`, a file
// named libedgefleet_backend_<name>.so for a name not in `wanted` is not even opened (an engine
// costs its memory once mapped, and RTLD_NODELETE keeps it mapped): it goes to `not_opened`;
// other file names are opened to learn their backend's name. A second library describing a
// backend name already loaded is refused. A library or directory that users other than its owner
// may write to is refused (anyone who can write it could run code in the agent). Fails only when
// `dir` cannot be listed (kNotFound / kIo, naming it).
Result<PluginScan> LoadBackendPlugins(const std::filesystem::path& dir,
                                      std::string_view options_json = "{}",
                                      const std::vector<std::string>& wanted = {});

}  // namespace edgefleet::runtime
