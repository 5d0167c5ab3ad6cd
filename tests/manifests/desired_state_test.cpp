// The desired-state document.
#include <gtest/gtest.h>

#include "manifests/desired_state.hpp"
#include "tests/manifests/samples.hpp"
#include "tests/manifests/test_util.hpp"

namespace edgefleet::manifests {
namespace {

using testing::ParseFailsWith;
using testing::SampleDesiredStateBody;

Result<DesiredState> ParseDesired(const nlohmann::json& body) {
  return DesiredState::FromJson(body, "desired");
}

TEST(DesiredStateTest, RoundTrip) {
  const auto body = SampleDesiredStateBody();
  auto ds = ParseDesired(body);
  ASSERT_TRUE(ds) << ds.error().message;
  EXPECT_EQ(ds->fleet, "demo");
  EXPECT_EQ(ds->target_kind, "group");
  EXPECT_EQ(ds->target, "lab");
  EXPECT_EQ(ds->serial, 7u);
  ASSERT_EQ(ds->models.size(), 1u);
  EXPECT_EQ(ds->models[0].version.ToString(), "1.1.0");
  EXPECT_EQ(ds->models[0].bundle.size, 4096u);
  EXPECT_TRUE(ds->models[0].allow_downgrade);
  ASSERT_EQ(ds->models[0].requirements.size(), 1u);
  EXPECT_EQ(ds->models[0].requirements[0].file, "");
  EXPECT_EQ(ds->models[0].requirements[0].opset, 10);
  EXPECT_EQ(ds->extensions["x-rollout"], "wave-1");
  EXPECT_EQ(ds->ToJson(), body);
}

TEST(DesiredStateTest, DeviceTargetAndDefaults) {
  auto body = SampleDesiredStateBody();
  body["target"] = {{"device", "box-1"}};
  body["models"][0].erase("allow_downgrade");
  body["models"][0].erase("requirements");
  body["models"][0]["bundle"]["url"] = "file:///srv/bundles/digits.efb";
  auto ds = ParseDesired(body);
  ASSERT_TRUE(ds) << ds.error().message;
  EXPECT_EQ(ds->target_kind, "device");
  EXPECT_EQ(ds->target, "box-1");
  EXPECT_FALSE(ds->models[0].allow_downgrade);
  EXPECT_TRUE(ds->models[0].requirements.empty());
  auto again = ParseDesired(ds->ToJson());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->ToJson(), ds->ToJson());
}

TEST(DesiredStateTest, BadTarget) {
  auto body = SampleDesiredStateBody();
  body["target"] = {{"device", "box-1"}, {"group", "lab"}};
  EXPECT_TRUE(ParseFailsWith(ParseDesired(body),
                             "desired: signed.target: expected exactly one of \"device\" or "
                             "\"group\", found both"));
  body["target"] = nlohmann::json::object();
  EXPECT_TRUE(ParseFailsWith(ParseDesired(body),
                             "desired: signed.target: expected exactly one of \"device\" or "
                             "\"group\", found neither"));
  body["target"] = {{"fleet", "x"}};
  EXPECT_TRUE(ParseFailsWith(ParseDesired(body),
                             "desired: signed.target.fleet: unknown field, expected one of "
                             "device, group (or an \"x-\" extension), found \"fleet\""));
  body["target"] = {{"device", "Box 1"}};
  EXPECT_TRUE(ParseFailsWith(ParseDesired(body),
                             "desired: signed.target.device: expected a name matching "
                             "[a-z0-9][a-z0-9._-]{0,63}, found \"Box 1\""));
  body["target"] = "lab";
  EXPECT_TRUE(ParseFailsWith(ParseDesired(body),
                             "desired: signed.target: wrong type, expected object, found string"));
}

TEST(DesiredStateTest, FieldProblems) {
  auto body = SampleDesiredStateBody();
  body["models"][0]["bundle"]["url"] = "ftp://x/y.efb";
  body["models"][0]["bundle"]["size"] = 0;
  body["models"][0]["requirements"][0]["file"] = "model/digits_op10.onnx";
  body["models"][0]["allow_downgrade"] = "yes";
  body["serial"] = -1;
  body["expires"] = "2026-11-20T05:00:00Z";
  body["models"].push_back(body["models"][0]);
  auto ds = ParseDesired(body);
  for (const char* line : {
           "desired: signed.models[0].bundle.url: expected a URL starting with http://, https:// "
           "or file://, found \"ftp://x/y.efb\"",
           "desired: signed.models[0].bundle.size: expected an integer >= 1, found 0",
           "desired: signed.models[0].requirements[0].file: unknown field, expected one of "
           "backends, format, forms, id, inputs, operators, opset, outputs (or an \"x-\" "
           "extension), found \"file\"",
           "desired: signed.models[0].allow_downgrade: wrong type, expected boolean, found string",
           "desired: signed.serial: expected an integer >= 0, found -1",
           "desired: signed.expires: expected a time after created (2026-11-21T05:00:00Z), found "
           "2026-11-20T05:00:00Z",
       }) {
    EXPECT_TRUE(ParseFailsWith(ds, line));
  }
}

TEST(DesiredStateTest, DuplicateModelNames) {
  auto body = SampleDesiredStateBody();
  body["models"].push_back(body["models"][0]);
  body["models"][1]["version"] = "1.2.0";
  EXPECT_TRUE(ParseFailsWith(ParseDesired(body),
                             "desired: signed.models[1].name: expected unique model names, found "
                             "\"digits\" already listed at signed.models[0].name"));
}

TEST(DesiredStateTest, MissingAndUnknown) {
  auto body = SampleDesiredStateBody();
  body.erase("serial");
  body.erase("fleet");
  body["models"][0]["bundle"].erase("sha256");
  body["priority"] = 1;
  auto ds = ParseDesired(body);
  ASSERT_FALSE(ds);
  EXPECT_EQ(testing::Lines(ds.error().message).size(), 4u) << ds.error().message;
  EXPECT_TRUE(ParseFailsWith(
      ds, "desired: signed.serial: missing required field, expected integer, found nothing"));
  EXPECT_TRUE(ParseFailsWith(ds,
                             "desired: signed.models[0].bundle.sha256: missing required field, "
                             "expected string, found nothing"));
}

}  // namespace
}  // namespace edgefleet::manifests
