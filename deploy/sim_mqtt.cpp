#include "deploy/sim_mqtt.hpp"

namespace edgefleet::deploy::sim_mqtt {
namespace {

void Byte(std::string* out, unsigned v) { out->push_back(static_cast<char>(v & 0xffu)); }

void U16(std::string* out, std::size_t v) {
  Byte(out, static_cast<unsigned>(v >> 8));
  Byte(out, static_cast<unsigned>(v));
}

// A UTF-8 string field: two length bytes, then the bytes. Callers pass fields under 64 KiB
// (topics and names the simulator made, a status payload of a few hundred bytes).
void Str(std::string* out, std::string_view s) {
  U16(out, s.size());
  out->append(s);
}

// The fixed header: type and flags, then the remaining length in 7-bit groups.
void Header(std::string* out, Type type, unsigned flags, std::size_t remaining) {
  Byte(out, (static_cast<unsigned>(type) << 4) | flags);
  do {
    unsigned digit = remaining % 128;
    remaining /= 128;
    if (remaining > 0) digit |= 0x80u;
    Byte(out, digit);
  } while (remaining > 0);
}

std::uint16_t ReadU16(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(s[at]) << 8) |
                                    static_cast<unsigned char>(s[at + 1]));
}

}  // namespace

void AppendConnect(std::string* out, std::string_view client_id, std::uint16_t keepalive_s,
                   const Will& will, std::string_view username, std::string_view password) {
  const std::size_t remaining = 10 + 2 + client_id.size() + 2 + will.topic.size() + 2 +
                                will.payload.size() + (username.empty() ? 0 : 2 + username.size()) +
                                (password.empty() ? 0 : 2 + password.size());
  Header(out, Type::kConnect, 0, remaining);
  Str(out, "MQTT");
  Byte(out, 4);  // protocol level: 3.1.1
  unsigned flags = 0x02u /* clean session */ | 0x04u /* will */ | 0x08u /* will QoS 1 */;
  if (will.retain) flags |= 0x20u;
  if (!username.empty()) flags |= 0x80u;
  if (!password.empty()) flags |= 0x40u;
  Byte(out, flags);
  U16(out, keepalive_s);
  Str(out, client_id);
  Str(out, will.topic);
  Str(out, will.payload);
  if (!username.empty()) Str(out, username);
  if (!password.empty()) Str(out, password);
}

void AppendSubscribe(std::string* out, std::uint16_t id, const std::vector<std::string>& topics) {
  std::size_t remaining = 2;
  for (const std::string& t : topics) remaining += 2 + t.size() + 1;
  Header(out, Type::kSubscribe, 0x2u, remaining);
  U16(out, id);
  for (const std::string& t : topics) {
    Str(out, t);
    Byte(out, 1);  // QoS 1
  }
}

void AppendPublish(std::string* out, std::string_view topic, std::string_view payload,
                   std::uint16_t id, bool retain) {
  Header(out, Type::kPublish, 0x2u /* QoS 1 */ | (retain ? 0x1u : 0u),
         2 + topic.size() + 2 + payload.size());
  Str(out, topic);
  U16(out, id);
  out->append(payload);
}

void AppendPuback(std::string* out, std::uint16_t id) {
  Header(out, Type::kPuback, 0, 2);
  U16(out, id);
}

void AppendPingreq(std::string* out) { Header(out, Type::kPingreq, 0, 0); }

void AppendDisconnect(std::string* out) { Header(out, Type::kDisconnect, 0, 0); }

Read NextPacket(std::string_view in, std::size_t max_body, Packet* p, std::size_t* used) {
  if (in.empty()) return Read::kIncomplete;
  std::size_t remaining = 0;
  std::size_t at = 1;
  for (unsigned shift = 0;; shift += 7) {
    if (at == 5) return Read::kMalformed;  // a fifth length byte
    if (at >= in.size()) return Read::kIncomplete;
    const auto digit = static_cast<unsigned char>(in[at++]);
    remaining |= static_cast<std::size_t>(digit & 0x7fu) << shift;
    if ((digit & 0x80u) == 0) break;
  }
  const auto first = static_cast<unsigned char>(in[0]);
  const auto type = static_cast<Type>(first >> 4);
  switch (type) {
    case Type::kConnack:
    case Type::kPublish:
    case Type::kPuback:
    case Type::kSuback:
    case Type::kPingresp:
      break;
    default:
      return Read::kMalformed;
  }
  if (remaining > max_body) return Read::kMalformed;
  if (in.size() - at < remaining) return Read::kIncomplete;
  p->type = type;
  p->flags = static_cast<std::uint8_t>(first & 0x0fu);
  p->body = in.substr(at, remaining);
  *used = at + remaining;
  return Read::kPacket;
}

bool ParseConnack(const Packet& p, std::uint8_t* return_code) {
  if (p.type != Type::kConnack || p.body.size() != 2) return false;
  *return_code = static_cast<std::uint8_t>(p.body[1]);
  return true;
}

bool ParsePuback(const Packet& p, std::uint16_t* id) {
  if (p.type != Type::kPuback || p.body.size() != 2) return false;
  *id = ReadU16(p.body, 0);
  return true;
}

bool ParsePublish(const Packet& p, Publish* out) {
  if (p.type != Type::kPublish) return false;
  out->qos = static_cast<std::uint8_t>((p.flags >> 1) & 0x3u);
  if (out->qos > 1 || p.body.size() < 2) return false;
  const std::size_t topic_len = ReadU16(p.body, 0);
  std::size_t at = 2 + topic_len;
  if (p.body.size() < at + (out->qos == 1 ? 2 : 0)) return false;
  out->topic = p.body.substr(2, topic_len);
  out->id = 0;
  if (out->qos == 1) {
    out->id = ReadU16(p.body, at);
    if (out->id == 0) return false;
    at += 2;
  }
  out->payload = p.body.substr(at);
  return true;
}

}  // namespace edgefleet::deploy::sim_mqtt
