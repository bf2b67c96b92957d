#include "protocol/session_messages.h"

namespace shardfs {

FieldWriter OpenRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino);
  if (session != 0) w.U64("session", session);
  return w;
}

Result<OpenRequest> OpenRequest::Decode(const FieldReader& r) {
  OpenRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.session, r.OptU64("session", 0));
  return m;
}

FieldWriter RenewSessionRequest::Encode() const {
  FieldWriter w;
  w.U64("session", session).Bool("full", full);
  if (full) w.U64Array("inos", inos).U64Array("counts", counts);
  return w;
}

Result<RenewSessionRequest> RenewSessionRequest::Decode(const FieldReader& r) {
  RenewSessionRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.session, r.U64("session"));
  if (m.session == 0) return Status::Error(ErrorCode::kBadMessage, "session 0 is no session");
  SHARDFS_ASSIGN_OR_RETURN(m.full, r.Bool("full"));
  if (!m.full) return m;
  SHARDFS_ASSIGN_OR_RETURN(m.inos, r.U64Array("inos", kMaxSessionFiles));
  SHARDFS_ASSIGN_OR_RETURN(m.counts, r.U64Array("counts", kMaxSessionFiles));
  if (m.inos.size() != m.counts.size()) {
    return Status::Error(ErrorCode::kBadMessage, "inos and counts differ in length");
  }
  for (uint64_t c : m.counts) {
    if (c == 0 || c > UINT32_MAX) return Status::Error(ErrorCode::kBadMessage, "bad open count");
  }
  return m;
}

FieldWriter RenewSessionReply::Encode() const {
  FieldWriter w;
  w.Bool("known", known).U64("lease_ms", lease_ms);
  return w;
}

Result<RenewSessionReply> RenewSessionReply::Decode(const FieldReader& r) {
  RenewSessionReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.known, r.Bool("known"));
  SHARDFS_ASSIGN_OR_RETURN(m.lease_ms, r.U64("lease_ms"));
  return m;
}

}  // namespace shardfs
