#include "protocol/health_messages.h"

#include "protocol/node_messages.h"

namespace shardfs {

FieldWriter FsckRequest::Encode() const {
  FieldWriter w;
  w.U64("max", max_files);
  return w;
}

Result<FsckRequest> FsckRequest::Decode(const FieldReader& r) {
  FsckRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.max_files, r.OptU64("max", 1000));
  if (m.max_files > kMaxFsckFiles) {
    return Status::Error(ErrorCode::kBadMessage, "fsck asks for too many files");
  }
  return m;
}

FieldWriter FsckReply::Encode() const {
  std::vector<FieldWriter> files_out;
  files_out.reserve(affected.size());
  for (const FsckFile& f : affected) {
    FieldWriter item;
    item.Str("path", f.path)
        .U64("ino", f.ino)
        .Str("state", f.state)
        .U64("shards", f.shards)
        .U64("fewest", f.fewest);
    files_out.push_back(std::move(item));
  }
  std::vector<FieldWriter> nodes_out;
  nodes_out.reserve(nodes.size());
  for (const NodeReplicaCount& n : nodes) {
    FieldWriter item;
    item.Str("id", n.node_id).U64("replicas", n.replicas).U64("bytes", n.bytes);
    nodes_out.push_back(std::move(item));
  }
  FieldWriter rep;
  rep.U64("pending", repair.pending_copies)
      .U64("pending_bytes", repair.pending_bytes)
      .U64("copied", repair.copied_copies)
      .U64("copied_bytes", repair.copied_bytes)
      .U64("rate", repair.bytes_per_second)
      .U64("eta", repair.eta_seconds);
  FieldWriter w;
  w.U64("files", files)
      .U64("shards", shards)
      .U64("healthy", healthy)
      .U64("under", under_replicated)
      .U64("unavailable", unavailable)
      .U64("lost", lost)
      .U64("files_degraded", files_degraded)
      .U64("files_lost", files_lost)
      .MapArray("affected", files_out)
      .MapArray("nodes", nodes_out)
      .Map("repair", rep);
  return w;
}

Result<FsckReply> FsckReply::Decode(const FieldReader& r) {
  FsckReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.files, r.U64("files"));
  SHARDFS_ASSIGN_OR_RETURN(m.shards, r.U64("shards"));
  SHARDFS_ASSIGN_OR_RETURN(m.healthy, r.U64("healthy"));
  SHARDFS_ASSIGN_OR_RETURN(m.under_replicated, r.U64("under"));
  SHARDFS_ASSIGN_OR_RETURN(m.unavailable, r.U64("unavailable"));
  SHARDFS_ASSIGN_OR_RETURN(m.lost, r.U64("lost"));
  SHARDFS_ASSIGN_OR_RETURN(m.files_degraded, r.U64("files_degraded"));
  SHARDFS_ASSIGN_OR_RETURN(m.files_lost, r.U64("files_lost"));
  SHARDFS_ASSIGN_OR_RETURN(auto files_in, r.MapArray("affected", kMaxFsckFiles));
  for (const FieldReader& item : files_in) {
    FsckFile f;
    SHARDFS_ASSIGN_OR_RETURN(f.path, item.Str("path", kMaxWirePath));
    SHARDFS_ASSIGN_OR_RETURN(f.ino, item.U64("ino"));
    SHARDFS_ASSIGN_OR_RETURN(f.state, item.Str("state", 16));
    SHARDFS_ASSIGN_OR_RETURN(f.shards, item.U64("shards"));
    SHARDFS_ASSIGN_OR_RETURN(f.fewest, item.U64("fewest"));
    m.affected.push_back(std::move(f));
  }
  SHARDFS_ASSIGN_OR_RETURN(auto nodes_in, r.MapArray("nodes", 65536));
  for (const FieldReader& item : nodes_in) {
    NodeReplicaCount n;
    SHARDFS_ASSIGN_OR_RETURN(n.node_id, item.Str("id", kMaxNodeIdLength));
    SHARDFS_ASSIGN_OR_RETURN(n.replicas, item.U64("replicas"));
    SHARDFS_ASSIGN_OR_RETURN(n.bytes, item.OptU64("bytes", 0));
    m.nodes.push_back(std::move(n));
  }
  SHARDFS_ASSIGN_OR_RETURN(FieldReader rep, r.Map("repair"));
  SHARDFS_ASSIGN_OR_RETURN(m.repair.pending_copies, rep.U64("pending"));
  SHARDFS_ASSIGN_OR_RETURN(m.repair.pending_bytes, rep.U64("pending_bytes"));
  SHARDFS_ASSIGN_OR_RETURN(m.repair.copied_copies, rep.U64("copied"));
  SHARDFS_ASSIGN_OR_RETURN(m.repair.copied_bytes, rep.U64("copied_bytes"));
  SHARDFS_ASSIGN_OR_RETURN(m.repair.bytes_per_second, rep.U64("rate"));
  SHARDFS_ASSIGN_OR_RETURN(m.repair.eta_seconds, rep.U64("eta"));
  return m;
}

FieldWriter RebalanceReply::Encode() const {
  FieldWriter w;
  w.U64("spread", spread_percent).U64("threshold", threshold_percent);
  return w;
}

Result<RebalanceReply> RebalanceReply::Decode(const FieldReader& r) {
  RebalanceReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.spread_percent, r.U64("spread", 100));
  SHARDFS_ASSIGN_OR_RETURN(m.threshold_percent, r.U64("threshold", 100));
  return m;
}

FieldWriter SetDrainingRequest::Encode() const {
  FieldWriter w;
  w.Str("id", node_id).Bool("draining", draining);
  return w;
}

Result<SetDrainingRequest> SetDrainingRequest::Decode(const FieldReader& r) {
  SetDrainingRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.node_id, r.Str("id", kMaxNodeIdLength));
  SHARDFS_ASSIGN_OR_RETURN(m.draining, r.OptBool("draining", true));
  return m;
}

}  // namespace shardfs
