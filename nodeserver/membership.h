// Membership: the registry's table of node servers and their liveness.
//
// Node servers register and then heartbeat every second; a node silent for
// longer than `down_after` is marked down by Tick(), which the registry calls
// a few times a second. Membership lives in memory only: after a registry
// restart every heartbeat is answered known=false and the nodes register
// again within a second, which rebuilds the table without a persistence
// format to keep compatible.
//
// A node keeps its identity (its id) across restarts and address changes: a
// registration of a known id replaces the endpoint. A registration that
// claims the endpoint of another up node marks that other node down at once,
// because two processes cannot listen on one address: the old one is gone
// (its data directory was replaced), and waiting for down_after would only
// send clients to the wrong node.
//
// The epoch grows on every topology change (join, endpoint, host or capacity
// change, state change), not on usage updates; see src/cluster_map.h.
//
// Thread-safe: RPC worker threads call Register/Heartbeat, the publisher
// thread calls Tick/Map.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "protocol/registry_messages.h"
#include "src/cluster_map.h"

namespace shardfs {

class Membership {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::chrono::milliseconds down_after{5000};
    // The epoch before the first change. The registry seeds it from the wall
    // clock so epochs keep growing across registry restarts.
    uint64_t initial_epoch = 0;
    // Wall clock for NodeRecord::last_seen_ms (Unix ms); injectable for tests.
    std::function<int64_t()> wall_clock_ms;
  };

  Membership();
  explicit Membership(Options options);

  // Adds or updates a node and marks it up (a draining node stays draining).
  // Returns the epoch after the change.
  uint64_t Register(const RegisterNodeRequest& request, Clock::time_point now);
  // Refreshes a known node; known=false when the id is not in the table.
  HeartbeatReply Heartbeat(const HeartbeatRequest& request, Clock::time_point now);
  // Marks nodes silent for longer than down_after as down. Returns true if
  // anything changed (the epoch grew).
  bool Tick(Clock::time_point now);
  // Operator's drain switch: a draining node takes no new shards. kNotFound
  // for an unknown id.
  Status SetDraining(const std::string& id, bool draining);

  ClusterMap Map() const;
  uint64_t epoch() const;

 private:
  struct Entry {
    NodeRecord record;
    Clock::time_point last_heartbeat;
    bool draining = false;  // operator's flag; survives the node going down
  };

  static NodeState AliveStateLocked(const Entry& e) {
    return e.draining ? NodeState::kDraining : NodeState::kUp;
  }
  void BumpLocked() { ++epoch_; }
  int64_t WallMs() const;

  const Options options_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> nodes_;  // guarded by mu_; by id, so Map() comes out sorted
  uint64_t epoch_;                      // guarded by mu_
};

}  // namespace shardfs
