// Tensors and TensorProto files: dtype helpers, shapes, round trips per dtype, ONNX's typed
// fields, the committed golden files, and hostile protobufs (which must give errors, never
// crashes or huge allocations).
//
// Protobufs are written here with a tiny wire-format encoder instead of libonnx's classes, so
// the test can also write what no well-behaved encoder would (mismatched sizes, wrong wire
// types, truncation) and does not depend on protobuf headers.
#include "runtime/tensor.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "tests/support/temp_dir.hpp"

namespace edgefleet::runtime {
namespace {

const std::filesystem::path kDigits = std::filesystem::path(EDGEFLEET_TEST_DATA_DIR) / "digits";

// onnx.proto TensorProto field numbers and data types.
enum Field : int {
  kDims = 1,
  kDataType = 2,
  kSegment = 3,
  kFloatData = 4,
  kInt32Data = 5,
  kInt64Data = 7,
  kName = 8,
  kRawData = 9,
  kDoubleData = 10,
  kDataLocation = 14,
};
enum OnnxType : int {
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
};

class Proto {
 public:
  Proto& Varint(int field, std::uint64_t v) {
    Key(field, 0);
    PutVarint(v);
    return *this;
  }
  Proto& Dim(std::int64_t d) { return Varint(kDims, static_cast<std::uint64_t>(d)); }
  Proto& Type(int t) { return Varint(kDataType, static_cast<std::uint64_t>(t)); }
  Proto& Bytes(int field, std::string_view bytes) {
    Key(field, 2);
    PutVarint(bytes.size());
    out_.append(bytes);
    return *this;
  }
  Proto& Name(std::string_view name) { return Bytes(kName, name); }
  Proto& Raw(std::string_view raw) { return Bytes(kRawData, raw); }
  template <typename T>
  Proto& PackedFixed(int field, const std::vector<T>& values) {
    std::string payload(values.size() * sizeof(T), '\0');
    if (!values.empty()) std::memcpy(payload.data(), values.data(), payload.size());
    return Bytes(field, payload);
  }
  Proto& PackedVarint(int field, const std::vector<std::int64_t>& values) {
    Proto inner;
    for (auto v : values) inner.PutVarint(static_cast<std::uint64_t>(v));
    return Bytes(field, inner.out_);
  }
  const std::string& str() const { return out_; }

 private:
  void Key(int field, int wire) { PutVarint(static_cast<std::uint64_t>(field << 3 | wire)); }
  void PutVarint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

TEST(DType, NamesSizesAndParse) {
  const std::vector<std::pair<DType, std::size_t>> all = {
      {DType::kFloat32, 4}, {DType::kFloat64, 8}, {DType::kFloat16, 2},
      {DType::kInt8, 1},    {DType::kUInt8, 1},   {DType::kInt16, 2},
      {DType::kInt32, 4},   {DType::kInt64, 8},   {DType::kBool, 1}};
  for (const auto& [dtype, size] : all) {
    EXPECT_EQ(ElementSize(dtype), size) << ToString(dtype);
    auto parsed = ParseDType(ToString(dtype));
    ASSERT_TRUE(parsed) << ToString(dtype);
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_EQ(ToString(DType::kFloat32), "float32");
  auto bad = ParseDType("float");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kParse);
  EXPECT_NE(bad.error().message.find("\"float\""), std::string::npos) << bad.error().message;
}

TEST(Shape, CountToStringAndMatch) {
  const std::vector<std::int64_t> s = {360, 1, 8, 8};
  EXPECT_EQ(*ElementCount(s), 23040u);
  EXPECT_EQ(*ElementCount(std::vector<std::int64_t>{}), 1u);  // a scalar
  EXPECT_EQ(*ElementCount(std::vector<std::int64_t>{3, 0, 5}), 0u);
  EXPECT_EQ(ShapeToString(s), "[360,1,8,8]");
  EXPECT_EQ(ShapeToString(std::vector<std::int64_t>{}), "[]");

  auto neg = ElementCount(std::vector<std::int64_t>{2, -1});
  ASSERT_FALSE(neg);
  EXPECT_EQ(neg.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(neg.error().message.find("negative"), std::string::npos);
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  auto over = ElementCount(std::vector<std::int64_t>{big, big, 4});
  ASSERT_FALSE(over);
  EXPECT_NE(over.error().message.find("overflows"), std::string::npos) << over.error().message;
  // A zero dimension after huge ones is still an honest zero, not an overflow.
  EXPECT_EQ(*ElementCount(std::vector<std::int64_t>{0, big, big}), 0u);

  const std::vector<std::int64_t> pattern = {-1, 1, 8, 8};
  EXPECT_TRUE(ShapeMatches(s, pattern));
  EXPECT_TRUE(ShapeMatches(std::vector<std::int64_t>{1, 1, 8, 8}, pattern));
  EXPECT_FALSE(ShapeMatches(std::vector<std::int64_t>{1, 3, 8, 8}, pattern));
  EXPECT_FALSE(ShapeMatches(std::vector<std::int64_t>{1, 8, 8}, pattern));
  EXPECT_TRUE(ShapeMatches(std::vector<std::int64_t>{}, std::vector<std::int64_t>{}));
}

TEST(Tensor, FromFloatsValidateAndViews) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  auto t = Tensor::FromFloats("x", {2, 3}, v);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_TRUE(t->Validate());
  ASSERT_EQ(t->As<float>().size(), 6u);
  EXPECT_EQ(t->As<float>()[5], 6.0f);
  EXPECT_TRUE(t->As<std::int32_t>().empty());  // wrong element type gives an empty view
  t->AsMutable<float>()[0] = 9.0f;
  EXPECT_EQ(t->As<float>()[0], 9.0f);

  auto wrong = Tensor::FromFloats("x", {4, 2}, v);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(wrong.error().message, "tensor \"x\": shape [4,2] needs 8 values, found 6");
  EXPECT_FALSE(Tensor::FromFloats("x", {-2, -3}, v));

  t->data.pop_back();
  auto bad = t->Validate();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "tensor \"x\": float32 [2,3] needs 6 x 4 bytes, found 23");
}

// Every dtype survives serialize -> parse bit for bit (raw_data).
TEST(TensorProto, RoundTripEveryDType) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kInt8,
                      DType::kUInt8, DType::kInt16, DType::kInt32, DType::kInt64, DType::kBool}) {
    Tensor t;
    t.name = "t_" + std::string(ToString(dtype));
    t.dtype = dtype;
    t.shape = {2, 3, 1};
    t.data.resize(6 * ElementSize(dtype));
    for (std::size_t i = 0; i < t.data.size(); ++i) {
      // Bools must be 0/1; other types get an arbitrary but recognisable bit pattern.
      t.data[i] = std::byte(dtype == DType::kBool ? (i & 1) : (i * 37 + 11) & 0xff);
    }
    auto bytes = SerializeTensorProto(t);
    ASSERT_TRUE(bytes) << bytes.error().message;
    auto back = ParseTensorProto(*bytes, "mem.pb");
    ASSERT_TRUE(back) << ToString(dtype) << ": " << back.error().message;
    EXPECT_EQ(back->name, t.name);
    EXPECT_EQ(back->dtype, dtype);
    EXPECT_EQ(back->shape, t.shape);
    EXPECT_EQ(back->data, t.data) << ToString(dtype);
  }
  // A scalar and an empty tensor too.
  Tensor scalar;
  scalar.dtype = DType::kInt64;
  scalar.data.resize(8, std::byte{7});
  auto s = ParseTensorProto(*SerializeTensorProto(scalar), "s.pb");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->data, scalar.data);
  Tensor empty;
  empty.shape = {0, 4};
  auto e = ParseTensorProto(*SerializeTensorProto(empty), "e.pb");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->shape, empty.shape);
  EXPECT_TRUE(e->data.empty());
}

TEST(TensorProto, SerializeRefusesInvalidTensor) {
  Tensor t;
  t.shape = {2};
  t.data.resize(3);
  auto r = SerializeTensorProto(t);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

// ONNX's typed fields, as other exporters write them.
TEST(TensorProto, TypedFields) {
  {
    auto t = ParseTensorProto(
        Proto().Dim(3).Type(kFloat).Name("f").PackedFixed<float>(kFloatData, {1.5f, -2, 3}).str(),
        "f.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->dtype, DType::kFloat32);
    EXPECT_EQ(std::vector<float>(t->As<float>().begin(), t->As<float>().end()),
              (std::vector<float>{1.5f, -2, 3}));
  }
  {
    auto t = ParseTensorProto(
        Proto().Dim(2).Type(kDouble).PackedFixed<double>(kDoubleData, {0.25, -8}).str(), "d.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<double>()[1], -8.0);
  }
  {
    auto t = ParseTensorProto(
        Proto().Dim(2).Type(kInt64).PackedVarint(kInt64Data, {-5, 1LL << 40}).str(), "l.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<std::int64_t>()[0], -5);
    EXPECT_EQ(t->As<std::int64_t>()[1], 1LL << 40);
  }
  {
    auto t = ParseTensorProto(
        Proto().Dim(3).Type(kInt32).PackedVarint(kInt32Data, {-7, 0, 123456}).str(), "i.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<std::int32_t>()[0], -7);
    EXPECT_EQ(t->As<std::int32_t>()[2], 123456);
  }
  {
    auto t = ParseTensorProto(
        Proto().Dim(3).Type(kInt8).PackedVarint(kInt32Data, {-128, 0, 127}).str(), "b.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<std::int8_t>()[0], -128);
    EXPECT_EQ(t->As<std::int8_t>()[2], 127);
  }
  {
    auto t = ParseTensorProto(Proto().Dim(2).Type(kUint8).PackedVarint(kInt32Data, {255, 3}).str(),
                              "u.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<std::uint8_t>()[0], 255);
  }
  {
    auto t = ParseTensorProto(
        Proto().Dim(2).Type(kInt16).PackedVarint(kInt32Data, {-32768, 32767}).str(), "s.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<std::int16_t>()[0], -32768);
  }
  {
    auto t = ParseTensorProto(Proto().Dim(3).Type(kBool).PackedVarint(kInt32Data, {1, 0, 1}).str(),
                              "bool.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->dtype, DType::kBool);
    EXPECT_EQ(t->data, (std::vector<std::byte>{std::byte{1}, std::byte{0}, std::byte{1}}));
  }
  {
    // float16 1.0 = 0x3C00, -2.0 = 0xC000, in the low bits of int32_data.
    auto t = ParseTensorProto(
        Proto().Dim(2).Type(kFloat16).PackedVarint(kInt32Data, {0x3C00, 0xC000}).str(), "h.pb");
    ASSERT_TRUE(t) << t.error().message;
    ASSERT_EQ(t->data.size(), 4u);
    std::uint16_t h[2];
    std::memcpy(h, t->data.data(), 4);
    EXPECT_EQ(h[0], 0x3C00);
    EXPECT_EQ(h[1], 0xC000);
  }
  {
    // Unpacked repeated fields are valid protobuf too.
    Proto p;
    p.Dim(2).Type(kInt32).Varint(kInt32Data, 4).Varint(kInt32Data, 5);
    auto t = ParseTensorProto(p.str(), "unpacked.pb");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->As<std::int32_t>()[1], 5);
  }
}

TEST(TensorProto, GoldenFiles) {
  const auto dir = kDigits / "v1" / "golden" / "heldout";
  auto in = ReadTensorProto(dir / "input_0.pb");
  ASSERT_TRUE(in) << in.error().message;
  EXPECT_EQ(in->name, "input");
  EXPECT_EQ(in->dtype, DType::kFloat32);
  EXPECT_EQ(in->shape, (std::vector<std::int64_t>{360, 1, 8, 8}));
  ASSERT_TRUE(in->Validate());
  // Pixels are v/16 with v in 0..16.
  for (float v : in->As<float>()) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LE(v, 1.0f);
  }
  auto out = ReadTensorProto(dir / "output_0.pb");
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->name, "logits");
  EXPECT_EQ(out->shape, (std::vector<std::int64_t>{360, 10}));
  EXPECT_EQ(out->As<float>().size(), 3600u);
}

TEST(TensorProto, ReadErrors) {
  edgefleet::testing::TempDir dir;
  auto missing = ReadTensorProto(dir.path() / "nope.pb");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kIo);
  EXPECT_NE(missing.error().message.find("nope.pb"), std::string::npos);

  const auto big = dir.path() / "big.pb";
  std::ofstream(big, std::ios::binary) << std::string(2000, 'x');
  auto limited = ReadTensorProto(big, 1000);
  ASSERT_FALSE(limited);
  EXPECT_EQ(limited.error().code, ErrorCode::kLimit);

  const auto garbage = dir.path() / "garbage.pb";
  std::ofstream(garbage, std::ios::binary) << "\xff\xff\xff\xff this is not protobuf";
  auto bad = ReadTensorProto(garbage);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kParse);
  EXPECT_NE(bad.error().message.find("garbage.pb: not an ONNX TensorProto"), std::string::npos)
      << bad.error().message;
}

void ExpectParseError(const std::string& bytes, const std::string& needle) {
  auto r = ParseTensorProto(bytes, "evil.pb");
  ASSERT_FALSE(r) << "accepted; wanted: " << needle;
  EXPECT_EQ(r.error().code, ErrorCode::kParse);
  EXPECT_EQ(r.error().message.rfind("evil.pb: ", 0), 0u) << r.error().message;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

TEST(TensorProto, HostileInputsGiveErrors) {
  const std::string four_floats(16, '\0');
  // Not protobuf at all / truncated / an invalid wire type / a length past the end.
  ExpectParseError("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "not an ONNX TensorProto");
  ExpectParseError(Proto().Dim(4).Type(kFloat).Raw(four_floats).str().substr(0, 8),
                   "not an ONNX TensorProto");
  ExpectParseError(std::string("\x0f\x01", 2), "not an ONNX TensorProto");  // wire type 7
  ExpectParseError(Proto().Name("x").str() + "\x4a\xff\x01", "not an ONNX TensorProto");
  // Size mismatches, both directions, raw and typed.
  ExpectParseError(Proto().Dim(5).Type(kFloat).Raw(four_floats).str(),
                   "raw_data holds 16 bytes, dims [5] of float32 need 20");
  ExpectParseError(Proto().Dim(3).Type(kFloat).Raw(four_floats).str(), "need 12");
  ExpectParseError(Proto().Dim(2).Type(kFloat).PackedFixed<float>(kFloatData, {1}).str(),
                   "float_data holds 1 values, dims [2] need 2");
  ExpectParseError(Proto().Dim(2).Type(kInt64).PackedVarint(kInt32Data, {1, 2}).str(),
                   "int64_data holds 0 values");
  // Missing data entirely for a non-empty shape.
  ExpectParseError(Proto().Dim(2).Dim(2).Type(kFloat).str(), "float_data holds 0 values");
  // Negative and huge dims: refused before any allocation.
  ExpectParseError(Proto().Dim(-1).Type(kFloat).Raw(four_floats).str(), "negative");
  ExpectParseError(Proto().Dim(1LL << 62).Dim(1LL << 62).Type(kFloat).str(), "overflows");
  ExpectParseError(Proto().Dim(1LL << 61).Dim(2).Type(kFloat).str(), "too large");
  ExpectParseError(Proto().Dim(1LL << 40).Type(kFloat).Raw(four_floats).str(), "need");
  // Types we do not carry.
  ExpectParseError(Proto().Dim(1).Type(kString).Bytes(6, "x").str(),
                   "unsupported data type 8 (STRING)");
  ExpectParseError(Proto().Dim(1).Type(0).Raw("x").str(), "unsupported data type 0");
  ExpectParseError(Proto().Dim(1).Type(999).Raw("x").str(), "unsupported data type 999");
  // Values that do not fit the narrow type, and bools that are not 0/1.
  ExpectParseError(Proto().Dim(1).Type(kInt8).PackedVarint(kInt32Data, {200}).str(),
                   "int32_data[0] = 200 does not fit");
  ExpectParseError(Proto().Dim(2).Type(kBool).PackedVarint(kInt32Data, {0, 2}).str(),
                   "int32_data[1] = 2");
  ExpectParseError(Proto().Dim(1).Type(kBool).Raw("\x05").str(), "raw_data[0] is not a bool");
  // Data kept elsewhere.
  ExpectParseError(Proto().Dim(1).Type(kFloat).Varint(kDataLocation, 1).str(), "external data");
  ExpectParseError(Proto().Dim(1).Type(kFloat).Bytes(kSegment, Proto().Varint(1, 0).str()).str(),
                   "segmented");
}

// Random mutations of a valid file never crash; whatever parses is self-consistent.
TEST(TensorProto, FuzzedGoldenFileNeverCrashes) {
  std::ifstream in(kDigits / "v1" / "golden" / "heldout" / "output_0.pb", std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(good.size(), 100u);
  std::uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
  };
  int parsed = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string bytes = good.substr(0, round % 3 == 0 ? next() % good.size() : good.size());
    for (int k = 0; k < 4 && !bytes.empty(); ++k) {
      bytes[next() % std::min<std::size_t>(bytes.size(), 64)] = static_cast<char>(next());
    }
    auto t = ParseTensorProto(bytes, "fuzz.pb");
    if (t) {
      ++parsed;
      EXPECT_TRUE(t->Validate());
    }
  }
  SUCCEED() << parsed << " of 2000 mutations parsed";
}

}  // namespace
}  // namespace edgefleet::runtime
