// The operator's view of data health: `shardfs fsck`, `shardfs status` and
// `shardfs drain` ask the registry with these.
//
// A shard is judged against its file's replication goal and the cluster map:
// copies on up nodes count; copies on draining nodes are readable but do not
// count (they are being moved off); copies on nodes that are down (or unknown
// since the registry started) for less than the repair delay are "absent"
// (they may come back, so nothing is copied yet); beyond it they are lost.
// The same judgement drives repair (nodeserver/replica_repair.h), so what fsck
// says is what repair acts on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/fields.h"
#include "src/status.h"

namespace shardfs {

inline constexpr size_t kMaxFsckFiles = 100000;
inline constexpr size_t kMaxWirePath = 1u << 16;

struct FsckRequest {
  uint64_t max_files = 1000;  // affected files to name in the reply (0: counts only)
  FieldWriter Encode() const;
  static Result<FsckRequest> Decode(const FieldReader& r);
};

// One file with at least one shard short of its goal.
struct FsckFile {
  std::string path;  // "" for an unlinked file that is still open
  uint64_t ino = 0;
  std::string state;    // "degraded", "unavailable" or "lost"
  uint64_t shards = 0;  // shards of this file short of their goal
  uint64_t fewest = 0;  // the fewest counted copies any of its shards has
};

// Repair's progress, as the registry's repair thread last measured it.
struct RepairProgress {
  uint64_t pending_copies = 0;  // replicas still to create
  uint64_t pending_bytes = 0;
  uint64_t copied_copies = 0;  // since the registry started
  uint64_t copied_bytes = 0;
  uint64_t bytes_per_second = 0;  // recent copy rate
  uint64_t eta_seconds = 0;       // 0 when nothing is pending or no rate is known yet
};

struct NodeReplicaCount {
  std::string node_id;
  uint64_t replicas = 0;  // shard table entries that list this node
  uint64_t bytes = 0;     // their lengths added up
};

struct FsckReply {
  uint64_t files = 0;
  uint64_t shards = 0;
  uint64_t healthy = 0;            // at least the goal in counted copies
  uint64_t under_replicated = 0;   // fewer, but readable
  uint64_t unavailable = 0;        // no readable copy now; some may come back
  uint64_t lost = 0;               // every copy is on a node gone longer than the repair delay
  uint64_t files_degraded = 0;     // files with an under-replicated or unavailable shard
  uint64_t files_lost = 0;         // files with a lost shard
  std::vector<FsckFile> affected;  // at most max_files
  std::vector<NodeReplicaCount> nodes;
  RepairProgress repair;

  // 0 healthy, 1 degraded (under-replicated or unavailable), 2 data lost.
  int ExitCode() const { return lost > 0 ? 2 : (under_replicated + unavailable > 0 ? 1 : 0); }
  FieldWriter Encode() const;
  static Result<FsckReply> Decode(const FieldReader& r);
};

// `shardfs rebalance`: even out disk use now, at the repair rate, rather than
// at the background rate. The request has no fields.
struct RebalanceReply {
  // The spread of the nodes' fill (listed bytes / capacity, up nodes) in
  // percentage points when asked; rebalancing stops under the threshold.
  uint64_t spread_percent = 0;
  uint64_t threshold_percent = 0;
  FieldWriter Encode() const;
  static Result<RebalanceReply> Decode(const FieldReader& r);
};

// `shardfs drain NODE` (and `--undo`): a draining node takes no new shards and
// repair moves its copies elsewhere. The reply has no fields.
struct SetDrainingRequest {
  std::string node_id;
  bool draining = true;
  FieldWriter Encode() const;
  static Result<SetDrainingRequest> Decode(const FieldReader& r);
};

}  // namespace shardfs
