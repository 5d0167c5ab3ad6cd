// Replaces the global operator new/delete of the executable that links it (edgefleet-agent and
// the inference benchmarks): a request of kAlignFrom bytes or more gets 64-byte-aligned memory
// (one cache line, one AVX-512 vector); smaller ones are plain malloc. Every variant frees with
// free(), so memory from any of them can be released by any other, as glibc allows.
//
// Why (bench/RESULTS.md, "Model host and local HTTP API vs a bare cv::dnn forward"): OpenCV
// DNN's layers take per-forward scratch buffers from operator new (cv::AutoBuffer, std::vector)
// rather than from its 64-byte-aligned fastMalloc, and malloc only promises 16. Where each buffer
// lands depends on what else the calling thread's malloc arena holds, so the same MobileNetV2
// forward ran 1.0-1.4 ms (5-7 %) faster on a fresh thread than on the main thread, and 0.3-0.9 ms
// slower on the local API's worker thread than on the thread that loaded the model, with no page
// faults in any of them; keeping one 4 KiB buffer alive during the forward moved it by 1.3 ms.
// With scratch buffers aligned, the worker's forward matched the caller's and every path got
// about 1 ms faster. glibc.malloc.arena_max=1 also evened the threads out, but cost 40 % of the
// small model's throughput with two concurrent clients (one arena lock), so it is not used.
//
// Not linked into sanitizer builds: ASan's own operator new checks new/delete pairing.
#include <cstddef>
#include <cstdlib>
#include <new>

namespace {

constexpr std::size_t kAlignFrom = 1024;
constexpr std::size_t kAlignment = 64;

void* Allocate(std::size_t n) noexcept {
  if (n >= kAlignFrom) {
    // aligned_alloc wants a multiple of the alignment; the request cannot overflow this sum
    // unless it is within 63 bytes of SIZE_MAX, which no allocator can satisfy anyway.
    if (n > static_cast<std::size_t>(-1) - kAlignment) return nullptr;
    return std::aligned_alloc(kAlignment, (n + kAlignment - 1) & ~(kAlignment - 1));
  }
  return std::malloc(n == 0 ? 1 : n);
}

void* AllocateOrThrow(std::size_t n) {
  // As the standard's operator new: call the new-handler until it gives up or memory appears.
  while (true) {
    if (void* p = Allocate(n)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

void* operator new(std::size_t n) { return AllocateOrThrow(n); }
void* operator new[](std::size_t n) { return AllocateOrThrow(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return AllocateOrThrow(n);
  } catch (...) {  // bad_alloc, or whatever a new-handler throws
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& tag) noexcept {
  return operator new(n, tag);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
