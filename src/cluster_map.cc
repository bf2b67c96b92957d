#include "src/cluster_map.h"

#include <algorithm>

#include "protocol/beacon.h"
#include "protocol/registry_messages.h"

namespace shardfs {

std::string_view NodeStateName(NodeState state) {
  switch (state) {
    case NodeState::kUp:
      return "up";
    case NodeState::kDown:
      return "down";
    case NodeState::kDraining:
      return "draining";
  }
  return "unknown";
}

FieldWriter NodeRecord::Encode() const {
  FieldWriter w;
  w.Str("id", id)
      .Str("ep", endpoint)
      .Str("host", host)
      .U64("state", static_cast<uint64_t>(state))
      .U64("cap", capacity)
      .U64("used", used)
      .U64("shards", shard_count)
      .I64("seen", last_seen_ms);
  return w;
}

Result<NodeRecord> NodeRecord::Decode(const FieldReader& fields) {
  NodeRecord r;
  SHARDFS_ASSIGN_OR_RETURN(std::string raw_id, fields.Str("id", kNodeIdLength + 1));
  SHARDFS_ASSIGN_OR_RETURN(r.id, CanonicalNodeId(raw_id));
  SHARDFS_ASSIGN_OR_RETURN(r.endpoint, fields.Str("ep", kMaxEndpointLength));
  SHARDFS_RETURN_IF_ERROR(ParseTcpEndpoint(r.endpoint).status());
  SHARDFS_ASSIGN_OR_RETURN(r.host, fields.Str("host", kMaxHostNameLength));
  SHARDFS_ASSIGN_OR_RETURN(uint64_t state, fields.U64("state", 2));
  r.state = static_cast<NodeState>(state);
  SHARDFS_ASSIGN_OR_RETURN(r.capacity, fields.U64("cap"));
  SHARDFS_ASSIGN_OR_RETURN(r.used, fields.U64("used"));
  SHARDFS_ASSIGN_OR_RETURN(r.shard_count, fields.U64("shards"));
  SHARDFS_ASSIGN_OR_RETURN(r.last_seen_ms, fields.I64("seen"));
  return r;
}

FieldWriter ClusterMap::Encode() const {
  std::vector<FieldWriter> items;
  items.reserve(nodes.size());
  for (const NodeRecord& n : nodes) items.push_back(n.Encode());
  FieldWriter w;
  w.U64("epoch", epoch).MapArray("nodes", items);
  return w;
}

Result<ClusterMap> ClusterMap::Decode(const FieldReader& fields) {
  ClusterMap map;
  SHARDFS_ASSIGN_OR_RETURN(map.epoch, fields.U64("epoch"));
  SHARDFS_ASSIGN_OR_RETURN(std::vector<FieldReader> items,
                           fields.MapArray("nodes", kMaxClusterNodes));
  map.nodes.reserve(items.size());
  for (const FieldReader& item : items) {
    SHARDFS_ASSIGN_OR_RETURN(NodeRecord node, NodeRecord::Decode(item));
    map.nodes.push_back(std::move(node));
  }
  // Find() relies on the order; a peer's order is not trusted.
  std::sort(map.nodes.begin(), map.nodes.end(),
            [](const NodeRecord& a, const NodeRecord& b) { return a.id < b.id; });
  auto dup =
      std::adjacent_find(map.nodes.begin(), map.nodes.end(),
                         [](const NodeRecord& a, const NodeRecord& b) { return a.id == b.id; });
  if (dup != map.nodes.end()) {
    return Status::Error(ErrorCode::kBadMessage, "cluster map lists node " + dup->id + " twice");
  }
  return map;
}

const NodeRecord* ClusterMap::Find(std::string_view id) const {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), id,
                             [](const NodeRecord& n, std::string_view key) { return n.id < key; });
  if (it == nodes.end() || it->id != id) return nullptr;
  return &*it;
}

std::vector<const NodeRecord*> ClusterMap::Live() const {
  std::vector<const NodeRecord*> out;
  for (const NodeRecord& n : nodes) {
    if (n.state == NodeState::kUp) out.push_back(&n);
  }
  return out;
}

}  // namespace shardfs
