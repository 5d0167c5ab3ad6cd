#!/usr/bin/env bash
# Installs every Debian 12 package edgefleet needs. Idempotent: packages already installed are
# not touched and apt-get runs only when something is missing. Run as root (or with sudo).
#
#   scripts/install-deps.sh            build + test + demo dependencies
#   scripts/install-deps.sh --models   also scikit-learn, Pillow, flatbuffers, OpenCV's python
#                                      module and data, scikit-image: to regenerate the committed
#                                      test models and images, and for the benchmarks that export
#                                      models
set -euo pipefail
cd "$(dirname "$0")/.."

# Why each package is here is in the README ("Dependencies").
base=(
  build-essential cmake ninja-build pkg-config git
  clang-14 libclang-rt-14-dev               # the fuzz pass: clang builds, libFuzzer + sanitizer
                                            # runtimes (tests/fuzz)
  libssl-dev openssl                        # SHA-256, Ed25519 (EVP), TLS
  libcurl4-openssl-dev                      # bundle downloads
  libarchive-dev zstd                       # bundle tar + zstd/gzip
  libzstd-dev zlib1g-dev                    # the bundle reader decompresses itself (decompress.cpp)
  libsqlite3-dev sqlite3                    # journal, outbox, collector store
  postgresql-15 libpq-dev                   # collector store on PostgreSQL (tests start a real
                                            # server)
  nlohmann-json3-dev                        # all JSON
  libsimdjson-dev                           # the collector's telemetry fast path
  libmosquitto-dev mosquitto mosquitto-clients  # MQTT client and broker
  libopencv-dnn-dev libopencv-imgproc-dev  # ONNX inference; preprocessing tests' reference
  libpng-dev libjpeg62-turbo-dev            # image decoding for the local API
  libopencv-imgcodecs-dev                   # tests only: cv::imdecode as the decoders' reference
  libtorch-dev                              # the torch backend plugin (TorchScript, libtorch)
  libarmnn-dev libarmnntfliteparser-dev libarmnn-cpuref-backend22  # the tflite backend plugin
                                            # (TFLite on Arm NN 20.08, reference CPU backend)
  python3-torch python3-torchvision python3-onnx python3-numpy  # tests: the build generates the
                                            # torch backend's MobileNetV2/ResNet-18 test models and
                                            # golden data (tests/data/make_torchscript.py), too
                                            # large to commit
  libonnx-dev libonnx-testdata protobuf-compiler libprotobuf-dev  # ONNX graph inspection, test data
  libcpp-httplib-dev                        # desired-state URL fetch, test clients, bench peer
  libboost1.74-dev                          # the HTTP layer (Boost.Beast/Asio, header-only)
  libmicrohttpd-dev                         # bench only: the other HTTP layer candidate
  libspdlog-dev libcli11-dev                # logs, command lines
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and benchmarks
  python3 python3-jsonschema                # schema conformance test
  time                                      # /usr/bin/time -v for memory benchmarks
  chromium nodejs                           # the dashboard's browser test (Playwright from npm)
  prometheus                                # tests only: promtool checks the scrape config and
                                            # every Grafana query (the server is not started)
)
models=(python3-sklearn python3-pil python3-flatbuffers python3-opencv opencv-data python3-skimage)  # with the main list's python3-torch & co.

want=("${base[@]}")
for arg in "$@"; do
  case "$arg" in
    --models) want+=("${models[@]}") ;;
    *) echo "install-deps: unknown option '$arg' (known: --models)" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${want[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
# npm installs the browser test's Playwright. Debian's nodejs needs Debian's npm package; a
# nodejs that already brings npm (NodeSource's, which conflicts with that package) does not.
if ! command -v npm >/dev/null; then
  status=$(dpkg-query -W -f='${Status}' npm 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=(npm)
fi
# npm packages edgefleet takes from the registry the way the browser test gets Playwright: pinned
# by a package-lock.json, installed with --ignore-scripts (an install script could download more
# from elsewhere) into a per-user cache outside the tree, keyed by the lock's SHA-256, so a second
# clone or CI run on this machine reuses it without a download; CMake finds each by the same key.
#   npm_into_cache <cache name> <dir with package.json and the lock> <what, for messages> <keep>
# `keep` runs with the install directory and moves what is kept out of its node_modules, which
# is removed after; it fails with a message to refuse the install.
npm_into_cache() {
  local name=$1 npm_dir=$2 what=$3 keep=$4
  local lock=$npm_dir/package-lock.json key dir tmp
  key=$(sha256sum "$lock" | cut -c1-16)
  dir="${EDGEFLEET_CACHE_DIR:-${HOME}/.cache/edgefleet}/$name/$key"
  if [ -f "$dir/COMPLETE" ]; then
    echo "install-deps: $what present ($dir)"
    return 0
  fi
  echo "install-deps: installing $what into $dir"
  mkdir -p "$(dirname "$dir")"
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  cp "$npm_dir/package.json" "$lock" "$tmp/"
  if ! (cd "$tmp" && timeout 900 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
    rm -rf "$tmp"
    echo "install-deps: npm ci of $npm_dir failed (is the npm registry reachable?)" >&2
    return 1
  fi
  if ! "$keep" "$tmp"; then
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp/node_modules"
  chmod 755 "$tmp"
  chmod -R go-w "$tmp"
  touch "$tmp/COMPLETE"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# ONNX Runtime for the onnxruntime backend plugin (runtime/onnxruntime/npm; about 260 MB to
# download). EDGEFLEET_SKIP_ONNXRUNTIME=1 skips it (the plugin is then not built, and CMake says
# so).
keep_onnxruntime() {
  # The headers' API version must not be above the library's (ORT_API_VERSION N is ORT 1.N).
  local tmp=$1 header api lib_version
  header=$(find "$tmp/node_modules/com.github.asus4.onnxruntime" -path '*simulator*' \
             -name onnxruntime_c_api.h | head -1)
  api=$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\)$/\1/p' "$header")
  lib_version=$(sed -n 's/.*"version": "\([0-9.]*\)".*/\1/p' \
                  "$tmp/node_modules/onnxruntime-node/package.json" | head -1)
  if [ -z "$api" ] || [ "$api" -gt "$(echo "$lib_version" | cut -d. -f2)" ]; then
    echo "install-deps: onnxruntime headers (API ${api:-?}) are newer than the library" \
         "($lib_version)" >&2
    return 1
  fi
  # Keep what the build needs, in the layout of an ONNX Runtime release (include/, lib/), about
  # 50 MB of the 670 MB npm installs: the headers and this machine's library.
  local arch
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) arch=none ;; esac
  mkdir -p "$tmp/include" "$tmp/lib" || return 1
  cp "$(dirname "$header")"/*.h "$tmp/include/" || return 1
  if [ -f "$tmp/node_modules/onnxruntime-node/bin/napi-v6/linux/$arch/libonnxruntime.so.1" ]; then
    cp "$tmp/node_modules/onnxruntime-node/bin/napi-v6/linux/$arch/libonnxruntime.so.1" \
      "$tmp/lib/" || return 1
  fi
  echo "$lib_version" >"$tmp/VERSION"
}
install_onnxruntime() {
  npm_into_cache onnxruntime-npm runtime/onnxruntime/npm "the onnxruntime npm pieces" \
    keep_onnxruntime
}

# MediaPipe's face detector for the tflite plugin's real-model test (tests/data/mediapipe/npm):
# only the .tflite files are kept (tests/CMakeLists.txt). Not committed: Google's files.
keep_mediapipe() {
  mkdir -p "$1/models" || return 1
  cp "$1"/node_modules/@mediapipe/face_detection/*.tflite "$1/models/"
}
install_mediapipe() {
  npm_into_cache mediapipe-npm tests/data/mediapipe/npm "the mediapipe face detector" \
    keep_mediapipe
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  [ "${EDGEFLEET_SKIP_ONNXRUNTIME:-0}" = 1 ] || install_onnxruntime
  install_mediapipe
  exit 0
fi

line="apt-get install -y --no-install-recommends ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "install-deps: not root; install the missing packages with:" >&2
    echo "  sudo apt-get update && sudo $line" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -q && "${sudo[@]}" $line; }; then
  echo "install-deps: apt-get failed; the command was:" >&2
  echo "  $line" >&2
  exit 1
fi
[ "${EDGEFLEET_SKIP_ONNXRUNTIME:-0}" = 1 ] || install_onnxruntime
install_mediapipe
