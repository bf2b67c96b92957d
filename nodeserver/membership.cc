#include "nodeserver/membership.h"

#include <spdlog/spdlog.h>

namespace shardfs {

Membership::Membership() : Membership(Options{}) {}

Membership::Membership(Options options)
    : options_(std::move(options)), epoch_(options_.initial_epoch) {}

int64_t Membership::WallMs() const {
  if (options_.wall_clock_ms) return options_.wall_clock_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t Membership::Register(const RegisterNodeRequest& request, Clock::time_point now) {
  const int64_t wall = WallMs();
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = false;
  // An up node listening where this one now listens is gone.
  for (auto& [id, entry] : nodes_) {
    if (id != request.node_id && entry.record.endpoint == request.endpoint &&
        entry.record.state != NodeState::kDown) {
      spdlog::info("membership: node {} at {} replaced by node {}; marking it down", id,
                   entry.record.endpoint, request.node_id);
      entry.record.state = NodeState::kDown;
      changed = true;
    }
  }
  auto [it, inserted] = nodes_.try_emplace(request.node_id);
  NodeRecord& r = it->second.record;
  if (inserted) {
    r.id = request.node_id;
    r.state = NodeState::kUp;
    changed = true;
    spdlog::info("membership: node {} joined at {} (host {})", r.id, request.endpoint,
                 request.host);
  } else {
    if (r.endpoint != request.endpoint) {
      spdlog::info("membership: node {} moved from {} to {}", r.id, r.endpoint, request.endpoint);
    }
    if (r.state == NodeState::kDown) {
      spdlog::info("membership: node {} is back", r.id);
      r.state = AliveStateLocked(it->second);
      changed = true;
    }
  }
  if (r.endpoint != request.endpoint || r.host != request.host || r.capacity != request.capacity) {
    changed = true;
  }
  r.endpoint = request.endpoint;
  r.host = request.host;
  r.capacity = request.capacity;
  r.used = request.used;
  r.shard_count = request.shard_count;
  r.last_seen_ms = wall;
  it->second.last_heartbeat = now;
  if (changed) BumpLocked();
  return epoch_;
}

HeartbeatReply Membership::Heartbeat(const HeartbeatRequest& request, Clock::time_point now) {
  const int64_t wall = WallMs();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(request.node_id);
  if (it == nodes_.end()) return HeartbeatReply{epoch_, false};
  NodeRecord& r = it->second.record;
  bool changed = false;
  if (r.state == NodeState::kDown) {
    spdlog::info("membership: node {} is back", r.id);
    r.state = AliveStateLocked(it->second);
    changed = true;
  }
  if (r.capacity != request.capacity) changed = true;
  r.capacity = request.capacity;
  r.used = request.used;
  r.shard_count = request.shard_count;
  r.last_seen_ms = wall;
  it->second.last_heartbeat = now;
  if (changed) BumpLocked();
  return HeartbeatReply{epoch_, true};
}

bool Membership::Tick(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = false;
  for (auto& [id, entry] : nodes_) {
    if (entry.record.state == NodeState::kDown) continue;
    if (now - entry.last_heartbeat > options_.down_after) {
      spdlog::warn("membership: node {} at {} is down (silent for {} ms)", id,
                   entry.record.endpoint,
                   std::chrono::duration_cast<std::chrono::milliseconds>(now - entry.last_heartbeat)
                       .count());
      entry.record.state = NodeState::kDown;
      changed = true;
    }
  }
  if (changed) BumpLocked();
  return changed;
}

Status Membership::SetDraining(const std::string& id, bool draining) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return Status::Error(ErrorCode::kNotFound, "no node " + id);
  it->second.draining = draining;
  NodeRecord& r = it->second.record;
  // A down node stays down; the flag takes effect when it comes back.
  if (r.state == NodeState::kDown) return Status::Ok();
  NodeState wanted = AliveStateLocked(it->second);
  if (r.state == wanted) return Status::Ok();
  r.state = wanted;
  BumpLocked();
  return Status::Ok();
}

ClusterMap Membership::Map() const {
  std::lock_guard<std::mutex> lock(mu_);
  ClusterMap map;
  map.epoch = epoch_;
  map.nodes.reserve(nodes_.size());
  for (const auto& [id, entry] : nodes_) map.nodes.push_back(entry.record);
  return map;
}

uint64_t Membership::epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return epoch_;
}

}  // namespace shardfs
