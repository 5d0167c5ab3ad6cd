#include "tests/support/logits.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>

namespace edgefleet::testing {

void ExpectLogitsClose(const runtime::Tensor& got, const runtime::Tensor& expected, double atol,
                       double rtol) {
  ASSERT_EQ(got.shape, expected.shape);
  const auto g = got.As<float>();
  const auto e = expected.As<float>();
  ASSERT_EQ(g.size(), e.size());
  double worst = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double diff = std::abs(static_cast<double>(g[i]) - e[i]);
    worst = std::max(worst, diff);
    if (diff > atol + rtol * std::abs(static_cast<double>(e[i]))) ++bad;
  }
  EXPECT_EQ(bad, 0U) << "max |diff| " << worst;
  const auto row = static_cast<std::size_t>(expected.shape.back());
  for (std::size_t r = 0; r < g.size() / row; ++r) {
    const auto top = [&](std::span<const float> v) {
      const auto s = v.subspan(r * row, row);
      return std::max_element(s.begin(), s.end()) - s.begin();
    };
    EXPECT_EQ(top(g), top(e)) << "row " << r;
  }
}

}  // namespace edgefleet::testing
