// ShardFs: the FUSE low-level operations of `shardfs-mount`.
//
// Each operation maps onto the registry's namespace (NamespaceClient) or a
// file's data path (OpenFile), and turns a Status into an errno only here,
// at the FUSE edge. Inode numbers are the registry's inode ids (root = 1),
// which are never reused, so no lookup counts need to be kept. One OpenFile
// per inode is shared by all its open handles, so a writer's later reads and
// other handles see its unflushed writes.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "fuse/mount_options.h"
#include "src/background_syncer.h"
#include "src/dir_attr_cache.h"
#include "src/entry_cache.h"
#include "src/latency_tracker.h"
#include "src/namespace_client.h"
#include "src/node_client.h"
#include "src/node_directory.h"
#include "src/open_file.h"
#include "src/read_ahead_budget.h"
#include "src/recent_shard_entries.h"
#include "src/task_pool.h"
#include "src/xattr_negative_cache.h"

namespace shardfs {

// Created by main before the session starts; its methods run on libfuse's
// worker threads and are thread-safe. The open files' background work
// (write-behind stores, read-ahead fetches) runs on two small pools owned
// here, which finish their tasks before the clients are destroyed.
class ShardFs {
 public:
  ShardFs(const MountOptions& options, std::string registry_endpoint);
  ~ShardFs();

  // Makes the ZeroMQ context and the clients. Called after the fork into
  // the background: a ZeroMQ context does not survive fork().
  void Start();

  // The operation table to hand to fuse_session_new(); userdata is `this`.
  static const fuse_lowlevel_ops* Operations();

  // Stores and commits every file with unflushed writes and makes every
  // shard durable (unmount, SIGTERM).
  void FlushAll();
  // The session, for cache invalidations; set before the loop starts.
  void set_session(fuse_session* session) { session_ = session; }

 private:
  struct Handle;
  struct DirListing;

  // Operation handlers (one per FUSE call; see fuse_lowlevel.h).
  void Init(fuse_conn_info* conn);
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void GetAttr(fuse_req_t req, fuse_ino_t ino);
  void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi);
  void Readlink(fuse_req_t req, fuse_ino_t ino);
  void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags);
  void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi);
  void Lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
               bool plus);
  void ReleaseDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void StatFs(fuse_req_t req, fuse_ino_t ino);
  void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
  void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name);

  // `left`: how long the answer holds, when less than the mount's timeouts.
  void ReplyEntry(fuse_req_t req, const InodeAttrs& attrs,
                  std::optional<std::chrono::nanoseconds> left = std::nullopt);
  void ReplyNoEntry(fuse_req_t req, std::optional<std::chrono::nanoseconds> left = std::nullopt);
  // Lists `dir` whole into entries_ (a walk of it has begun).
  void ListForLookups(uint64_t dir);
  // Every entry of `dir` with attributes, stopping once `limit` are had.
  Result<std::vector<DirEntry>> ListDir(uint64_t dir, size_t limit);
  void ReplyAttr(fuse_req_t req, const InodeAttrs& attrs);
  struct stat ToStat(const InodeAttrs& attrs) const;
  // Opens (or shares) the OpenFile of `ino` and makes a handle for `fi`.
  Status OpenHandle(uint64_t ino, fuse_file_info* fi, std::shared_ptr<OpenFile> created);
  // Flushes `file` (sync: and fsyncs its shards), noting a commit in entries_.
  Status FlushFile(uint64_t ino, OpenFile& file, bool sync);
  // Drops a handle made by OpenHandle, flushing what it wrote.
  Status CloseHandle(uint64_t ino, fuse_file_info* fi);
  std::shared_ptr<OpenFile> FindOpenFile(uint64_t ino);
  bool ReadOnlyReject(fuse_req_t req);

  const MountOptions options_;
  const std::string registry_endpoint_;
  fuse_session* session_ = nullptr;
  std::optional<zmq::context_t> context_;  // from Start() on
  std::optional<NamespaceClient> ns_;
  std::optional<NodeClient> nodes_;
  NodeDirectory directory_;
  LatencyTracker latency_;
  // Bytes all open files may hold fetched ahead of readers; declared before
  // open_files_ so it outlives every OpenFile.
  ReadAheadBudget read_ahead_{64ull << 20};
  // Background work of the open files (write-behind, read-ahead), from
  // Start() on; destroyed before the clients their tasks use.
  std::optional<TaskPool> stores_;
  std::optional<TaskPool> fetches_;
  // Shards stored without sync, per inode, until an fsync of any descriptor
  // or the background syncer (from Start() on) makes them durable.
  UnsyncedShards unsynced_;
  std::optional<BackgroundSyncer> syncer_;
  DataPath data_path_;
  XattrNegativeCache xattr_absent_;
  DirAttrCache dir_attrs_;
  EntryCache entries_;
  // The one shard of small files closed here lately: a reopen fetches it
  // while the registry confirms the table.
  RecentShardEntries recent_shards_{16384};

  struct OpenInode {
    std::shared_ptr<OpenFile> file;
    int handles = 0;
  };
  std::mutex open_mu_;
  std::map<uint64_t, OpenInode> open_files_;  // guarded by open_mu_
  // Size and mtime each inode had when last opened here, for keep_cache.
  std::map<uint64_t, std::pair<uint64_t, int64_t>> last_seen_;  // guarded by open_mu_
};

}  // namespace shardfs
