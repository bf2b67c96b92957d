#include "protocol/registry_messages.h"

#include "protocol/beacon.h"
#include "protocol/node_messages.h"

namespace shardfs {
namespace {

Status Bad(std::string message) {
  return Status::Error(ErrorCode::kBadMessage, std::move(message));
}

Result<std::string> ReadNodeId(const FieldReader& fields) {
  // Read a little more than the limit so a too-long id gets the clearer
  // message from CanonicalNodeId.
  SHARDFS_ASSIGN_OR_RETURN(std::string id, fields.Str("id", kNodeIdLength + 1));
  return CanonicalNodeId(id);
}

Status ValidateHostName(std::string_view host) {
  if (host.empty()) return Bad("host name is empty");
  if (host.size() > kMaxHostNameLength) return Bad("host name is too long");
  for (char c : host) {
    // Printable ASCII only: it ends up in logs and `shardfs status` output.
    if (c <= ' ' || c > '~') return Bad("host name has a non-printable character");
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> CanonicalNodeId(std::string_view id) {
  if (id.size() != kNodeIdLength) {
    return Bad("node id must be " + std::to_string(kNodeIdLength) + " hex characters");
  }
  std::string out(id);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Bad("node id has a non-hex character");
    }
  }
  return out;
}

FieldWriter RegisterNodeRequest::Encode() const {
  FieldWriter w;
  w.Str("id", node_id)
      .Str("ep", endpoint)
      .Str("host", host)
      .U64("cap", capacity)
      .U64("used", used)
      .U64("shards", shard_count);
  return w;
}

Result<RegisterNodeRequest> RegisterNodeRequest::Decode(const FieldReader& fields) {
  RegisterNodeRequest r;
  SHARDFS_ASSIGN_OR_RETURN(r.node_id, ReadNodeId(fields));
  SHARDFS_ASSIGN_OR_RETURN(r.endpoint, fields.Str("ep", kMaxEndpointLength));
  SHARDFS_ASSIGN_OR_RETURN(TcpEndpoint ep, ParseTcpEndpoint(r.endpoint));
  // The registry hands this endpoint to every client: it must be reachable.
  if (ep.IsWildcard() || ep.port == 0) {
    return Bad("node endpoint '" + r.endpoint + "' is not connectable");
  }
  SHARDFS_ASSIGN_OR_RETURN(r.host, fields.Str("host", kMaxHostNameLength));
  SHARDFS_RETURN_IF_ERROR(ValidateHostName(r.host));
  SHARDFS_ASSIGN_OR_RETURN(r.capacity, fields.U64("cap"));
  SHARDFS_ASSIGN_OR_RETURN(r.used, fields.U64("used"));
  SHARDFS_ASSIGN_OR_RETURN(r.shard_count, fields.U64("shards"));
  return r;
}

FieldWriter RegisterNodeReply::Encode() const {
  FieldWriter w;
  w.U64("epoch", epoch);
  return w;
}

Result<RegisterNodeReply> RegisterNodeReply::Decode(const FieldReader& fields) {
  RegisterNodeReply r;
  SHARDFS_ASSIGN_OR_RETURN(r.epoch, fields.U64("epoch"));
  return r;
}

FieldWriter HeartbeatRequest::Encode() const {
  FieldWriter w;
  w.Str("id", node_id).U64("used", used).U64("cap", capacity).U64("shards", shard_count);
  return w;
}

Result<HeartbeatRequest> HeartbeatRequest::Decode(const FieldReader& fields) {
  HeartbeatRequest r;
  SHARDFS_ASSIGN_OR_RETURN(r.node_id, ReadNodeId(fields));
  SHARDFS_ASSIGN_OR_RETURN(r.used, fields.U64("used"));
  SHARDFS_ASSIGN_OR_RETURN(r.capacity, fields.U64("cap"));
  SHARDFS_ASSIGN_OR_RETURN(r.shard_count, fields.U64("shards"));
  return r;
}

FieldWriter HeartbeatReply::Encode() const {
  FieldWriter w;
  w.U64("epoch", epoch).Bool("known", known);
  return w;
}

Result<HeartbeatReply> HeartbeatReply::Decode(const FieldReader& fields) {
  HeartbeatReply r;
  SHARDFS_ASSIGN_OR_RETURN(r.epoch, fields.U64("epoch"));
  SHARDFS_ASSIGN_OR_RETURN(r.known, fields.Bool("known"));
  return r;
}

FieldWriter GetClusterMapRequest::Encode() const {
  return FieldWriter();
}

Result<GetClusterMapRequest> GetClusterMapRequest::Decode(const FieldReader& /*fields*/) {
  return GetClusterMapRequest{};
}

FieldWriter ReportBadReplicaRequest::Encode() const {
  FieldWriter w;
  w.Str("id", node_id);
  EncodeShardKey(w, key);
  w.Str("why", std::string_view(reason).substr(0, kMaxBadReplicaReasonLength));
  return w;
}

Result<ReportBadReplicaRequest> ReportBadReplicaRequest::Decode(const FieldReader& r) {
  ReportBadReplicaRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.node_id, ReadNodeId(r));
  SHARDFS_ASSIGN_OR_RETURN(m.key, DecodeShardKey(r));
  SHARDFS_ASSIGN_OR_RETURN(m.reason, r.Str("why", kMaxBadReplicaReasonLength));
  return m;
}

}  // namespace shardfs
