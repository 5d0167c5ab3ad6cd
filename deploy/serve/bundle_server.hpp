// The bundle server (`edgefleet serve`): the files of one directory over HTTP(S), streamed from
// disk with single-range support, so boxes can download (and resume) bundles from the operator's
// machine. Its own library (edgefleet_serve); the CLI calls Serve.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "manifests/result.hpp"

namespace edgefleet::deploy {

// `edgefleet serve`: the files under `dir` over HTTP (HTTPS with tls_cert and tls_key), streamed
// from disk with single byte ranges (206, 416), HEAD and an ETag; `/` is a JSON index of the
// top-level files. Paths with "..", "." or empty segments, and symlinks leading out of `dir`, are
// refused with 403; anything that is not a regular file too. Logs one event=served line per
// request and runs until SIGTERM or SIGINT, then returns Ok(). Fails before serving for a bad
// --http (kInvalidArgument), a missing `dir` (kNotFound naming it), unusable TLS files or an
// address it cannot bind.
struct ServeOptions {
  std::filesystem::path dir;
  std::string http;                                // HOST:PORT; port 0 picks a free port
  std::optional<std::filesystem::path> port_file;  // the port, written once listening
  std::filesystem::path tls_cert, tls_key;         // PEM; both or neither
};
Status Serve(const ServeOptions& options);
// --http's HOST:PORT form (port 0..65535); kInvalidArgument naming the text otherwise.
Status CheckServeAddress(const std::string& http);

}  // namespace edgefleet::deploy
