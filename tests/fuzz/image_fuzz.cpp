// Fuzzes the PNG/JPEG decoder behind the local API's raw image requests
// (runtime::DecodeImage). A decoded image must hold exactly the pixels its header promises.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "runtime/image_decode.hpp"

namespace runtime = edgefleet::runtime;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The local API's default decode budget (16 MiB), well under libFuzzer's memory limit.
  auto image = runtime::DecodeImage(bytes, runtime::ImageLimits{});
  if (!image) return 0;
  const std::size_t expected = static_cast<std::size_t>(image->width) * image->height *
                               static_cast<std::size_t>(image->channels) *
                               static_cast<std::size_t>(image->bytes_per_sample);
  if (image->width == 0 || image->height == 0 || image->pixels.size() != expected) {
    std::fprintf(stderr, "decoded %ux%u x%d x%d but %zu pixel bytes\n", image->width, image->height,
                 image->channels, image->bytes_per_sample, image->pixels.size());
    std::abort();
  }
  return 0;
}
