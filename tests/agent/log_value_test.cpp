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

TEST(LogValueTest, InvalidUtf8BecomesHexBytesAndTheResultIsValidUtf8) {
  const std::string latin1 = "caf\xe9 model";  // Latin-1 e-acute: not UTF-8
  const std::string shown = LogValue(latin1);
  EXPECT_EQ(shown, "\"caf\\xe9 model\"");
  EXPECT_TRUE(manifests::IsValidUtf8(shown));
  EXPECT_EQ(manifests::EscapeText("\xc0\xaf"), "\\xc0\\xaf");  // overlong '/'
  EXPECT_EQ(manifests::EscapeText("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
}

TEST(LogValueTest, BidiAndInvisibleCharactersAreShownAsCodePoints) {
  // "model/\u202egpj.onnx" would display as "model/xnno.jpg" with the override raw.
  EXPECT_EQ(manifests::QuoteName("model/\xe2\x80\xaegpj.onnx"), "'model/\\u202egpj.onnx'");
  // Split literals: "\xa6b" would be one (out of range) hex escape.
  EXPECT_EQ(manifests::EscapeText("a\xe2\x81\xa6" "b\xe2\x80\x8b" "c\xef\xbb\xbf"),
            "a\\u2066b\\u200bc\\ufeff");
  EXPECT_EQ(manifests::EscapeText("\xc2\x85"), "\\u0085");  // C1 next line
  // Letters outside ASCII are kept as they are.
  EXPECT_EQ(manifests::QuoteName("mod\xc3\xa8le"), "'mod\xc3\xa8le'");
}

TEST(LogValueTest, QuoteNameEscapesItsQuoteAndBackslashAndCutsLongNames) {
  EXPECT_EQ(manifests::QuoteName("it's\\x41"), "'it\\'s\\\\x41'");
  const std::string shown = manifests::QuoteName(std::string(500, 'a'));
  EXPECT_EQ(shown, "'" + std::string(120, 'a') + "...'");
  // A cut never splits a character: 119 ASCII bytes then a 2-byte letter shows the letter whole.
  const std::string name = std::string(119, 'a') + "\xc3\xa9" + "zzz";
  EXPECT_EQ(manifests::QuoteName(name), "'" + std::string(119, 'a') + "\xc3\xa9...'");
}

}  // namespace
}  // namespace edgefleet::agent
