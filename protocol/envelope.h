// The envelope of every shardfs message: framing, version and limits.
//
// A message is one or two ZeroMQ frames. Frame 1 is the header, a MessagePack
// array [version, type, request id, fields]; frame 2, when present, is the raw
// payload (shard bytes), so payloads never pass through MessagePack. A reply
// carries the request's id and either the reply type or kError with
// {code, message}. DecodeHeader() accepts any byte string and returns an
// error value for everything that is not a well-formed header within limits.
#pragma once

#include <cstdint>
#include <memory>
#include <msgpack.hpp>
#include <string>
#include <string_view>

#include "protocol/fields.h"
#include "protocol/message_type.h"
#include "src/status.h"

namespace shardfs {

// A header larger than this is refused before it is parsed.
inline constexpr size_t kMaxHeaderBytes = 4u << 20;
// The largest payload frame a server accepts (one shard plus slack).
inline constexpr size_t kMaxPayloadBytes = 64u << 20;

struct Envelope {
  uint16_t version = 0;
  uint16_t type = 0;
  uint64_t request_id = 0;
  FieldReader fields;
  // Owns the memory `fields` points into.
  std::shared_ptr<msgpack::object_handle> zone;

  bool IsError() const { return type == static_cast<uint16_t>(MessageType::kError); }
};

std::string EncodeHeader(uint16_t type, uint64_t request_id, const FieldWriter& fields);
inline std::string EncodeHeader(MessageType type, uint64_t request_id, const FieldWriter& fields) {
  return EncodeHeader(static_cast<uint16_t>(type), request_id, fields);
}

// Parses and bounds-checks a header. The version is returned, not checked:
// a server answers kVersionMismatch with the request id it could read.
Result<Envelope> DecodeHeader(std::string_view bytes);

// The fields of an error reply, and back.
FieldWriter ErrorFields(const Status& status);
Status StatusFromErrorFields(const FieldReader& fields);

}  // namespace shardfs
