// runtime/aligned_new.cpp: the operator new linked into the agent. Large blocks come back on a
// cache line, small ones still work, every variant pairs with every delete (all free()), and an
// impossible request fails as the standard says (bad_alloc, or null from the nothrow form).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace {

bool OnCacheLine(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

TEST(AlignedNew, BlocksOfAKibibyteOrMoreStartOnACacheLine) {
  // Several sizes, and several live at once so they cannot all reuse one lucky slot; odd sizes
  // too (glibc's plain malloc gives 16-byte alignment, so a 1 in 4 chance per block at best).
  std::vector<std::unique_ptr<std::byte[]>> blocks;
  for (std::size_t size : {1024u, 1025u, 1040u, 4096u, 4100u, 65536u, 602112u, 3u << 20}) {
    for (int i = 0; i < 8; ++i) {
      blocks.emplace_back(new std::byte[size]);
      EXPECT_TRUE(OnCacheLine(blocks.back().get())) << size << " bytes, block " << i;
      std::memset(blocks.back().get(), 0x5a, size);  // the whole block is usable
    }
  }
  std::vector<float> scratch(150528);  // std::vector goes through the same operator new
  EXPECT_TRUE(OnCacheLine(scratch.data()));
  std::string text(5000, 'x');
  EXPECT_TRUE(OnCacheLine(text.data()));
}

TEST(AlignedNew, SmallBlocksAndEveryDeleteFormWork) {
  auto* one = new int(7);
  EXPECT_EQ(*one, 7);
  delete one;
  void* zero = ::operator new(0);  // a unique non-null pointer even for zero bytes
  EXPECT_NE(zero, nullptr);
  ::operator delete(zero);
  void* sized = ::operator new(2048);
  ::operator delete(sized, 2048);
  void* quiet = ::operator new(4096, std::nothrow);
  ASSERT_NE(quiet, nullptr);
  EXPECT_TRUE(OnCacheLine(quiet));
  ::operator delete(quiet, std::nothrow);
  void* quiet_small = ::operator new[](10, std::nothrow);
  ASSERT_NE(quiet_small, nullptr);
  ::operator delete[](quiet_small);
  // Over-aligned types use the library's aligned forms, which also release with free().
  struct alignas(128) Wide {
    char bytes[256];
  };
  auto wide = std::make_unique<Wide[]>(4);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(wide.get()) % 128, 0u);
}

TEST(AlignedNew, AnImpossibleRequestFailsTheStandardWay) {
  volatile std::size_t huge = std::numeric_limits<std::size_t>::max() - 16;
  EXPECT_THROW((void)::operator new(huge), std::bad_alloc);
  EXPECT_EQ(::operator new(huge, std::nothrow), nullptr);
  volatile std::size_t too_big = std::numeric_limits<std::size_t>::max() / 2;
  EXPECT_THROW((void)::operator new[](too_big), std::bad_alloc);
}

}  // namespace
