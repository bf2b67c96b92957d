// ReplicaRepair: the registry's self-healing. Keeps every shard at its
// replication goal, removes copies nobody needs, and answers `shardfs fsck`.
//
// Every few seconds (and at once when woken) the repair thread judges every
// shard table entry against the cluster map (nodeserver/shard_health.h) and
//   - copies shards short of their goal, fewest copies first: a target node
//     chosen by placement fetches the shard from a surviving replica itself
//     (CopyShardFrom, node to node: the bytes never pass the registry), then
//     the new replica list is logged (SetShardReplicasOp), dropping replicas
//     on lost nodes. Copies are throttled to `bytes_per_second`;
//   - trims shards above their goal (a lowered goal, a drained node, a node
//     that came back after its copies were replaced): the replicas dropped
//     become garbage and are deleted after the grace period;
//   - when there is nothing to repair, evens out disk use: while the nodes'
//     fill (bytes their listed replicas take, over capacity) differs by more
//     than a threshold, replicas move from the fullest node to the emptiest,
//     at a quarter of the repair rate (all of it after `shardfs rebalance`),
//     never onto a machine that already holds a copy if that loses spread;
//   - reconciles the inventory of every node that has (re)appeared: copies of
//     deleted files, superseded generations and replicas no longer listed are
//     deleted, so a returning node holds nothing stale (it could never serve
//     it: readers only ask for keys in the current table).
// All state lives in the namespace (the tables) and the cluster map, so a
// registry restarted in the middle simply finds the same work again.
//
// A reported bad replica (a node's scrubber or a reader hit a checksum error)
// is dropped from its table at once when another readable copy exists, which
// makes the shard short of its goal and so repaired like any other.
//
// Threads: Start/Stop belong to main; the repair thread does all trimming,
// rebalancing and sweeping, and copies through a few short-lived copier
// threads of its own (Repair() runs concurrently on different shards);
// HandleFsck and HandleReportBadReplica run on RPC worker threads (they read
// the store, log ops through NamespaceDb, and read the progress under its
// mutex).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "nodeserver/membership.h"
#include "nodeserver/shard_health.h"
#include "protocol/health_messages.h"
#include "src/namespace_db.h"
#include "src/node_client.h"
#include "src/rpc_server.h"

namespace shardfs {

class ReplicaRepair {
 public:
  struct Options {
    uint32_t default_goal = 3;
    // A node down this long has its copies made again elsewhere.
    std::chrono::milliseconds repair_delay{60000};
    // Copy throttle over the whole cluster; 0 means unthrottled.
    uint64_t bytes_per_second = 64u << 20;
    std::chrono::milliseconds scan_interval{2000};
    // Background rebalancing rate; 0 means a quarter of bytes_per_second.
    uint64_t rebalance_bytes_per_second = 0;
    // Rebalancing stops once the nodes' fill differs by at most this much.
    uint32_t rebalance_threshold_percent = 10;
  };

  ReplicaRepair(zmq::context_t& context, NamespaceDb* db, Membership* membership, Options options);
  ~ReplicaRepair();
  ReplicaRepair(const ReplicaRepair&) = delete;
  ReplicaRepair& operator=(const ReplicaRepair&) = delete;

  void Start();
  void Stop();
  // Makes the repair thread scan now rather than at its next interval.
  void Wake();

  RpcReply HandleFsck(RpcRequest& request);
  RpcReply HandleReportBadReplica(RpcRequest& request);
  RpcReply HandleRebalance(RpcRequest& request);

  // The health report fsck and status show; public for tests.
  FsckReply Fsck(size_t max_files) const;
  // One scan and all the work it finds (copies, trims, sweeps); returns the
  // number of changes made. Public for tests; the repair thread calls it.
  size_t RunPass();

 private:
  struct CopyTask {
    ShardKey key;
    size_t counted = 0;
  };
  // One up node's share of the data, for rebalancing.
  struct NodeFill {
    const NodeRecord* node = nullptr;
    uint64_t listed_bytes = 0;
    double fill() const {
      return node->capacity == 0 ? 1.0 : static_cast<double>(listed_bytes) / node->capacity;
    }
  };

  LivenessView View() const;
  uint32_t GoalOf(uint32_t file_goal) const {
    return file_goal == 0 ? options_.default_goal : file_goal;
  }
  // Makes the copies shard `key` is short of; true if the table changed.
  bool Repair(const ShardKey& key);
  // Trims a shard above its goal; true if the table changed.
  bool Trim(const ShardKey& key);
  // The fill of every up node, fullest first.
  std::vector<NodeFill> Fills(const LivenessView& view) const;
  // Moves replicas from the fullest to the emptiest node, at most one pass's
  // budget; returns the replicas moved.
  size_t Rebalance(const LivenessView& view);
  // The request that copies `entry`'s object from `sources`: its length as
  // a source holds it (after a truncate the table's may be shorter) and the
  // checksum the table records; nullopt if no source has that object.
  std::optional<CopyShardFromRequest> CopyRequestFor(const ShardKey& key, const ShardEntry& entry,
                                                     const std::vector<std::string>& sources);
  // Logs `replicas` as the replica list of `key` (kStale if it was rewritten).
  Status SetReplicas(const ShardKey& key, std::vector<std::string> replicas);
  // Deletes what node `node_id` holds that no table needs; returns deletions.
  size_t Sweep(const std::string& node_id);
  // Waits until the copy budget allows `bytes` more at `rate` bytes/s;
  // false when stopping.
  bool Throttle(uint64_t bytes, uint64_t rate);
  uint64_t RebalanceRate() const;
  void RecordCopy(uint64_t bytes);
  bool Stopping();
  void Loop();

  NamespaceDb* const db_;
  Membership* const membership_;
  const Options options_;
  NodeClient nodes_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  // Repair thread only (its copier threads touch none of it).
  std::set<std::string> seen_alive_;  // nodes alive at the last scan

  std::atomic<bool> rebalance_now_{false};  // set by `shardfs rebalance`

  // The copy budget, shared by the copier threads: guarded by mu_.
  std::chrono::steady_clock::time_point throttle_start_{};
  uint64_t throttle_bytes_ = 0;

  mutable std::mutex progress_mu_;
  RepairProgress progress_;  // guarded
  mutable std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>>
      rate_samples_;  // guarded by progress_mu_

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool woken_ = false;     // guarded by mu_
  std::thread thread_;
};

}  // namespace shardfs
