#!/usr/bin/env bash
# Installs every Debian 12 package edgefleet needs. Idempotent: packages already installed are
# not touched and apt-get runs only when something is missing. Run as root (or with sudo).
#
#   scripts/install-deps.sh            build + test + demo dependencies
#   scripts/install-deps.sh --models   also scikit-learn and Pillow, to regenerate the committed
#                                      digits models and for the benchmarks that export models
set -euo pipefail

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
  nlohmann-json3-dev                        # all JSON
  libmosquitto-dev mosquitto mosquitto-clients  # MQTT client and broker
  libopencv-dnn-dev libopencv-imgproc-dev  # ONNX inference; preprocessing tests' reference
  libpng-dev libjpeg62-turbo-dev            # image decoding for the local API
  libopencv-imgcodecs-dev                   # tests only: cv::imdecode as the decoders' reference
  libtorch-dev                              # the torch backend plugin (TorchScript, libtorch)
  python3-torch python3-torchvision python3-onnx python3-numpy  # tests: the build generates the
                                            # torch backend's MobileNetV2/ResNet-18 test models and
                                            # golden data (tests/data/make_torchscript.py), too
                                            # large to commit
  libonnx-dev libonnx-testdata protobuf-compiler libprotobuf-dev  # ONNX graph inspection, test data
  libcpp-httplib-dev                        # local API, collector, bundle server
  libspdlog-dev libcli11-dev                # logs, command lines
  libgtest-dev libgmock-dev libbenchmark-dev  # tests and benchmarks
  python3 python3-jsonschema                # schema conformance test
  time                                      # /usr/bin/time -v for memory benchmarks
  chromium nodejs                           # the dashboard's browser test (Playwright from npm)
  prometheus                                # tests only: promtool checks the scrape config and
                                            # every Grafana query (the server is not started)
)
models=(python3-sklearn python3-pil)  # with the main list's python3-torch & co.

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
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
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
