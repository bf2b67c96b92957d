#include "protocol/envelope.h"

#include "protocol/msgpack_bounds.h"

namespace shardfs {
namespace {

constexpr size_t kMaxDepth = 16;

// Bounds for the MessagePack parser itself, per container. They alone let a
// tiny message nest claims of a million elements 16 deep (384 MiB), hence
// CheckClaimedSizes() first.
msgpack::unpack_limit ParserLimits() {
  return msgpack::unpack_limit(/*array=*/1u << 20, /*map=*/1u << 16, /*str=*/kMaxHeaderBytes,
                               /*bin=*/kMaxHeaderBytes, /*ext=*/0, /*depth=*/kMaxDepth);
}

}  // namespace

std::string EncodeHeader(uint16_t type, uint64_t request_id, const FieldWriter& fields) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> packer(out);
  packer.pack_array(4);
  packer.pack_uint16(kProtocolVersion);
  packer.pack_uint16(type);
  packer.pack_uint64(request_id);
  fields.AppendTo(&out);
  return std::string(out.data(), out.size());
}

Result<Envelope> DecodeHeader(std::string_view bytes) {
  if (bytes.empty()) return Status::Error(ErrorCode::kBadMessage, "empty header");
  if (bytes.size() > kMaxHeaderBytes)
    return Status::Error(ErrorCode::kTooLarge, "header too large");
  if (Status claims = CheckClaimedSizes(bytes, 0, kMaxDepth); !claims.ok()) {
    return Status::Error(ErrorCode::kBadMessage, "undecodable header: " + claims.message());
  }
  auto zone = std::make_shared<msgpack::object_handle>();
  std::size_t offset = 0;
  try {
    msgpack::unpack(*zone, bytes.data(), bytes.size(), offset, nullptr, nullptr, ParserLimits());
  } catch (const std::exception& e) {
    return Status::Error(ErrorCode::kBadMessage, std::string("undecodable header: ") + e.what());
  }
  if (offset != bytes.size())
    return Status::Error(ErrorCode::kBadMessage, "trailing bytes after header");
  const msgpack::object& root = zone->get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size != 4) {
    return Status::Error(ErrorCode::kBadMessage, "header is not a 4-item array");
  }
  const msgpack::object* item = root.via.array.ptr;
  for (int i = 0; i < 3; ++i) {
    if (item[i].type != msgpack::type::POSITIVE_INTEGER) {
      return Status::Error(ErrorCode::kBadMessage, "header numbers are not unsigned integers");
    }
  }
  if (item[0].via.u64 > UINT16_MAX || item[1].via.u64 > UINT16_MAX) {
    return Status::Error(ErrorCode::kBadMessage, "header version or type out of range");
  }
  Envelope env;
  env.version = static_cast<uint16_t>(item[0].via.u64);
  env.type = static_cast<uint16_t>(item[1].via.u64);
  env.request_id = item[2].via.u64;
  SHARDFS_ASSIGN_OR_RETURN(env.fields, FieldReader::FromObject(item[3]));
  env.zone = std::move(zone);
  return env;
}

FieldWriter ErrorFields(const Status& status) {
  FieldWriter w;
  w.U64("code", static_cast<uint16_t>(status.code())).Str("message", status.message());
  return w;
}

Status StatusFromErrorFields(const FieldReader& fields) {
  auto code = fields.U64("code", kMaxErrorCode);
  if (!code.ok()) return Status::Error(ErrorCode::kBadMessage, "error reply without a valid code");
  if (*code == 0) return Status::Error(ErrorCode::kBadMessage, "error reply with code OK");
  auto message = fields.OptStr("message", 64 * 1024, "");
  return Status::Error(static_cast<ErrorCode>(*code), message.ok() ? *message : "");
}

}  // namespace shardfs
