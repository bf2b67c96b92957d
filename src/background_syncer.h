// BackgroundSyncer: makes a client's unsynced shards durable in the
// background, so the set stays bounded however long files go without fsync.
//
// Once a second it asks the nodes to fsync the shards UnsyncedShards::Due()
// names (older than its max_age, or the oldest beyond its max_shards). A
// shard that is durable on min(2, R) replicas, or whose nodes no longer hold
// it (the file was deleted or rewritten elsewhere and collected), is
// forgotten; one that failed is tried again after another max_age. When
// failures pile up past twice max_shards, the failed ones are dropped with a
// warning: their bytes stay on the nodes that took them, only the promise of
// a later fsync is lost, and memory stays bounded.
//
// SyncAll() makes everything durable at once (unmount).
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "src/node_client.h"
#include "src/node_directory.h"
#include "src/unsynced_shards.h"

namespace shardfs {

// Owns one thread, started by the constructor and joined by the destructor;
// `shards`, `nodes` and `directory` must outlive it. SyncAll() may be called
// from any thread.
class BackgroundSyncer {
 public:
  BackgroundSyncer(UnsyncedShards& shards, NodeClient& nodes, const NodeDirectory& directory);
  ~BackgroundSyncer();
  BackgroundSyncer(const BackgroundSyncer&) = delete;
  BackgroundSyncer& operator=(const BackgroundSyncer&) = delete;

  // Syncs every tracked shard now; fails when some could not be made durable.
  Status SyncAll();

 private:
  void Run();
  // Syncs `due`, forgets what is done, postpones (or drops) the rest.
  Status Pass(const UnsyncedShards::Set& due);

  UnsyncedShards& shards_;
  NodeClient& nodes_;
  const NodeDirectory& directory_;
  std::mutex mu_;
  std::condition_variable wake_;  // with mu_
  bool stop_ = false;             // guarded by mu_
  std::thread thread_;
};

}  // namespace shardfs
