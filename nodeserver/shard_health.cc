#include "nodeserver/shard_health.h"

namespace shardfs {

LivenessView::LivenessView(ClusterMap map, int64_t now_wall_ms, int64_t repair_delay_ms,
                           int64_t registry_uptime_ms)
    : map_(std::move(map)),
      now_ms_(now_wall_ms),
      delay_ms_(repair_delay_ms),
      registry_settled_(registry_uptime_ms >= repair_delay_ms) {}

ReplicaState LivenessView::StateOf(const std::string& node_id) const {
  const NodeRecord* node = map_.Find(node_id);
  if (node == nullptr) return registry_settled_ ? ReplicaState::kLost : ReplicaState::kAbsent;
  switch (node->state) {
    case NodeState::kUp:
      return ReplicaState::kCounted;
    case NodeState::kDraining:
      return ReplicaState::kDraining;
    case NodeState::kDown:
      break;
  }
  return now_ms_ - node->last_seen_ms >= delay_ms_ ? ReplicaState::kLost : ReplicaState::kAbsent;
}

size_t ShardHealth::CopiesToMake() const {
  if (readable() == 0) return 0;
  const size_t have = counted.size() + absent.size();
  return have >= goal ? 0 : goal - have;
}

std::vector<std::string> ShardHealth::TrimmedReplicas() const {
  if (counted.size() < goal) return {};
  if (counted.size() == goal && draining.empty() && absent.empty() && lost.empty()) return {};
  return std::vector<std::string>(counted.begin(), counted.begin() + goal);
}

ShardHealth JudgeShard(const ShardEntry& entry, uint32_t goal, const LivenessView& view) {
  ShardHealth h;
  h.goal = goal;
  for (const std::string& node : entry.replicas) {
    switch (view.StateOf(node)) {
      case ReplicaState::kCounted:
        h.counted.push_back(node);
        break;
      case ReplicaState::kDraining:
        h.draining.push_back(node);
        break;
      case ReplicaState::kAbsent:
        h.absent.push_back(node);
        break;
      case ReplicaState::kLost:
        h.lost.push_back(node);
        break;
    }
  }
  if (h.readable() == 0) {
    h.verdict = h.absent.empty() ? ShardHealth::Verdict::kLost : ShardHealth::Verdict::kUnavailable;
  } else if (h.counted.size() < goal) {
    h.verdict = ShardHealth::Verdict::kUnderReplicated;
  }
  return h;
}

}  // namespace shardfs
