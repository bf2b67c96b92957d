// UnsyncedShards: the shards a client stored without fsync, per file, until
// they are made durable.
//
// Shards are stored without sync as they fill up and at close: the nodes
// hold them in their page cache. fsync() on the file must make them durable,
// and POSIX asks that of any descriptor of the file, also one opened after
// the writer closed it (`cp f mnt/; sync mnt/f`, an editor that writes and
// a separate process that syncs). So the set belongs to the client (one per
// mount) and outlives the open file; an open file only reads and trims the
// part that is its inode's.
//
// The set is kept bounded by a background pass (BackgroundSyncer) that makes
// durable the shards older than `max_age` and the oldest beyond
// `max_shards`, as a kernel writes dirty pages back after dirty_expire.
//
// SyncShardsOnNodes() sends the fsync requests (SyncShards): one per node
// for all its keys, every node at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "src/node_client.h"
#include "src/node_directory.h"
#include "src/shard_key.h"
#include "src/status.h"

namespace shardfs {

// Thread-safe; shared by every open file of a client and its syncer.
class UnsyncedShards {
 public:
  using Clock = std::chrono::steady_clock;
  using Replicas = std::vector<std::string>;  // node ids
  using Set = std::map<ShardKey, Replicas>;
  struct Limits {
    // A shard stored this long ago is due for a background sync.
    std::chrono::milliseconds max_age{30000};
    // Beyond this many, the oldest are due at once.
    size_t max_shards = 16384;
  };

  UnsyncedShards() = default;
  explicit UnsyncedShards(Limits limits) : limits_(limits) {}

  // A shard was stored (with `synced`: already durable). Older generations
  // of the same shard are forgotten either way: they are garbage now.
  void Stored(const ShardKey& key, Replicas replicas, bool synced);
  // The unsynced shards of one file.
  Set OfInode(uint64_t ino) const;
  // Shards made durable, or no longer worth syncing.
  void Forget(const std::vector<ShardKey>& keys);
  // Shards a background pass at `now` should sync.
  Set Due(Clock::time_point now) const;
  // Everything (unmount).
  Set All() const;
  // Failed keys wait another `max_age` before the next try.
  void Postpone(const std::vector<ShardKey>& keys, Clock::time_point now);
  size_t size() const;
  const Limits& limits() const { return limits_; }

 private:
  struct Entry {
    Replicas replicas;
    Clock::time_point since;  // stored, or last failed sync
  };
  const Limits limits_;
  mutable std::mutex mu_;
  std::map<ShardKey, Entry> entries_;  // guarded by mu_; ordered by inode, index
};

// What the nodes answered to a round of SyncShards requests.
struct SyncOutcome {
  std::map<ShardKey, size_t> synced;   // replicas that made the key durable
  std::map<ShardKey, size_t> missing;  // replicas that no longer hold it
  Status last_error;                   // any failure but a missing key
};

// Asks every replica of every key to fsync it: one request per node, all
// nodes at once. A node stops at its first missing key, so a node that
// answers NOT_FOUND is asked again key by key, to tell which were missing.
SyncOutcome SyncShardsOnNodes(NodeClient& nodes, const NodeDirectory& directory,
                              const UnsyncedShards::Set& keys);

// How many replicas of a shard must be durable for fsync to succeed: as
// many as a write needs, min(2, R).
inline size_t ReplicasToSync(const UnsyncedShards::Replicas& replicas) {
  return std::min<size_t>(2, replicas.size());
}

}  // namespace shardfs
