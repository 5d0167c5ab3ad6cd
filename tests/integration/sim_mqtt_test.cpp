// The simulator's MQTT 3.1.1 packets (deploy/sim_mqtt.hpp) in-process: what it writes is laid
// out as the specification says (section 3), and what it reads from a broker is taken whole,
// piece by piece, or refused when malformed. simulate_test.cpp runs the same client against a
// real mosquitto broker.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "deploy/sim_mqtt.hpp"

namespace edgefleet {
namespace {

namespace mqtt = deploy::sim_mqtt;

std::string Bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

// Reads exactly one packet from `in`, failing the test otherwise.
mqtt::Packet One(std::string_view in) {
  mqtt::Packet p;
  std::size_t used = 0;
  EXPECT_EQ(mqtt::NextPacket(in, 1u << 20, &p, &used), mqtt::Read::kPacket);
  EXPECT_EQ(used, in.size());
  return p;
}

TEST(SimMqttTest, ConnectCarriesTheWillAndCredentialsAsTheSpecificationLaysThemOut) {
  std::string out;
  mqtt::AppendConnect(&out, "d", 30, mqtt::Will{"t", "p", true}, "", "");
  EXPECT_EQ(out, Bytes({0x10, 19, 0, 4,   'M', 'Q', 'T', 'T', 4, 0x2e, 0,
                        30,   0,  1, 'd', 0,   1,   't', 0,   1, 'p'}));
  out.clear();
  mqtt::AppendConnect(&out, "d", 300, mqtt::Will{"t", "p", false}, "u", "pw");
  // Flags: user name, password, will QoS 1, will, clean session; no will retain.
  EXPECT_EQ(out, Bytes({0x10, 26, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xce, 0x01, 0x2c, 0,   1,
                        'd',  0,  1, 't', 0,   1,   'p', 0,   1, 'u',  0,    2,    'p', 'w'}));
}

TEST(SimMqttTest, SubscribeAsksQos1ForEveryTopic) {
  std::string out;
  mqtt::AppendSubscribe(&out, 0x0102, {"a/b", "c"});
  EXPECT_EQ(out, Bytes({0x82, 12, 1, 2, 0, 3, 'a', '/', 'b', 1, 0, 1, 'c', 1}));
}

TEST(SimMqttTest, APublishReadsBackWithItsTopicIdAndPayloadAtEverySize) {
  // 1, 2, 3 and 4 bytes of remaining length.
  for (std::size_t size : {0u, 200u, 20000u, 3000000u}) {
    const std::string payload(size, 'x');
    std::string out;
    mqtt::AppendPublish(&out, "edgefleet/f/d/telemetry", payload, 65535, size == 200);
    const mqtt::Packet p = [&] {
      mqtt::Packet q;
      std::size_t used = 0;
      EXPECT_EQ(mqtt::NextPacket(out, 4u << 20, &q, &used), mqtt::Read::kPacket) << size;
      EXPECT_EQ(used, out.size()) << size;
      return q;
    }();
    EXPECT_EQ(p.type, mqtt::Type::kPublish);
    EXPECT_EQ(p.flags, size == 200 ? 0x3 : 0x2) << size;  // QoS 1, retain when asked
    mqtt::Publish m;
    ASSERT_TRUE(mqtt::ParsePublish(p, &m)) << size;
    EXPECT_EQ(m.topic, "edgefleet/f/d/telemetry");
    EXPECT_EQ(m.qos, 1);
    EXPECT_EQ(m.id, 65535);
    EXPECT_EQ(m.payload.size(), size);
  }
}

TEST(SimMqttTest, APacketSplitAnywhereIsIncompleteUntilItsLastByte) {
  std::string stream;
  mqtt::AppendPuback(&stream, 7);
  mqtt::AppendPublish(&stream, "t", std::string(300, 'y'), 9, false);
  const std::size_t first = 4;
  for (std::size_t cut = 0; cut < first; ++cut) {
    mqtt::Packet p;
    std::size_t used = 0;
    EXPECT_EQ(mqtt::NextPacket(std::string_view(stream).substr(0, cut), 1024, &p, &used),
              mqtt::Read::kIncomplete)
        << cut;
  }
  mqtt::Packet p;
  std::size_t used = 0;
  ASSERT_EQ(mqtt::NextPacket(stream, 1024, &p, &used), mqtt::Read::kPacket);
  ASSERT_EQ(used, first);
  std::uint16_t id = 0;
  ASSERT_TRUE(mqtt::ParsePuback(p, &id));
  EXPECT_EQ(id, 7);
  const std::string_view rest = std::string_view(stream).substr(first);
  for (std::size_t cut = 0; cut < rest.size(); ++cut) {
    EXPECT_EQ(mqtt::NextPacket(rest.substr(0, cut), 1024, &p, &used), mqtt::Read::kIncomplete)
        << cut;
  }
  mqtt::Publish m;
  ASSERT_TRUE(mqtt::ParsePublish(One(rest), &m));
  EXPECT_EQ(m.id, 9);
  EXPECT_EQ(m.payload, std::string(300, 'y'));
}

TEST(SimMqttTest, MalformedOrUnexpectedPacketsAreRefused) {
  mqtt::Packet p;
  std::size_t used = 0;
  // A fifth remaining-length byte, and a length over the bound before its bytes have come.
  EXPECT_EQ(mqtt::NextPacket(Bytes({0x30, 0xff, 0xff, 0xff, 0xff, 0x01}), 1u << 20, &p, &used),
            mqtt::Read::kMalformed);
  EXPECT_EQ(mqtt::NextPacket(Bytes({0x30, 0x81, 0x08}), 1024, &p, &used), mqtt::Read::kMalformed);
  // Packets only a client sends, and reserved types.
  for (int first : {0x10, 0x82, 0xc0, 0xe0, 0x00, 0xf0, 0x50, 0x62, 0x70, 0xb0}) {
    EXPECT_EQ(mqtt::NextPacket(Bytes({first, 0}), 1024, &p, &used), mqtt::Read::kMalformed)
        << first;
  }
  std::uint8_t rc = 0;
  EXPECT_FALSE(mqtt::ParseConnack(One(Bytes({0x20, 3, 0, 0, 0})), &rc));
  EXPECT_TRUE(mqtt::ParseConnack(One(Bytes({0x20, 2, 0, 5})), &rc));
  EXPECT_EQ(rc, 5);
  std::uint16_t id = 0;
  EXPECT_FALSE(mqtt::ParsePuback(One(Bytes({0x40, 1, 0})), &id));
  mqtt::Publish m;
  // QoS 2, a topic longer than the packet, a QoS 1 packet with id 0 or none at all.
  EXPECT_FALSE(mqtt::ParsePublish(One(Bytes({0x34, 5, 0, 1, 't', 0, 1})), &m));
  EXPECT_FALSE(mqtt::ParsePublish(One(Bytes({0x30, 4, 0, 9, 't', 't'})), &m));
  EXPECT_FALSE(mqtt::ParsePublish(One(Bytes({0x32, 5, 0, 1, 't', 0, 0})), &m));
  EXPECT_FALSE(mqtt::ParsePublish(One(Bytes({0x32, 3, 0, 1, 't'})), &m));
  // QoS 0 has no id. (The parsed views point into the bytes: keep them alive.)
  const std::string qos0 = Bytes({0x30, 4, 0, 1, 't', 'z'});
  ASSERT_TRUE(mqtt::ParsePublish(One(qos0), &m));
  EXPECT_EQ(m.qos, 0);
  EXPECT_EQ(m.payload, "z");
}

}  // namespace
}  // namespace edgefleet
