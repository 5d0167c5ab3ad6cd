// The MQTT 3.1.1 packets `edgefleet simulate` writes and reads, with no I/O: the simulator's own
// client, so ten thousand simulated devices cost little more than the bytes they send.
//
// Why not libmosquitto, which every other client here uses (telemetry/mqtt_client.hpp): a load
// tool's cost is taken from the system it measures. Driving 5,000 connections, libmosquitto
// 2.0.11 wrote a byte to the socket pair it keeps beside each connection on every publish and
// read each PUBACK a header byte at a time; the simulator with this client makes one send and
// one read per message (strace), and a 5,000-device process took about 23 % of a core in a
// 10,000-device bench run against 30-36 % before (bench/RESULTS.md, run 10). The simulator only
// speaks a device's part of the protocol: CONNECT with a last will, SUBSCRIBE at QoS 1, PUBLISH
// at QoS 1, PUBACK, PINGREQ and DISCONNECT out; CONNACK, SUBACK, PUBACK, PUBLISH (QoS 0 or 1)
// and PINGRESP in. Anything else from the broker is a protocol error and ends the connection.
//
// Thread safety: free functions over caller-owned buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgefleet::deploy::sim_mqtt {

// Packet types (the high nibble of the first byte).
enum class Type : std::uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kSubscribe = 8,
  kSuback = 9,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
};

struct Will {
  std::string_view topic;
  std::string_view payload;
  bool retain = true;  // sent at QoS 1
};

// Each Append* adds one whole packet to `out`.
// CONNECT with a clean session; `username` empty: none (then `password` must be empty too).
void AppendConnect(std::string* out, std::string_view client_id, std::uint16_t keepalive_s,
                   const Will& will, std::string_view username, std::string_view password);
void AppendSubscribe(std::string* out, std::uint16_t id, const std::vector<std::string>& topics);
// PUBLISH at QoS 1 with message id `id` (1..65535).
void AppendPublish(std::string* out, std::string_view topic, std::string_view payload,
                   std::uint16_t id, bool retain);
void AppendPuback(std::string* out, std::uint16_t id);
void AppendPingreq(std::string* out);
void AppendDisconnect(std::string* out);

struct Packet {
  Type type = Type::kConnect;
  std::uint8_t flags = 0;  // the low nibble of the first byte
  std::string_view body;   // the variable header and payload (points into the input)
};

enum class Read { kPacket, kIncomplete, kMalformed };
// Reads the packet at the start of `in`: kPacket sets `*p` and `*used` (its whole length);
// kIncomplete: more bytes are needed; kMalformed: a remaining length over four bytes or above
// `max_body`, or a type the simulator never receives.
Read NextPacket(std::string_view in, std::size_t max_body, Packet* p, std::size_t* used);

// Decoders of a packet NextPacket returned; false when the body does not hold what the type
// requires.
bool ParseConnack(const Packet& p, std::uint8_t* return_code);
bool ParsePuback(const Packet& p, std::uint16_t* id);
struct Publish {
  std::string_view topic;
  std::string_view payload;
  std::uint8_t qos = 0;
  std::uint16_t id = 0;  // QoS 1 only
};
// Also false for QoS 2 or 3: the simulator subscribes at QoS 1, so the broker never sends more.
bool ParsePublish(const Packet& p, Publish* out);

}  // namespace edgefleet::deploy::sim_mqtt
