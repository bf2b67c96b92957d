// NamespaceDb: the registry's durable namespace (store + log + snapshots).
//
// META_DIR holds
//   LOCK                      flock'd while a NamespaceDb has the directory open
//   snap.<seq>                the newest snapshot (src/meta_snapshot.h)
//   log.<NNNNNN>              log files (src/meta_log.h), numbered in order;
//                             normally one, the one after the newest snapshot
// Open() loads the newest snapshot that verifies, replays every log record
// with a higher seq (the seqs must continue without a gap, or Open refuses
// with kCorrupt rather than start on a namespace with a hole in its history),
// cuts a torn tail off the last log file, and then drops, with logged ops,
// every orphan inode (nlink 0) left over: after a restart nothing is open.
//
// Mutate(op): under the mutation lock, stamps the op's time if 0, lets the
// store Prepare it (inode ids, keep_orphan), applies it, appends it to the log
// and releases the lock; then waits until the record is durable (group
// commit, shared with every other thread waiting) and returns. A failed op
// changes nothing and is not logged. Reads go straight to store() and run
// concurrently with each other and with the durable-wait of mutations; a
// reader can see a mutation a moment before it is durable (never one that is
// then lost, unless the machine crashes in that moment).
//
// Snapshot(): under the mutation lock (mutations wait, reads do not) encodes
// the store and starts a new log file; then, without the lock, writes the
// snapshot and deletes the log files and snapshots it replaces. One runs
// automatically, on a background thread, every `snapshot_every_records`.
//
// If the log fails (write or fsync error) the db stops accepting mutations
// (kIoError) for good; the process should restart and replay. The op whose
// append failed may be visible in memory but is not acknowledged.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "src/meta_log.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"
#include "src/status.h"
#include "src/unique_fd.h"

namespace shardfs {

struct NamespaceDbOptions {
  // Snapshot after this many logged records; 0 = only when Snapshot() is called.
  uint64_t snapshot_every_records = 100'000;
  // Nanoseconds since the epoch for ops whose time is 0; default CLOCK_REALTIME.
  std::function<int64_t()> clock;
};

struct NamespaceDbStats {
  uint64_t last_seq = 0;      // last record appended
  uint64_t snapshot_seq = 0;  // seq covered by the newest snapshot
  uint64_t records_since_snapshot = 0;
  uint64_t log_syncs = 0;  // fdatasync calls on the log since Open
  uint64_t replayed_records = 0;
  std::string log_path;
};

class NamespaceDb {
 public:
  // Creates META_DIR if needed. kBusy if another NamespaceDb holds it;
  // kCorrupt if the snapshot and logs do not form a gap-free history.
  static Result<std::unique_ptr<NamespaceDb>> Open(const std::string& meta_dir,
                                                   NamespaceDbOptions options = {});
  // Stops the snapshot thread and makes every appended record durable.
  ~NamespaceDb();
  NamespaceDb(const NamespaceDb&) = delete;
  NamespaceDb& operator=(const NamespaceDb&) = delete;

  // Applies and durably logs one op; see the file comment.
  Result<ApplyResult> Mutate(NamespaceOp op);

  // A file handle opened / released on `ino` (not logged). Closing the last
  // handle of an orphan removes it durably; the result is that removal.
  Status OpenFile(uint64_t ino);
  Result<std::optional<ApplyResult>> CloseFile(uint64_t ino);

  // Reads: every const method of the store is safe to call concurrently.
  const NamespaceStore& store() const { return store_; }

  Status Snapshot();
  NamespaceDbStats stats() const;

 private:
  NamespaceDb(std::string meta_dir, NamespaceDbOptions options);

  Status Recover();
  int64_t Now() const;
  // Applies and appends with mutate_mu_ held; returns the result and the seq
  // to wait for.
  Result<std::pair<ApplyResult, uint64_t>> ApplyAndAppendLocked(NamespaceOp& op);
  Result<ApplyResult> WaitAndReturn(Result<std::pair<ApplyResult, uint64_t>> applied);
  std::string LogPath(uint64_t number) const;
  void SnapshotLoop();

  const std::string meta_dir_;
  const NamespaceDbOptions options_;
  UniqueFd lock_fd_;
  NamespaceStore store_;

  // Serializes Prepare + Apply + Append, so log order is apply order.
  mutable std::mutex mutate_mu_;
  std::unique_ptr<MetaLog> log_;
  uint64_t log_number_ = 0;
  uint64_t records_since_snapshot_ = 0;
  uint64_t snapshot_seq_ = 0;
  uint64_t replayed_records_ = 0;
  Status broken_;  // non-OK once the log failed

  std::mutex snapshot_mu_;  // one Snapshot() at a time
  std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stop_ = false;
  bool snapshot_wanted_ = false;
  std::thread snapshot_thread_;
};

}  // namespace shardfs
