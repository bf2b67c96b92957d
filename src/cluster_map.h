// ClusterMap: which node servers exist, where they listen and whether they are up.
//
// The registry owns the authoritative map (nodeserver/membership.h) and
// publishes copies; mounts, node servers and the admin CLI keep the latest
// copy they received (src/cluster_map_subscriber.h) and use it for placement
// and for finding replicas. The epoch grows whenever the topology changes
// (a node joins, leaves, changes address, capacity or state); usage figures
// (used, shard_count, last_seen_ms) refresh without a new epoch, so "did the
// epoch change?" is the cheap test for "must placement be recomputed?".
//
// A ClusterMap is a plain value: copy it freely, share it as
// shared_ptr<const ClusterMap> across threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/fields.h"
#include "src/status.h"

namespace shardfs {

// Wire values are part of the format: append, never renumber.
enum class NodeState : uint8_t {
  kUp = 0,        // heartbeating; takes new shards
  kDown = 1,      // silent for longer than the registry's down-after
  kDraining = 2,  // alive and serving reads, but takes no new shards
};

std::string_view NodeStateName(NodeState state);

struct NodeRecord {
  std::string id;        // 32 lower-case hex characters
  std::string endpoint;  // tcp://HOST:PORT
  std::string host;      // machine name; replicas are spread over hosts
  NodeState state = NodeState::kUp;
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t shard_count = 0;
  int64_t last_seen_ms = 0;  // registry's wall clock (Unix ms) at the last heartbeat

  uint64_t free() const { return capacity > used ? capacity - used : 0; }
  FieldWriter Encode() const;
  static Result<NodeRecord> Decode(const FieldReader& fields);
  bool operator==(const NodeRecord&) const = default;
};

// The most nodes one map may hold on the wire.
inline constexpr size_t kMaxClusterNodes = 65536;

struct ClusterMap {
  uint64_t epoch = 0;
  std::vector<NodeRecord> nodes;  // sorted by id

  FieldWriter Encode() const;
  static Result<ClusterMap> Decode(const FieldReader& fields);

  const NodeRecord* Find(std::string_view id) const;
  // Nodes in state kUp: the candidates for new shards.
  std::vector<const NodeRecord*> Live() const;
  bool operator==(const ClusterMap&) const = default;
};

}  // namespace shardfs
