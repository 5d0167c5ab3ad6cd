#include "agent/log_value.hpp"

#include <gtest/gtest.h>

namespace edgefleet::agent {
namespace {

TEST(LogValueTest, PlainTokensStayBare) {
  EXPECT_EQ(LogValue("committed"), "committed");
  EXPECT_EQ(LogValue("http://127.0.0.1:8500/digits-1.1.0.efb"),
            "http://127.0.0.1:8500/digits-1.1.0.efb");
}

TEST(LogValueTest, AnythingThatCouldSplitAFieldIsQuoted) {
  EXPECT_EQ(LogValue(""), "\"\"");
  EXPECT_EQ(LogValue("parity passed"), "\"parity passed\"");
  EXPECT_EQ(LogValue("a=b"), "\"a=b\"");
  EXPECT_EQ(LogValue("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(LogValue("back\\slash"), "\"back\\\\slash\"");
}

TEST(LogValueTest, ControlBytesCannotForgeALine) {
  EXPECT_EQ(LogValue("x\nevent=forged"), "\"x\\nevent=forged\"");
  EXPECT_EQ(LogValue(std::string("a\x01" "b", 3)), "\"a\\x01b\"");
  EXPECT_EQ(LogValue("\x7f"), "\"\\x7f\"");
}

}  // namespace
}  // namespace edgefleet::agent
