// The registry's namespace: every inode, directory entry and shard table, in
// memory, changed only by applying NamespaceOps.
//
// NamespaceStore is the state machine behind the metadata log. Apply() checks
// an op against POSIX rules and either changes nothing and returns the error
// (failed ops are never logged) or applies the whole op. It looks at nothing
// but the store and the op, so replaying logged ops rebuilds the same state;
// the few decisions that depend on live state (which inode id a create gets,
// whether an unlinked file is still open) are made by Prepare() and written
// into the op before it is applied and logged.
//
// Shard generations that stop being referenced (overwritten by a commit, cut
// off by a truncate, or owned by a removed file) are not forgotten: they go to
// a durable garbage list, with the time they were released, until the
// registry has deleted them on the nodes and applies a ForgetGarbageOp.
//
// Open files: the registry counts opens per inode with OpenRef/CloseRef. These
// counts are not logged (after a restart nothing is open). An unlink or a
// rename that removes the last link of an open file keeps the inode as an
// orphan with nlink 0 (Prepare sets the op's keep_orphan), so the open file
// can still be read and written; the last CloseRef returns a DropOrphanOp for
// the caller to apply and log. After a restart, NamespaceDb drops every orphan
// left over (Orphans()) with logged DropOrphanOps.
//
// Concurrency: one std::shared_mutex. Reads (Lookup, GetAttr, ReadDir, ...)
// take it shared and run concurrently; Apply and LoadSnapshot take it
// exclusive. Prepare() followed by Apply() must not interleave with another
// Prepare/Apply pair, or two creates may pick the same inode id: NamespaceDb
// serializes them with its own mutation lock. Open counts have their own small
// mutex, taken after the store's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/inode.h"
#include "src/namespace_op.h"
#include "src/status.h"

namespace shardfs {

// What an applied op did, for the reply and for the registry's bookkeeping.
struct ApplyResult {
  // The inode the op is about: the one created, linked, changed, moved (rename:
  // the source) or unlinked; 0 for ops about no single inode.
  uint64_t ino = 0;
  // Its attributes after the op, if it still exists.
  std::optional<InodeAttrs> attrs;
  // Shard generations released by this op (also added to the garbage list).
  std::vector<GarbageEntry> garbage;
  // Inodes removed by this op, and inodes left as open orphans (nlink 0).
  std::vector<uint64_t> removed_inodes;
  std::vector<uint64_t> orphaned_inodes;
  // AllocateInodesOp: the first id of the reserved range.
  uint64_t first_ino = 0;
};

// One page of a directory listing. Entries come in name (byte) order and do
// not include "." and ".."; pass the last name as `after_name` to get the next
// page. The cursor is a name, not a position, so a page boundary stays valid
// while entries are added or removed around it.
struct DirPage {
  std::vector<DirEntry> entries;
  bool more = false;  // entries after the last one returned exist
};

struct StoreStats {
  uint64_t inodes = 0;
  uint64_t directories = 0;
  uint64_t regular_files = 0;
  uint64_t orphans = 0;
  uint64_t shards = 0;         // shard table entries over all files
  uint64_t logical_bytes = 0;  // sum of regular file sizes
  uint64_t garbage = 0;        // garbage list entries
  uint64_t next_ino = 0;
};

class NamespaceStore {
 public:
  // A store holding only the root directory (ino 1, mode 0755, owned by 0:0,
  // times 0): the state before the first logged op.
  NamespaceStore();
  NamespaceStore(const NamespaceStore&) = delete;
  NamespaceStore& operator=(const NamespaceStore&) = delete;

  // --- Mutation ---

  // Fills in the live-state fields of `op`: a create's or AllocateInodes' id
  // when left 0 (the next unused id), and keep_orphan of unlink and rename
  // (whether the inode losing its last link is open). Everything else in the
  // op is the caller's. Never fails; Apply reports what is wrong.
  void Prepare(NamespaceOp* op) const;
  // Validates and applies one op, all or nothing. Deterministic: depends only
  // on the store and the op (a DropOrphanOp of an inode that is open is the
  // one live check, kBusy; it can only fail live, never in replay).
  Result<ApplyResult> Apply(const NamespaceOp& op);

  // --- Open references (not logged) ---

  // kNotFound if the inode does not exist.
  Status OpenRef(uint64_t ino);
  // Drops one reference. When that was the last one of an orphan, returns the
  // DropOrphanOp (stamped `now_ns`) that removes it; the caller applies and
  // logs it. Unknown inodes or unopened ones are ignored.
  std::optional<DropOrphanOp> CloseRef(uint64_t ino, int64_t now_ns);
  uint32_t OpenCount(uint64_t ino) const;
  // Inodes with nlink 0, in id order.
  std::vector<uint64_t> Orphans() const;

  // --- Reads ---

  // "." is the directory itself, ".." its parent (the root's is the root).
  Result<InodeAttrs> Lookup(uint64_t parent, std::string_view name) const;
  Result<InodeAttrs> GetAttr(uint64_t ino) const;
  Result<DirPage> ReadDir(uint64_t ino, std::string_view after_name, size_t max_entries,
                          bool with_attrs) const;
  // kInvalidArgument if the inode is not a symlink (readlink's EINVAL).
  Result<std::string> ReadLink(uint64_t ino) const;
  // kNoData if the attribute is absent.
  Result<std::string> GetXattr(uint64_t ino, std::string_view name) const;
  Result<std::vector<std::string>> ListXattr(uint64_t ino) const;
  // Entries with index in [first_index, first_index + count), in index order;
  // holes (indexes never written) are simply absent.
  Result<std::vector<ShardEntry>> GetShards(uint64_t ino, uint32_t first_index,
                                            uint32_t count) const;
  // Garbage released at or before `released_before_ns`, at most max_entries,
  // in key order, starting after `after` (a cursor, so entries that cannot be
  // deleted yet do not hide the ones behind them).
  std::vector<GarbageEntry> ListGarbage(int64_t released_before_ns, size_t max_entries,
                                        std::optional<ShardKey> after = std::nullopt) const;
  // The nodes a garbage entry for `key` still names (empty if none): a copy
  // there is about to be deleted, so it must not be counted or re-used.
  std::vector<std::string> GarbageHolders(const ShardKey& key) const;
  // Calls `fn(ino, replication_goal, entry)` for every shard table entry of
  // every regular file, under the shared lock: `fn` must be quick and must
  // not call back into the store. Goal 0 means the cluster default.
  void ForEachShard(
      const std::function<void(uint64_t ino, uint32_t goal, const ShardEntry& entry)>& fn) const;
  // A path from the root for each of `inos` that is reachable (hard links:
  // the first one found); unlinked inodes are left out. Walks the whole tree.
  std::map<uint64_t, std::string> PathsOf(const std::set<uint64_t>& inos) const;
  // The current entry of shard `index` of `ino`, or nullopt.
  std::optional<ShardEntry> GetShard(uint64_t ino, uint32_t index) const;
  StoreStats Stats() const;

  // Checks the structural invariants: every entry names a live inode; every
  // inode but orphans is reachable from the root; a non-directory's nlink is
  // the number of entries naming it; a directory's is 2 + its subdirectories
  // and it has exactly one entry, in the directory its `parent` names; shard
  // tables only on regular files, each entry with replicas, a length within
  // the shard size and within the file size; no id at or above next_ino.
  // kCorrupt listing the first problems found.
  Status CheckInvariants() const;

  // The whole state as text in a canonical order (tests compare stores with
  // it). Open counts are not part of it.
  std::string DumpCanonical() const;

  // --- Snapshots ---

  // The whole state (not open counts) as a compact MessagePack stream: a
  // header, then one object per inode and per garbage entry, with replica node
  // ids interned in a table in the header. Deterministic for a given state.
  std::string EncodeSnapshot() const;
  // Replaces the state with a decoded snapshot; kCorrupt (and the store left
  // unchanged) if it does not decode or violates the invariants.
  Status LoadSnapshot(std::string_view bytes);

 private:
  Result<ApplyResult> ApplyLocked(const NamespaceOp& op);
  Status DoMknod(const MknodOp& op, ApplyResult* r);
  Status DoMkdir(const MkdirOp& op, ApplyResult* r);
  Status DoSymlink(const SymlinkOp& op, ApplyResult* r);
  Status DoLink(const LinkOp& op, ApplyResult* r);
  Status DoUnlink(const UnlinkOp& op, ApplyResult* r);
  Status DoRmdir(const RmdirOp& op, ApplyResult* r);
  Status DoRename(const RenameOp& op, ApplyResult* r);
  Status DoSetattr(const SetattrOp& op, ApplyResult* r);
  Status DoSetxattr(const SetxattrOp& op, ApplyResult* r);
  Status DoRemovexattr(const RemovexattrOp& op, ApplyResult* r);
  Status DoCommitShards(const CommitShardsOp& op, ApplyResult* r);
  Status DoSetReplicationGoal(const SetReplicationGoalOp& op, ApplyResult* r);
  Status DoAllocateInodes(const AllocateInodesOp& op, ApplyResult* r);
  Status DoForgetGarbage(const ForgetGarbageOp& op, ApplyResult* r);
  Status DoDropOrphan(const DropOrphanOp& op, ApplyResult* r);
  Status DoSetShardReplicas(const SetShardReplicasOp& op, ApplyResult* r);

  Inode* Find(uint64_t ino);
  const Inode* Find(uint64_t ino) const;
  Result<Inode*> FindDir(uint64_t ino);
  Result<const Inode*> FindDirConst(uint64_t ino) const;
  // Checks a new inode id before a create: nonzero and unused.
  Status CheckNewIno(uint64_t ino) const;
  Inode& Insert(Inode inode);
  // True if `dir` is `ancestor` or lies below it.
  bool IsSelfOrDescendant(uint64_t dir, uint64_t ancestor) const;
  // Drops one link of a non-directory; at nlink 0 removes it or keeps it as an
  // orphan.
  void DropLink(Inode& inode, bool keep_orphan, int64_t time_ns, ApplyResult* r);
  void RemoveInode(uint64_t ino, int64_t time_ns, ApplyResult* r);
  // Cuts the shard table of a regular file at `new_size`.
  void TruncateShards(Inode& inode, uint64_t new_size, int64_t time_ns, ApplyResult* r);
  void ReleaseShard(uint64_t ino, const ShardEntry& entry, std::vector<std::string> replicas,
                    int64_t time_ns, ApplyResult* r);
  void CheckInvariantsLocked(std::vector<std::string>* problems) const;

  mutable std::shared_mutex mu_;
  std::unordered_map<uint64_t, Inode> inodes_;
  std::map<ShardKey, GarbageEntry> garbage_;
  std::set<uint64_t> orphans_;
  uint64_t next_ino_ = kRootIno + 1;

  mutable std::mutex refs_mu_;
  std::unordered_map<uint64_t, uint32_t> open_refs_;
};

// kInvalidArgument for "", ".", "..", a '/' or a NUL; kNameTooLong past 255
// bytes.
Status ValidateName(std::string_view name);

}  // namespace shardfs
