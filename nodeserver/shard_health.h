// ShardHealth: how many good copies a shard has, judged against the cluster
// map and the repair delay.
//
// One judgement serves repair (nodeserver/replica_repair.h) and the
// operator's fsck, so what `shardfs fsck` reports is exactly what repair acts
// on. A listed replica is:
//   - counted: on an up node;
//   - draining: on a draining node: readable, but not counted, since the
//     operator wants it gone;
//   - absent: on a node that is down, or unknown since this registry started,
//     for less than the repair delay: it may come back, so no copy is made
//     yet (a reboot should not cost a full re-replication);
//   - lost: the same for longer than the repair delay.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/cluster_map.h"
#include "src/inode.h"

namespace shardfs {

enum class ReplicaState { kCounted, kDraining, kAbsent, kLost };

// The cluster map at one moment, with the time rules applied. A plain value;
// build one per scan.
class LivenessView {
 public:
  // `registry_uptime_ms`: nodes missing from the map are absent until the
  // registry has been up for the repair delay (they may just not have
  // re-registered yet), lost after.
  LivenessView(ClusterMap map, int64_t now_wall_ms, int64_t repair_delay_ms,
               int64_t registry_uptime_ms);

  ReplicaState StateOf(const std::string& node_id) const;
  const ClusterMap& map() const { return map_; }

 private:
  ClusterMap map_;
  int64_t now_ms_;
  int64_t delay_ms_;
  bool registry_settled_;
};

struct ShardHealth {
  enum class Verdict {
    kHealthy,          // counted copies reach the goal
    kUnderReplicated,  // fewer, but at least one copy is readable
    kUnavailable,      // nothing readable now, but some copies may come back
    kLost,             // every copy is lost
  };

  uint32_t goal = 0;
  std::vector<std::string> counted, draining, absent, lost;
  Verdict verdict = Verdict::kHealthy;

  size_t readable() const { return counted.size() + draining.size(); }
  // Copies repair should make now: the shortfall not covered by absent
  // copies that may return; none when nothing is readable to copy from.
  size_t CopiesToMake() const;
  // The replica list after trimming a shard that has its goal in counted
  // copies: the first `goal` counted ones (callers order them by preference).
  // Empty when there is nothing to trim.
  std::vector<std::string> TrimmedReplicas() const;
};

// `goal` is the file's replication goal (0 already replaced by the default).
ShardHealth JudgeShard(const ShardEntry& entry, uint32_t goal, const LivenessView& view);

}  // namespace shardfs
