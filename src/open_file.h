// OpenFile: the data path of one file open in a client (mount or CLI).
//
// Holds the file's shard table as fetched at open (close-to-open
// consistency: every open starts from the registry's current table) and the
// bytes written since, per shard, as sorted byte ranges. Reads overlay those
// ranges on what the nodes hold, so a writer reads its own writes. A shard is
// stored when it is complete, when dirty bytes pass a limit, or at Flush():
// as a new generation, sent to its replicas in parallel; a partly rewritten
// shard is sent as patches against the old generation, which each replica
// copies locally, so unchanged bytes never cross the network. Flush() then
// commits the new generations and size at the registry in one step, the
// moment the change becomes visible to other clients.
//
// A replica that answers a read with CORRUPT is reported to the registry
// (NamespaceClient::ReportBadReplica) once per replica and key, after the
// read has its answer, so the shard gets repaired.
//
// Write-behind: with a store pool (DataPath::stores), a shard completed by a
// write is stored by a pool thread while the writer goes on; a few per file
// at most (DataPath::max_stores_in_flight), beyond which the writer waits.
// Reads see those shards from memory until they are stored. A failed
// background store puts the shard's bytes back as dirty and makes the next
// Write (which then buffers nothing) or Flush return the error (EIO), once;
// that Flush still stores and commits what it can. Flush, Truncate and a
// synchronous store of the same shard wait for the stores in flight first.
//
// Read-ahead: with a fetch pool and a budget, a file read sequentially
// (each read starting where a recent one ended) has its next shards fetched
// whole in the background, checked against the shard table's checksum on top
// of the node's block checksums. Random reads fetch nothing ahead. Fetched
// bytes are only used for the generation they were fetched for and are
// dropped on every write, truncate and reload of the table.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "src/data_extents.h"
#include "src/latency_tracker.h"
#include "src/namespace_client.h"
#include "src/node_client.h"
#include "src/node_directory.h"
#include "src/read_ahead_budget.h"
#include "src/status.h"
#include "src/task_pool.h"
#include "src/unsynced_shards.h"

namespace shardfs {

// What every open file of one client shares. Owned by the client's main
// object; all members are thread-safe.
struct DataPath {
  NamespaceClient* ns = nullptr;
  NodeClient* nodes = nullptr;
  NodeDirectory* directory = nullptr;
  LatencyTracker* latency = nullptr;
  // Past this many buffered bytes in one file, its dirty shards are stored.
  uint64_t max_dirty_bytes = 64ull << 20;
  // Write-behind: where completed shards are stored, and how many of one
  // file may be on their way at once. Null: stored in the writer's thread.
  TaskPool* stores = nullptr;
  size_t max_stores_in_flight = 3;
  // Read-ahead: where shards are fetched ahead of a sequential reader, how
  // many shards past the one being read, and the memory all files share.
  // Either null: no read-ahead.
  TaskPool* fetches = nullptr;
  ReadAheadBudget* read_ahead = nullptr;
  size_t read_ahead_shards = 2;
  // Shards stored without sync, kept past close so that an fsync on any
  // later descriptor makes them durable. Null: each open file keeps its own
  // (a client that holds the file open until its fsync, like the CLI).
  UnsyncedShards* unsynced = nullptr;
};

// Byte ranges written into one shard and not yet stored: offset -> bytes,
// non-overlapping and not touching (touching ranges are merged).
class DirtyRanges {
 public:
  void Write(uint64_t offset, std::string_view data);
  // Forgets everything at or past `length`.
  void Truncate(uint64_t length);
  // True when [0, length) is entirely written.
  bool Covers(uint64_t length) const;
  // Copies the written parts of [offset, offset + out.size()) into `out`.
  void Overlay(uint64_t offset, std::span<char> out) const;
  uint64_t bytes() const { return bytes_; }
  bool empty() const { return ranges_.empty(); }
  const std::map<uint64_t, std::string>& ranges() const { return ranges_; }
  std::map<uint64_t, std::string>& mutable_ranges() { return ranges_; }

 private:
  std::map<uint64_t, std::string> ranges_;
  uint64_t bytes_ = 0;
};

// Thread-safe: reads share a lock, writes and flushes take it exclusively.
// One OpenFile per inode per client, shared by all its open handles, and by
// the background stores and fetches in flight for it (which hold a
// shared_ptr, so the object outlives them).
class OpenFile : public std::enable_shared_from_this<OpenFile> {
 public:
  // Fetches attributes and shard table. With `open`, the same round trip
  // opens the file at the registry (NamespaceClient::Open). With `guess`,
  // the entry this client last knew for one of its shards
  // (RecentShardEntries), the shard's bytes are fetched meanwhile, and kept
  // for reads if the table still names that generation.
  static Result<std::shared_ptr<OpenFile>> Load(DataPath& data_path, uint64_t ino,
                                                bool open = false,
                                                const ShardEntry* guess = nullptr);
  // A file this client has just created (and opened): empty, nothing to
  // fetch, and perhaps with its first shard placed already.
  static std::shared_ptr<OpenFile> Created(DataPath& data_path, CreateReply created);

  // Reads up to `length` bytes at `offset` (fewer at the end of the file).
  Result<std::string> Read(uint64_t offset, uint64_t length);
  Status Write(uint64_t offset, std::string_view data);
  // Stores every dirty shard (fsync'd on the nodes when `sync`) and commits.
  Status Flush(bool sync);
  // Flushes, then sets the size at the registry and reloads the table.
  Status Truncate(uint64_t size);
  // Reloads attributes and table from the registry, if nothing is dirty.
  // With `open`, also opens the file at the registry, reloaded or not.
  Status Refresh(bool open = false);

  // lseek(2)'s SEEK_DATA and SEEK_HOLE. A shard nothing was written to is a
  // hole, and so is a shard's tail past its length; inside a shard whose
  // nodes keep holes (ShardEntry::data_bytes), the 4 KiB pages of zeros are,
  // as a replica's file says (or, from nodes that cannot say, as reading
  // the shard shows); a shard with bytes written here is all data. SeekData gives the first data
  // offset at or after `offset`, nullopt when there is none before the end of the file (ENXIO);
  // SeekHole the first hole offset at or after `offset`, the end of the
  // file at the latest, nullopt at or past the end.
  Result<std::optional<uint64_t>> SeekData(uint64_t offset);
  Result<std::optional<uint64_t>> SeekHole(uint64_t offset);

  uint64_t ino() const { return ino_; }
  InodeAttrs attrs() const;
  bool dirty() const;
  // The file's only shard as committed, when the file is exactly one shard
  // and nothing of it is left to store: what RecentShardEntries keeps.
  std::optional<ShardEntry> SoleShard() const;

 private:
  using Lock = std::unique_lock<std::shared_mutex>;
  // Bytes of one shard fetched ahead of a sequential reader.
  struct Prefetch {
    ShardKey key;
    uint64_t checksum = 0;
    // Fetched on a guess at open (RecentShardEntries): failing is expected
    // when the file changed elsewhere, so it is not worth a warning.
    bool guessed = false;
    bool done = false;
    Status status;  // when done
    PayloadBytes bytes;
    ReadAheadBudget::Grant grant;
  };

  OpenFile(DataPath& data_path, uint64_t ino)
      : dp_(data_path),
        ino_(ino),
        unsynced_(data_path.unsynced != nullptr ? data_path.unsynced : &own_unsynced_) {}
  Status LoadLocked(bool open);
  // Writes not yet committed: buffered, stored, being stored, or a size
  // change (mu_ held, shared is enough).
  bool HasUnsavedLocked() const;
  // These may wait for stores in flight, releasing `lock` meanwhile.
  Status StoreShardLocked(Lock& lock, uint32_t index, bool sync);
  Status StoreAllLocked(Lock& lock, bool sync);
  // A shard the writer completed: stored in the background when there is a
  // store pool, else at once.
  Status StoreCompleteLocked(Lock& lock, uint32_t index);
  void WaitForStoresLocked(Lock& lock);
  // The error of a failed background store, reported once.
  Status TakeStoreErrorLocked();
  void BackgroundStore(uint32_t index, std::shared_ptr<const std::string> data);
  // Puts a whole shard on freshly placed nodes. Reads no guarded state, so
  // it runs without mu_ held (background stores).
  Result<ShardEntry> PutFull(uint32_t index, std::string_view data, bool sync);
  Result<ShardEntry> PutPlaced(uint32_t index, std::string_view data, bool sync,
                               const AllocateShardsReply& alloc);
  Status StoreFullLocked(uint32_t index, std::string data, bool sync);
  void RecordStoredLocked(ShardEntry entry, bool sync);
  Status CommitLocked();
  // Read-ahead. Called with mu_ held (shared is enough).
  void ReadAheadLocked(uint64_t offset, uint64_t length);
  bool ReadFromPrefetch(const ShardEntry& entry, uint64_t offset, std::span<char> out);
  // Starts fetching `entry`'s whole shard on the fetch pool into ra_.
  enum class PrefetchStart { kStarted, kNoBudget, kNoReplica };
  PrefetchStart StartPrefetchLocked(const ShardEntry& entry, bool guessed);  // ra_mu_ held
  void RunPrefetch(std::shared_ptr<Prefetch> prefetch, std::vector<std::string> ids,
                   std::vector<std::string> endpoints, uint64_t length);
  void DropReadAhead();
  // Drops fetched shards the table no longer names (a shard's bytes never
  // change within a generation, so the others stay good).
  void DropReadAheadNotIn(const std::map<uint32_t, ShardEntry>& table);
  // How long a fetch ahead may take before another replica (or the reader
  // itself) is asked.
  std::chrono::milliseconds PrefetchPatience(uint64_t length) const;
  // Makes the file's shards stored without sync durable on their nodes
  // (fsync), also those stored through descriptors closed since.
  Status SyncStoredLocked();
  Status ReadShardLocked(uint32_t index, uint64_t offset, std::span<char> out);
  // The first shard at or after `from` that holds anything: committed,
  // stored, being stored or written here (mu_ held, shared is enough).
  std::optional<uint32_t> NextDataShardLocked(uint64_t from) const;
  // Where shard `index` holds data, as extents within the shard; empty for
  // a hole. May read the shard (mu_ held, shared is enough).
  Result<std::vector<Extent>> DataInShardLocked(uint32_t index);
  // The replicas among `ids` whose endpoint this client knows, with their
  // ids alongside, so a failure (indexed into `endpoints`) can be reported
  // by node id.
  struct ReachableReplicas {
    std::vector<std::string> ids;
    std::vector<std::string> endpoints;
  };
  ReachableReplicas Reachable(const std::vector<std::string>& ids) const;
  // Queues a report of a corrupt replica, unless one was queued before.
  void NoteBadReplica(const std::string& node_id, const ShardKey& key, const Status& status);
  // Sends the queued reports. Called without mu_ held, after a read or
  // flush has its answer, so a slow registry holds up no other thread.
  void SendBadReplicaReports();
  uint64_t ShardSize() const { return attrs_.shard_size ? attrs_.shard_size : kDefaultShardSize; }

  DataPath& dp_;
  const uint64_t ino_;
  // The placement the registry made for shard 0 at create, set before the
  // object is shared and used by the first store of shard 0 only.
  std::optional<AllocateShardsReply> placed_at_create_;
  std::atomic<bool> placed_at_create_unused_{false};
  mutable std::shared_mutex mu_;
  InodeAttrs attrs_;                       // guarded by mu_; size includes unflushed writes
  std::map<uint32_t, ShardEntry> table_;   // guarded by mu_; committed or stored entries
  std::map<uint32_t, DirtyRanges> dirty_;  // guarded by mu_
  std::map<uint32_t, ShardEntry> stored_;  // guarded by mu_; stored, not yet committed
  // Shards stored without sync and not yet made durable, with their
  // replicas: the client's set (thread-safe), else own_unsynced_.
  UnsyncedShards own_unsynced_;
  UnsyncedShards* const unsynced_;
  uint64_t dirty_bytes_ = 0;   // guarded by mu_
  bool size_changed_ = false;  // guarded by mu_
  // Completed shards on their way to the nodes (write-behind), by index.
  std::map<uint32_t, std::shared_ptr<const std::string>> storing_;  // guarded by mu_
  Status store_error_;  // guarded by mu_; a failed background store, not yet reported
  std::condition_variable_any store_done_;  // with mu_: a background store ended

  // Read-ahead. Its own lock, because reads hold mu_ only shared.
  std::mutex ra_mu_;
  std::condition_variable ra_done_;                   // with ra_mu_: a fetch ended
  std::map<uint32_t, std::shared_ptr<Prefetch>> ra_;  // guarded by ra_mu_
  std::array<uint64_t, 8> recent_ends_{};             // guarded by ra_mu_
  size_t next_end_ = 0;                               // guarded by ra_mu_
  int sequential_streak_ = 0;                         // guarded by ra_mu_

  // The data extents DataInShardLocked found last, for the next seek: of
  // shard object `key` as far as `length` (a truncate shortens it).
  struct SeekExtents {
    ShardKey key;
    uint64_t length = 0;
    std::vector<Extent> extents;
  };
  std::mutex seek_mu_;
  std::optional<SeekExtents> seek_extents_;  // guarded by seek_mu_

  // Bad-replica reports. Their own lock, because reads find bad replicas
  // while holding mu_ only shared.
  struct BadReplica {
    std::string node_id;
    ShardKey key;
    std::string reason;
  };
  std::mutex reports_mu_;
  std::set<std::pair<std::string, ShardKey>> reported_;  // guarded by reports_mu_
  std::vector<BadReplica> unsent_reports_;               // guarded by reports_mu_
};

}  // namespace shardfs
