// Whether a device can run a bundle, from the backends its status reports (rollout start refuses
// the rollout, before publishing anything, when a released device can run no variant).
#include "deploy/rollout/rollout_backends.hpp"

#include <gtest/gtest.h>

namespace edgefleet::deploy {
namespace {

manifests::Variant Variant(std::string id, std::string format, std::string backend,
                           std::string range) {
  manifests::Variant v;
  v.id = std::move(id);
  v.format = std::move(format);
  v.backends.push_back({std::move(backend), manifests::VersionRange::Parse(range).value()});
  return v;
}

const std::vector<manifests::Variant> kVariants = {
    Variant("onnx-op13", "onnx", "opencv", ">=4.5.0 <5.0.0"),
    Variant("ts", "torchscript", "torch", ">=1.13.0 <2.0.0")};

TEST(RolloutBackends, ADeviceWithABackendForOneVariantCanRunTheBundle) {
  EXPECT_EQ(NoVariantReason(kVariants, {{"opencv", "4.6.0", {"onnx"}, {"cpu"}}}), std::nullopt);
  EXPECT_EQ(NoVariantReason(kVariants, {{"affine", "1.0.0", {"affine"}, {"cpu"}},
                                        {"torch", "1.13.1", {"torchscript"}, {"cpu"}}}),
            std::nullopt);
}

TEST(RolloutBackends, EveryReasonIsNamedPerVariant) {
  EXPECT_EQ(NoVariantReason(kVariants, {{"opencv", "5.1.0", {"onnx"}, {"cpu"}}}),
            "variant \"onnx-op13\" (\"onnx\"): \"opencv\" 5.1.0 is outside >=4.5.0 <5.0.0; "
            "variant \"ts\" (\"torchscript\"): \"opencv\" is not a backend the variant names");
  EXPECT_EQ(NoVariantReason({kVariants[0]}, {{"opencv", "4.6.0", {"tflite"}, {"cpu"}}}),
            "variant \"onnx-op13\" (\"onnx\"): \"opencv\" does not load \"onnx\"");
}

TEST(RolloutBackends, ADeviceThatDoesNotSayWhatItRunsCannot) {
  EXPECT_EQ(NoVariantReason(kVariants, {}), "reports no backends");
  EXPECT_EQ(NoVariantReason(kVariants, {{"opencv", "4.6.0", {}, {}}}),
            "reports no backend formats (an agent older than the backend plugins)");
}

}  // namespace
}  // namespace edgefleet::deploy
