#include "src/namespace_store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <type_traits>

#include "protocol/msgpack_bounds.h"
#include "protocol/node_messages.h"

namespace shardfs {
namespace {

Status Err(ErrorCode code, std::string message) {
  return Status::Error(code, std::move(message));
}

bool IsDir(const Inode& inode) {
  return inode.attrs.type == FileType::kDirectory;
}

// Sets mtime and ctime of a directory whose entries changed.
void TouchDir(Inode& dir, int64_t time_ns) {
  dir.attrs.mtime_ns = time_ns;
  dir.attrs.ctime_ns = time_ns;
}

Status ValidateShardSize(uint32_t shard_size) {
  if (shard_size < kMinShardSize || shard_size > kMaxShardSize || shard_size % 4096 != 0) {
    return Err(
        ErrorCode::kInvalidArgument,
        fmt::format("shard size {} is not a multiple of 4 KiB in [4 KiB, 1 GiB]", shard_size));
  }
  return Status::Ok();
}

uint64_t ShardTableBytes(const Inode& inode) {
  uint64_t bytes = 0;
  for (const auto& [index, entry] : inode.shards) bytes += entry.StoredBytes();
  return bytes;
}

// Keeps attrs.stored_bytes true after the shard table changed.
void CountStoredBytes(Inode& inode) {
  inode.attrs.stored_bytes = ShardTableBytes(inode);
}

}  // namespace

Status ValidateName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") {
    return Err(ErrorCode::kInvalidArgument, "invalid name");
  }
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Err(ErrorCode::kInvalidArgument, "name contains '/' or NUL");
  }
  if (name.size() > kMaxNameLength)
    return Err(ErrorCode::kNameTooLong, "name longer than 255 bytes");
  return Status::Ok();
}

NamespaceStore::NamespaceStore() {
  Inode root;
  root.attrs.ino = kRootIno;
  root.attrs.type = FileType::kDirectory;
  root.attrs.mode = 0755;
  root.attrs.nlink = 2;
  root.parent = kRootIno;
  inodes_.emplace(kRootIno, std::move(root));
}

// ---------------------------------------------------------------------------
// Lookup helpers

Inode* NamespaceStore::Find(uint64_t ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : &it->second;
}

const Inode* NamespaceStore::Find(uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : &it->second;
}

Result<Inode*> NamespaceStore::FindDir(uint64_t ino) {
  Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  if (!IsDir(*inode))
    return Err(ErrorCode::kNotDir, fmt::format("inode {} is not a directory", ino));
  return inode;
}

Result<const Inode*> NamespaceStore::FindDirConst(uint64_t ino) const {
  const Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  if (!IsDir(*inode))
    return Err(ErrorCode::kNotDir, fmt::format("inode {} is not a directory", ino));
  return inode;
}

Status NamespaceStore::CheckNewIno(uint64_t ino) const {
  if (ino == 0) return Err(ErrorCode::kInvalidArgument, "create without an inode id");
  // The counter must stay above every id: id + 1 has to fit.
  if (ino == UINT64_MAX) return Err(ErrorCode::kNoSpace, "inode ids are exhausted");
  if (inodes_.contains(ino)) {
    return Err(ErrorCode::kInvalidArgument, fmt::format("inode id {} is in use", ino));
  }
  return Status::Ok();
}

Inode& NamespaceStore::Insert(Inode inode) {
  next_ino_ = std::max(next_ino_, inode.attrs.ino + 1);
  uint64_t ino = inode.attrs.ino;
  return inodes_.emplace(ino, std::move(inode)).first->second;
}

bool NamespaceStore::IsSelfOrDescendant(uint64_t dir, uint64_t ancestor) const {
  // Walks up from `dir`; depth is bounded by the number of directories, and
  // the root is its own parent.
  uint64_t cur = dir;
  for (size_t steps = 0; steps <= inodes_.size(); ++steps) {
    if (cur == ancestor) return true;
    if (cur == kRootIno) return false;
    const Inode* inode = Find(cur);
    if (inode == nullptr) return false;
    cur = inode->parent;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Mutation helpers

void NamespaceStore::ReleaseShard(uint64_t ino, const ShardEntry& entry,
                                  std::vector<std::string> replicas, int64_t time_ns,
                                  ApplyResult* r) {
  GarbageEntry released;
  released.key = ShardKey{ino, entry.index, entry.generation};
  released.length = entry.length;
  released.replicas = std::move(replicas);
  released.released_ns = time_ns;
  // The same generation can be released twice (first a replica dropped by a
  // recommit, later the whole generation): merge the replica sets.
  auto [it, inserted] = garbage_.try_emplace(released.key, released);
  if (!inserted) {
    GarbageEntry& g = it->second;
    for (const std::string& node : released.replicas) {
      if (std::find(g.replicas.begin(), g.replicas.end(), node) == g.replicas.end()) {
        g.replicas.push_back(node);
      }
    }
    g.length = std::max(g.length, released.length);
    g.released_ns = std::max(g.released_ns, released.released_ns);
  }
  r->garbage.push_back(std::move(released));
}

void NamespaceStore::RemoveInode(uint64_t ino, int64_t time_ns, ApplyResult* r) {
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  for (const auto& [index, entry] : it->second.shards) {
    ReleaseShard(ino, entry, entry.replicas, time_ns, r);
  }
  inodes_.erase(it);
  orphans_.erase(ino);
  r->removed_inodes.push_back(ino);
}

void NamespaceStore::DropLink(Inode& inode, bool keep_orphan, int64_t time_ns, ApplyResult* r) {
  inode.attrs.nlink--;
  inode.attrs.ctime_ns = time_ns;
  if (inode.attrs.nlink > 0) return;
  if (keep_orphan) {
    orphans_.insert(inode.attrs.ino);
    r->orphaned_inodes.push_back(inode.attrs.ino);
  } else {
    RemoveInode(inode.attrs.ino, time_ns, r);
  }
}

void NamespaceStore::TruncateShards(Inode& inode, uint64_t new_size, int64_t time_ns,
                                    ApplyResult* r) {
  const uint64_t shard_size = inode.attrs.shard_size;
  // First index that lies wholly past the new end. Rounded up without
  // adding first: new_size + shard_size - 1 wraps for sizes near 2^64 and
  // would drop every shard of a file that only grew.
  const uint64_t first_dropped = new_size / shard_size + (new_size % shard_size != 0 ? 1 : 0);
  auto it = inode.shards.lower_bound(
      static_cast<uint32_t>(std::min<uint64_t>(first_dropped, UINT32_MAX)));
  if (first_dropped <= UINT32_MAX) {
    while (it != inode.shards.end()) {
      ReleaseShard(inode.attrs.ino, it->second, it->second.replicas, time_ns, r);
      it = inode.shards.erase(it);
    }
  }
  // The shard holding the new end keeps only the bytes before it.
  if (new_size > 0) {
    const uint64_t last = (new_size - 1) / shard_size;
    // Past index 2^32 - 1 there is no such shard; a narrowing cast would
    // shorten an unrelated low one.
    auto last_it =
        last <= UINT32_MAX ? inode.shards.find(static_cast<uint32_t>(last)) : inode.shards.end();
    if (last_it != inode.shards.end()) {
      const uint64_t keep = new_size - last * shard_size;
      if (last_it->second.length > keep) last_it->second.length = keep;
    }
  }
  inode.attrs.size = new_size;
  CountStoredBytes(inode);
}

// ---------------------------------------------------------------------------
// Prepare / Apply

void NamespaceStore::Prepare(NamespaceOp* op) const {
  std::shared_lock lock(mu_);
  // Whether `ino` would lose its last link and is open.
  auto last_link_open = [&](const Inode* dir, const std::string& name) {
    if (dir == nullptr || !IsDir(*dir)) return false;
    auto it = dir->children.find(name);
    if (it == dir->children.end()) return false;
    const Inode* victim = Find(it->second);
    return victim != nullptr && !IsDir(*victim) && victim->attrs.nlink == 1 &&
           OpenCount(victim->attrs.ino) > 0;
  };
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, MknodOp> || std::is_same_v<T, MkdirOp> ||
                      std::is_same_v<T, SymlinkOp>) {
          if (o.ino == 0) o.ino = next_ino_;
        } else if constexpr (std::is_same_v<T, AllocateInodesOp>) {
          if (o.first == 0) o.first = next_ino_;
        } else if constexpr (std::is_same_v<T, UnlinkOp>) {
          o.keep_orphan = last_link_open(Find(o.parent), o.name);
        } else if constexpr (std::is_same_v<T, RenameOp>) {
          o.keep_orphan =
              (o.flags & kRenameExchange) == 0 && last_link_open(Find(o.new_parent), o.new_name);
        }
      },
      *op);
}

Result<ApplyResult> NamespaceStore::Apply(const NamespaceOp& op) {
  std::unique_lock lock(mu_);
  return ApplyLocked(op);
}

Result<ApplyResult> NamespaceStore::ApplyLocked(const NamespaceOp& op) {
  ApplyResult result;
  // Each Do* validates everything before it changes anything, so an error
  // leaves the store as it was.
  Status st = std::visit(
      [&](const auto& o) -> Status {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, MknodOp>) return DoMknod(o, &result);
        if constexpr (std::is_same_v<T, MkdirOp>) return DoMkdir(o, &result);
        if constexpr (std::is_same_v<T, SymlinkOp>) return DoSymlink(o, &result);
        if constexpr (std::is_same_v<T, LinkOp>) return DoLink(o, &result);
        if constexpr (std::is_same_v<T, UnlinkOp>) return DoUnlink(o, &result);
        if constexpr (std::is_same_v<T, RmdirOp>) return DoRmdir(o, &result);
        if constexpr (std::is_same_v<T, RenameOp>) return DoRename(o, &result);
        if constexpr (std::is_same_v<T, SetattrOp>) return DoSetattr(o, &result);
        if constexpr (std::is_same_v<T, SetxattrOp>) return DoSetxattr(o, &result);
        if constexpr (std::is_same_v<T, RemovexattrOp>) return DoRemovexattr(o, &result);
        if constexpr (std::is_same_v<T, CommitShardsOp>) return DoCommitShards(o, &result);
        if constexpr (std::is_same_v<T, SetReplicationGoalOp>) {
          return DoSetReplicationGoal(o, &result);
        }
        if constexpr (std::is_same_v<T, AllocateInodesOp>) return DoAllocateInodes(o, &result);
        if constexpr (std::is_same_v<T, ForgetGarbageOp>) return DoForgetGarbage(o, &result);
        if constexpr (std::is_same_v<T, DropOrphanOp>) return DoDropOrphan(o, &result);
        if constexpr (std::is_same_v<T, SetShardReplicasOp>) {
          return DoSetShardReplicas(o, &result);
        }
      },
      op);
  if (!st.ok()) return st;
  if (result.ino != 0) {
    if (const Inode* inode = Find(result.ino)) result.attrs = inode->attrs;
  }
  return result;
}

Status NamespaceStore::DoMknod(const MknodOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  SHARDFS_ASSIGN_OR_RETURN(Inode * dir, FindDir(op.parent));
  if (op.type == FileType::kDirectory || op.type == FileType::kSymlink) {
    return Err(ErrorCode::kInvalidArgument, "mknod cannot make directories or symlinks");
  }
  const uint32_t shard_size = op.shard_size == 0 ? kDefaultShardSize : op.shard_size;
  if (op.type == FileType::kRegular) SHARDFS_RETURN_IF_ERROR(ValidateShardSize(shard_size));
  if (dir->children.contains(op.name)) return Err(ErrorCode::kExists, "name exists");
  SHARDFS_RETURN_IF_ERROR(CheckNewIno(op.ino));

  Inode inode;
  InodeAttrs& a = inode.attrs;
  a.ino = op.ino;
  a.type = op.type;
  a.mode = op.mode & 07777;
  a.uid = op.uid;
  a.gid = op.gid;
  a.nlink = 1;
  if (op.type == FileType::kCharDevice || op.type == FileType::kBlockDevice) a.rdev = op.rdev;
  a.atime_ns = a.mtime_ns = a.ctime_ns = op.time_ns;
  if (op.type == FileType::kRegular) a.shard_size = shard_size;
  a.replication_goal = op.replication_goal != 0 ? op.replication_goal : dir->attrs.replication_goal;
  Insert(std::move(inode));
  dir->children.emplace(op.name, op.ino);
  TouchDir(*dir, op.time_ns);
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoMkdir(const MkdirOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  SHARDFS_ASSIGN_OR_RETURN(Inode * dir, FindDir(op.parent));
  if (dir->children.contains(op.name)) return Err(ErrorCode::kExists, "name exists");
  if (dir->attrs.nlink >= kMaxLinks)
    return Err(ErrorCode::kTooManyLinks, "too many subdirectories");
  SHARDFS_RETURN_IF_ERROR(CheckNewIno(op.ino));

  Inode inode;
  InodeAttrs& a = inode.attrs;
  a.ino = op.ino;
  a.type = FileType::kDirectory;
  a.mode = op.mode & 07777;
  a.uid = op.uid;
  a.gid = op.gid;
  a.nlink = 2;
  a.atime_ns = a.mtime_ns = a.ctime_ns = op.time_ns;
  a.replication_goal = dir->attrs.replication_goal;
  inode.parent = op.parent;
  Insert(std::move(inode));
  dir->children.emplace(op.name, op.ino);
  dir->attrs.nlink++;
  TouchDir(*dir, op.time_ns);
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoSymlink(const SymlinkOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  SHARDFS_ASSIGN_OR_RETURN(Inode * dir, FindDir(op.parent));
  // Linux answers ENOENT for an empty target.
  if (op.target.empty()) return Err(ErrorCode::kNotFound, "empty symlink target");
  if (op.target.size() > kMaxSymlinkLength)
    return Err(ErrorCode::kNameTooLong, "symlink target too long");
  if (op.target.find('\0') != std::string::npos) {
    return Err(ErrorCode::kInvalidArgument, "symlink target contains NUL");
  }
  if (dir->children.contains(op.name)) return Err(ErrorCode::kExists, "name exists");
  SHARDFS_RETURN_IF_ERROR(CheckNewIno(op.ino));

  Inode inode;
  InodeAttrs& a = inode.attrs;
  a.ino = op.ino;
  a.type = FileType::kSymlink;
  a.mode = 0777;
  a.uid = op.uid;
  a.gid = op.gid;
  a.nlink = 1;
  a.size = op.target.size();
  a.atime_ns = a.mtime_ns = a.ctime_ns = op.time_ns;
  inode.symlink_target = op.target;
  Insert(std::move(inode));
  dir->children.emplace(op.name, op.ino);
  TouchDir(*dir, op.time_ns);
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoLink(const LinkOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  if (IsDir(*inode)) return Err(ErrorCode::kNotPermitted, "hard link to a directory");
  // An unlinked (orphan) file cannot get a name back, as on Linux.
  if (inode->attrs.nlink == 0) return Err(ErrorCode::kNotFound, "inode is unlinked");
  if (inode->attrs.nlink >= kMaxLinks) return Err(ErrorCode::kTooManyLinks, "too many links");
  SHARDFS_ASSIGN_OR_RETURN(Inode * dir, FindDir(op.parent));
  if (dir->children.contains(op.name)) return Err(ErrorCode::kExists, "name exists");

  dir->children.emplace(op.name, op.ino);
  TouchDir(*dir, op.time_ns);
  inode->attrs.nlink++;
  inode->attrs.ctime_ns = op.time_ns;
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoUnlink(const UnlinkOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  SHARDFS_ASSIGN_OR_RETURN(Inode * dir, FindDir(op.parent));
  auto it = dir->children.find(op.name);
  if (it == dir->children.end()) return Err(ErrorCode::kNotFound, "no such entry");
  Inode* inode = Find(it->second);
  if (inode == nullptr) return Err(ErrorCode::kInternal, "entry names a missing inode");
  if (IsDir(*inode)) return Err(ErrorCode::kIsDir, "unlink of a directory");

  dir->children.erase(it);
  TouchDir(*dir, op.time_ns);
  r->ino = inode->attrs.ino;
  DropLink(*inode, op.keep_orphan, op.time_ns, r);
  return Status::Ok();
}

Status NamespaceStore::DoRmdir(const RmdirOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  SHARDFS_ASSIGN_OR_RETURN(Inode * dir, FindDir(op.parent));
  auto it = dir->children.find(op.name);
  if (it == dir->children.end()) return Err(ErrorCode::kNotFound, "no such entry");
  Inode* victim = Find(it->second);
  if (victim == nullptr) return Err(ErrorCode::kInternal, "entry names a missing inode");
  if (!IsDir(*victim)) return Err(ErrorCode::kNotDir, "rmdir of a non-directory");
  if (!victim->children.empty()) return Err(ErrorCode::kNotEmpty, "directory not empty");

  const uint64_t ino = victim->attrs.ino;
  dir->children.erase(it);
  dir->attrs.nlink--;
  TouchDir(*dir, op.time_ns);
  RemoveInode(ino, op.time_ns, r);
  r->ino = ino;
  return Status::Ok();
}

Status NamespaceStore::DoRename(const RenameOp& op, ApplyResult* r) {
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.name));
  SHARDFS_RETURN_IF_ERROR(ValidateName(op.new_name));
  if ((op.flags & ~(kRenameNoReplace | kRenameExchange)) != 0 ||
      op.flags == (kRenameNoReplace | kRenameExchange)) {
    return Err(ErrorCode::kInvalidArgument, "bad rename flags");
  }
  const bool exchange = (op.flags & kRenameExchange) != 0;
  SHARDFS_ASSIGN_OR_RETURN(Inode * src_dir, FindDir(op.parent));
  SHARDFS_ASSIGN_OR_RETURN(Inode * dst_dir, FindDir(op.new_parent));
  auto src_it = src_dir->children.find(op.name);
  if (src_it == src_dir->children.end()) return Err(ErrorCode::kNotFound, "no such entry");
  const uint64_t src_ino = src_it->second;
  Inode* src = Find(src_ino);
  if (src == nullptr) return Err(ErrorCode::kInternal, "entry names a missing inode");
  auto dst_it = dst_dir->children.find(op.new_name);
  const bool dst_exists = dst_it != dst_dir->children.end();
  const uint64_t dst_ino = dst_exists ? dst_it->second : 0;
  Inode* dst = dst_exists ? Find(dst_ino) : nullptr;
  if (dst_exists && dst == nullptr) return Err(ErrorCode::kInternal, "entry names a missing inode");

  if (exchange && !dst_exists) return Err(ErrorCode::kNotFound, "exchange target missing");
  if ((op.flags & kRenameNoReplace) != 0 && dst_exists)
    return Err(ErrorCode::kExists, "target exists");
  r->ino = src_ino;
  // Both names already refer to the same inode: POSIX says do nothing.
  if (dst_exists && dst_ino == src_ino) return Status::Ok();

  const bool src_is_dir = IsDir(*src);
  const bool dst_is_dir = dst != nullptr && IsDir(*dst);
  const bool moves_between_dirs = op.parent != op.new_parent;
  if (src_is_dir && moves_between_dirs && IsSelfOrDescendant(op.new_parent, src_ino)) {
    return Err(ErrorCode::kInvalidArgument, "cannot move a directory into itself");
  }

  if (exchange) {
    if (dst_is_dir && moves_between_dirs && IsSelfOrDescendant(op.parent, dst_ino)) {
      return Err(ErrorCode::kInvalidArgument, "cannot move a directory into itself");
    }
    // A directory changing parent moves one ".." link with it.
    const int src_dir_delta = (dst_is_dir ? 1 : 0) - (src_is_dir ? 1 : 0);
    if (moves_between_dirs && src_dir_delta != 0) {
      Inode* gaining = src_dir_delta > 0 ? src_dir : dst_dir;
      if (gaining->attrs.nlink >= kMaxLinks)
        return Err(ErrorCode::kTooManyLinks, "too many subdirectories");
      src_dir->attrs.nlink += src_dir_delta;
      dst_dir->attrs.nlink -= src_dir_delta;
    }
    src_it->second = dst_ino;
    dst_it->second = src_ino;
    if (src_is_dir) src->parent = op.new_parent;
    if (dst_is_dir) dst->parent = op.parent;
    src->attrs.ctime_ns = op.time_ns;
    dst->attrs.ctime_ns = op.time_ns;
    TouchDir(*src_dir, op.time_ns);
    TouchDir(*dst_dir, op.time_ns);
    return Status::Ok();
  }

  if (dst_exists) {
    if (dst_is_dir && !src_is_dir)
      return Err(ErrorCode::kIsDir, "cannot replace a directory with a non-directory");
    if (!dst_is_dir && src_is_dir)
      return Err(ErrorCode::kNotDir, "cannot replace a non-directory with a directory");
    if (dst_is_dir && !dst->children.empty())
      return Err(ErrorCode::kNotEmpty, "target directory not empty");
  }
  if (src_is_dir && moves_between_dirs && !dst_is_dir && dst_dir->attrs.nlink >= kMaxLinks) {
    return Err(ErrorCode::kTooManyLinks, "too many subdirectories");
  }

  // Validation done; from here on nothing fails.
  if (dst_exists) {
    if (dst_is_dir) {
      dst_dir->attrs.nlink--;
      RemoveInode(dst_ino, op.time_ns, r);
    } else {
      DropLink(*dst, op.keep_orphan, op.time_ns, r);
    }
    dst_it->second = src_ino;
  } else {
    dst_dir->children.emplace(op.new_name, src_ino);
  }
  src_dir->children.erase(op.name);
  if (src_is_dir) {
    src->parent = op.new_parent;
    if (moves_between_dirs) {
      src_dir->attrs.nlink--;
      dst_dir->attrs.nlink++;
    }
  }
  src->attrs.ctime_ns = op.time_ns;
  TouchDir(*src_dir, op.time_ns);
  TouchDir(*dst_dir, op.time_ns);
  return Status::Ok();
}

Status NamespaceStore::DoSetattr(const SetattrOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  if ((op.mask & ~kSetAttrAll) != 0)
    return Err(ErrorCode::kInvalidArgument, "unknown setattr bits");
  const bool set_size = (op.mask & kSetAttrSize) != 0;
  if (set_size) {
    if (IsDir(*inode)) return Err(ErrorCode::kIsDir, "truncate of a directory");
    if (inode->attrs.type != FileType::kRegular) {
      return Err(ErrorCode::kInvalidArgument, "truncate of a special file");
    }
  }

  InodeAttrs& a = inode->attrs;
  if (op.mask & kSetAttrMode) a.mode = op.mode & 07777;
  if (op.mask & kSetAttrUid) a.uid = op.uid;
  if (op.mask & kSetAttrGid) a.gid = op.gid;
  if (op.mask & kSetAttrAtime) a.atime_ns = op.atime_ns;
  if (set_size && op.size != a.size) {
    TruncateShards(*inode, op.size, op.time_ns, r);
    a.mtime_ns = op.time_ns;
  }
  if (op.mask & kSetAttrMtime) a.mtime_ns = op.mtime_ns;
  a.ctime_ns = op.time_ns;
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoSetxattr(const SetxattrOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  if (op.name.empty() || op.name.size() > kMaxXattrNameLength ||
      op.name.find('\0') != std::string::npos) {
    return Err(ErrorCode::kRange, "bad xattr name");
  }
  if (op.value.size() > kMaxXattrValueSize)
    return Err(ErrorCode::kTooLarge, "xattr value too large");
  if ((op.flags & ~(kXattrCreate | kXattrReplace)) != 0 ||
      op.flags == (kXattrCreate | kXattrReplace)) {
    return Err(ErrorCode::kInvalidArgument, "bad xattr flags");
  }
  auto it = inode->xattrs.find(op.name);
  if ((op.flags & kXattrCreate) && it != inode->xattrs.end()) {
    return Err(ErrorCode::kExists, "xattr exists");
  }
  if ((op.flags & kXattrReplace) && it == inode->xattrs.end()) {
    return Err(ErrorCode::kNoData, "no such xattr");
  }
  inode->xattrs.insert_or_assign(op.name, op.value);
  inode->attrs.ctime_ns = op.time_ns;
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoRemovexattr(const RemovexattrOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  auto it = inode->xattrs.find(op.name);
  if (it == inode->xattrs.end()) return Err(ErrorCode::kNoData, "no such xattr");
  inode->xattrs.erase(it);
  inode->attrs.ctime_ns = op.time_ns;
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoCommitShards(const CommitShardsOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  if (IsDir(*inode)) return Err(ErrorCode::kIsDir, "commit to a directory");
  if (inode->attrs.type != FileType::kRegular) {
    return Err(ErrorCode::kInvalidArgument, "commit to a special file");
  }
  const uint64_t shard_size = inode->attrs.shard_size;
  std::set<uint32_t> seen;
  for (const ShardEntry& e : op.shards) {
    if (!seen.insert(e.index).second) {
      return Err(ErrorCode::kInvalidArgument, fmt::format("shard {} committed twice", e.index));
    }
    if (e.replicas.empty()) {
      return Err(ErrorCode::kInvalidArgument, fmt::format("shard {} has no replicas", e.index));
    }
    std::vector<std::string> sorted = e.replicas;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      return Err(ErrorCode::kInvalidArgument, fmt::format("shard {} lists a node twice", e.index));
    }
    if (e.length > shard_size || e.index * shard_size + e.length > op.size) {
      return Err(ErrorCode::kInvalidArgument,
                 fmt::format("shard {} extends past its shard or the file size", e.index));
    }
    auto cur = inode->shards.find(e.index);
    if (cur != inode->shards.end() && cur->second.generation > e.generation) {
      return Err(ErrorCode::kStale, fmt::format("shard {} generation {} is older than current {}",
                                                e.index, e.generation, cur->second.generation));
    }
  }

  if (op.size != inode->attrs.size) TruncateShards(*inode, op.size, op.time_ns, r);
  for (const ShardEntry& e : op.shards) {
    auto [it, inserted] = inode->shards.try_emplace(e.index, e);
    if (!inserted) {
      ShardEntry& old = it->second;
      if (old.generation == e.generation) {
        // Same object, new replica list: only copies no longer listed go.
        std::vector<std::string> dropped;
        for (const std::string& node : old.replicas) {
          if (std::find(e.replicas.begin(), e.replicas.end(), node) == e.replicas.end()) {
            dropped.push_back(node);
          }
        }
        if (!dropped.empty()) ReleaseShard(op.ino, old, std::move(dropped), op.time_ns, r);
      } else {
        ReleaseShard(op.ino, old, old.replicas, op.time_ns, r);
      }
      old = e;
    }
  }
  CountStoredBytes(*inode);
  inode->attrs.mtime_ns = op.time_ns;
  inode->attrs.ctime_ns = op.time_ns;
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoSetShardReplicas(const SetShardReplicasOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  auto it = inode->shards.find(op.index);
  if (it == inode->shards.end() || it->second.generation != op.generation) {
    return Err(ErrorCode::kStale, fmt::format("shard {} of inode {} is no longer generation {}",
                                              op.index, op.ino, op.generation));
  }
  if (op.replicas.empty()) {
    return Err(ErrorCode::kInvalidArgument,
               fmt::format("shard {} would have no replicas", op.index));
  }
  std::vector<std::string> sorted = op.replicas;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return Err(ErrorCode::kInvalidArgument, fmt::format("shard {} lists a node twice", op.index));
  }
  ShardEntry& entry = it->second;
  std::vector<std::string> dropped;
  for (const std::string& node : entry.replicas) {
    if (std::find(op.replicas.begin(), op.replicas.end(), node) == op.replicas.end()) {
      dropped.push_back(node);
    }
  }
  if (!dropped.empty()) ReleaseShard(op.ino, entry, std::move(dropped), op.time_ns, r);
  entry.replicas = op.replicas;
  // A node copied to again must not lose its new copy to an older garbage
  // entry that still names it.
  auto g = garbage_.find(ShardKey{op.ino, op.index, op.generation});
  if (g != garbage_.end()) {
    auto& holders = g->second.replicas;
    std::erase_if(holders, [&](const std::string& node) {
      return std::find(op.replicas.begin(), op.replicas.end(), node) != op.replicas.end();
    });
    if (holders.empty()) garbage_.erase(g);
  }
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoSetReplicationGoal(const SetReplicationGoalOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  if (op.goal > 255) return Err(ErrorCode::kInvalidArgument, "replication goal above 255");
  inode->attrs.replication_goal = op.goal;
  inode->attrs.ctime_ns = op.time_ns;
  r->ino = op.ino;
  return Status::Ok();
}

Status NamespaceStore::DoAllocateInodes(const AllocateInodesOp& op, ApplyResult* r) {
  if (op.count == 0 || op.count > (1u << 20)) {
    return Err(ErrorCode::kInvalidArgument, "allocate 1 to 2^20 inode ids at a time");
  }
  // Ranges only go upward, so two reservations never overlap.
  if (op.first < next_ino_ || op.first > UINT64_MAX - op.count) {
    return Err(ErrorCode::kInvalidArgument, "inode range starts below the next free id");
  }
  next_ino_ = op.first + op.count;
  r->first_ino = op.first;
  return Status::Ok();
}

Status NamespaceStore::DoForgetGarbage(const ForgetGarbageOp& op, ApplyResult*) {
  for (const ShardKey& key : op.keys) garbage_.erase(key);
  return Status::Ok();
}

Status NamespaceStore::DoDropOrphan(const DropOrphanOp& op, ApplyResult* r) {
  Inode* inode = Find(op.ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", op.ino));
  if (inode->attrs.nlink != 0) return Err(ErrorCode::kInvalidArgument, "inode still has links");
  // The only check of live state in Apply: after a restart nothing is open,
  // so a logged drop never fails on replay.
  if (OpenCount(op.ino) > 0) return Err(ErrorCode::kBusy, "orphan is open");
  r->ino = op.ino;
  RemoveInode(op.ino, op.time_ns, r);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Open references

Status NamespaceStore::OpenRef(uint64_t ino) {
  std::shared_lock lock(mu_);
  if (Find(ino) == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  std::lock_guard refs_lock(refs_mu_);
  open_refs_[ino]++;
  return Status::Ok();
}

std::optional<DropOrphanOp> NamespaceStore::CloseRef(uint64_t ino, int64_t now_ns) {
  std::shared_lock lock(mu_);
  {
    std::lock_guard refs_lock(refs_mu_);
    auto it = open_refs_.find(ino);
    if (it == open_refs_.end()) return std::nullopt;
    if (--it->second > 0) return std::nullopt;
    open_refs_.erase(it);
  }
  const Inode* inode = Find(ino);
  if (inode == nullptr || inode->attrs.nlink != 0) return std::nullopt;
  return DropOrphanOp{ino, now_ns};
}

uint32_t NamespaceStore::OpenCount(uint64_t ino) const {
  std::lock_guard refs_lock(refs_mu_);
  auto it = open_refs_.find(ino);
  return it == open_refs_.end() ? 0 : it->second;
}

std::vector<uint64_t> NamespaceStore::Orphans() const {
  std::shared_lock lock(mu_);
  return std::vector<uint64_t>(orphans_.begin(), orphans_.end());
}

// ---------------------------------------------------------------------------
// Reads

Result<InodeAttrs> NamespaceStore::Lookup(uint64_t parent, std::string_view name) const {
  std::shared_lock lock(mu_);
  SHARDFS_ASSIGN_OR_RETURN(const Inode* dir, FindDirConst(parent));
  if (name == ".") return dir->attrs;
  if (name == "..") return Find(dir->parent)->attrs;
  // A name from the wire: a '/' or a NUL is a malformed request, not a
  // missing entry.
  SHARDFS_RETURN_IF_ERROR(ValidateName(name));
  auto it = dir->children.find(std::string(name));
  if (it == dir->children.end()) return Err(ErrorCode::kNotFound, "no such entry");
  const Inode* inode = Find(it->second);
  if (inode == nullptr) return Err(ErrorCode::kInternal, "entry names a missing inode");
  return inode->attrs;
}

Result<InodeAttrs> NamespaceStore::GetAttr(uint64_t ino) const {
  std::shared_lock lock(mu_);
  const Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  return inode->attrs;
}

Result<DirPage> NamespaceStore::ReadDir(uint64_t ino, std::string_view after_name,
                                        size_t max_entries, bool with_attrs) const {
  std::shared_lock lock(mu_);
  SHARDFS_ASSIGN_OR_RETURN(const Inode* dir, FindDirConst(ino));
  DirPage page;
  auto it = after_name.empty() ? dir->children.begin()
                               : dir->children.upper_bound(std::string(after_name));
  for (; it != dir->children.end() && page.entries.size() < max_entries; ++it) {
    const Inode* child = Find(it->second);
    if (child == nullptr) continue;  // cannot happen while the invariants hold
    DirEntry entry;
    entry.name = it->first;
    entry.ino = it->second;
    entry.type = child->attrs.type;
    if (with_attrs) {
      entry.attrs = child->attrs;
      entry.has_xattrs = !child->xattrs.empty();
    }
    page.entries.push_back(std::move(entry));
  }
  page.more = it != dir->children.end();
  return page;
}

Result<std::string> NamespaceStore::ReadLink(uint64_t ino) const {
  std::shared_lock lock(mu_);
  const Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  if (inode->attrs.type != FileType::kSymlink)
    return Err(ErrorCode::kInvalidArgument, "not a symlink");
  return inode->symlink_target;
}

Result<std::string> NamespaceStore::GetXattr(uint64_t ino, std::string_view name) const {
  std::shared_lock lock(mu_);
  const Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  auto it = inode->xattrs.find(std::string(name));
  if (it == inode->xattrs.end()) return Err(ErrorCode::kNoData, "no such xattr");
  return it->second;
}

Result<std::vector<std::string>> NamespaceStore::ListXattr(uint64_t ino) const {
  std::shared_lock lock(mu_);
  const Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  std::vector<std::string> names;
  names.reserve(inode->xattrs.size());
  for (const auto& [name, value] : inode->xattrs) names.push_back(name);
  return names;
}

Result<std::vector<ShardEntry>> NamespaceStore::GetShards(uint64_t ino, uint32_t first_index,
                                                          uint32_t count) const {
  std::shared_lock lock(mu_);
  const Inode* inode = Find(ino);
  if (inode == nullptr) return Err(ErrorCode::kNotFound, fmt::format("no inode {}", ino));
  if (IsDir(*inode)) return Err(ErrorCode::kIsDir, "directories have no shards");
  std::vector<ShardEntry> out;
  const uint64_t end = static_cast<uint64_t>(first_index) + count;
  for (auto it = inode->shards.lower_bound(first_index);
       it != inode->shards.end() && it->first < end; ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::vector<GarbageEntry> NamespaceStore::ListGarbage(int64_t released_before_ns,
                                                      size_t max_entries,
                                                      std::optional<ShardKey> after) const {
  std::shared_lock lock(mu_);
  std::vector<GarbageEntry> out;
  auto it = after ? garbage_.upper_bound(*after) : garbage_.begin();
  for (; it != garbage_.end() && out.size() < max_entries; ++it) {
    if (it->second.released_ns <= released_before_ns) out.push_back(it->second);
  }
  return out;
}

std::vector<std::string> NamespaceStore::GarbageHolders(const ShardKey& key) const {
  std::shared_lock lock(mu_);
  auto it = garbage_.find(key);
  if (it == garbage_.end()) return {};
  return it->second.replicas;
}

void NamespaceStore::ForEachShard(
    const std::function<void(uint64_t, uint32_t, const ShardEntry&)>& fn) const {
  std::shared_lock lock(mu_);
  for (const auto& [ino, inode] : inodes_) {
    for (const auto& [index, entry] : inode.shards) fn(ino, inode.attrs.replication_goal, entry);
  }
}

std::map<uint64_t, std::string> NamespaceStore::PathsOf(const std::set<uint64_t>& inos) const {
  std::shared_lock lock(mu_);
  std::map<uint64_t, std::string> out;
  if (inos.empty()) return out;
  // Iterative, so a deep tree cannot overflow the stack.
  std::vector<std::pair<uint64_t, std::string>> dirs{{kRootIno, ""}};
  while (!dirs.empty() && out.size() < inos.size()) {
    auto [dir_ino, dir_path] = std::move(dirs.back());
    dirs.pop_back();
    const Inode* dir = Find(dir_ino);
    if (dir == nullptr) continue;
    for (const auto& [name, child] : dir->children) {
      std::string path = dir_path + "/" + name;
      if (inos.count(child) != 0) out.try_emplace(child, path);
      const Inode* c = Find(child);
      if (c != nullptr && IsDir(*c)) dirs.emplace_back(child, std::move(path));
    }
  }
  return out;
}

std::optional<ShardEntry> NamespaceStore::GetShard(uint64_t ino, uint32_t index) const {
  std::shared_lock lock(mu_);
  const Inode* inode = Find(ino);
  if (inode == nullptr) return std::nullopt;
  auto it = inode->shards.find(index);
  if (it == inode->shards.end()) return std::nullopt;
  return it->second;
}

StoreStats NamespaceStore::Stats() const {
  std::shared_lock lock(mu_);
  StoreStats s;
  s.inodes = inodes_.size();
  for (const auto& [ino, inode] : inodes_) {
    if (IsDir(inode)) s.directories++;
    if (inode.attrs.type == FileType::kRegular) {
      s.regular_files++;
      s.logical_bytes += inode.attrs.size;
      s.shards += inode.shards.size();
    }
  }
  s.orphans = orphans_.size();
  s.garbage = garbage_.size();
  s.next_ino = next_ino_;
  return s;
}

// ---------------------------------------------------------------------------
// Invariants and canonical dump

void NamespaceStore::CheckInvariantsLocked(std::vector<std::string>* problems) const {
  // Runs on every snapshot load, so it avoids per-inode hash maps: a million
  // inodes check in a few hundred milliseconds.
  auto problem = [&](std::string text) {
    if (problems->size() < 20) problems->push_back(std::move(text));
  };
  const Inode* root = Find(kRootIno);
  if (root == nullptr || !IsDir(*root) || root->parent != kRootIno) {
    problem("root missing, not a directory, or not its own parent");
    return;
  }

  // 1. Each inode on its own.
  size_t directories = 0;
  size_t linked_non_dirs = 0;
  for (const auto& [ino, inode] : inodes_) {
    const InodeAttrs& a = inode.attrs;
    if (a.ino != ino) problem(fmt::format("inode {} records id {}", ino, a.ino));
    if (ino >= next_ino_) problem(fmt::format("inode {} at or above next id {}", ino, next_ino_));
    if (IsDir(inode)) {
      ++directories;
    } else {
      if (a.nlink > 0) ++linked_non_dirs;
      if ((a.nlink == 0) != orphans_.contains(ino)) {
        problem(fmt::format("inode {} orphan list disagrees with nlink {}", ino, a.nlink));
      }
      if (!inode.children.empty()) problem(fmt::format("non-dir {} has entries", ino));
    }
    if (a.type == FileType::kSymlink && a.size != inode.symlink_target.size()) {
      problem(fmt::format("symlink {} size {} != target length", ino, a.size));
    }
    if (a.type != FileType::kRegular) {
      if (!inode.shards.empty()) problem(fmt::format("non-regular inode {} has shards", ino));
      continue;
    }
    if (!ValidateShardSize(a.shard_size).ok()) {
      problem(fmt::format("file {} has bad shard size {}", ino, a.shard_size));
      continue;  // the shard checks below would divide by it
    }
    for (const auto& [index, e] : inode.shards) {
      if (e.index != index)
        problem(fmt::format("inode {} shard {} records index {}", ino, index, e.index));
      if (e.replicas.empty()) problem(fmt::format("inode {} shard {} has no replicas", ino, index));
      if (e.length > a.shard_size ||
          static_cast<uint64_t>(index) * a.shard_size + e.length > a.size) {
        problem(fmt::format("inode {} shard {} extends past shard or file end", ino, index));
      }
    }
    if (const uint64_t held = ShardTableBytes(inode); held != a.stored_bytes) {
      problem(fmt::format("file {} says it stores {} bytes, its shards hold {}", ino,
                          a.stored_bytes, held));
    }
  }
  for (uint64_t ino : orphans_) {
    const Inode* inode = Find(ino);
    if (inode == nullptr || inode->attrs.nlink != 0)
      problem(fmt::format("orphan {} is not one", ino));
  }
  for (const auto& [key, entry] : garbage_) {
    if (!(entry.key == key))
      problem(fmt::format("garbage {}/{} key mismatch", key.inode, key.index));
  }

  // 2. The tree, walked from the root. A directory is descended into only
  // from the directory its `parent` names, so a cycle cut off from the root
  // is never entered and shows up as unreached directories; a directory named
  // twice shows up as reached twice (the walk stops past the count, so a
  // hostile snapshot cannot make it run away).
  size_t reached = 0;
  std::vector<uint64_t> non_dir_entries;  // one per entry naming a non-directory
  non_dir_entries.reserve(linked_non_dirs);
  std::vector<const Inode*> stack{root};
  while (!stack.empty() && reached <= directories) {
    const Inode* dir = stack.back();
    stack.pop_back();
    ++reached;
    const uint64_t dir_ino = dir->attrs.ino;
    uint32_t subdirs = 0;
    for (const auto& [name, child_ino] : dir->children) {
      if (!ValidateName(name).ok()) problem(fmt::format("dir {} has bad name '{}'", dir_ino, name));
      const Inode* child = Find(child_ino);
      if (child == nullptr) {
        problem(fmt::format("dir {} entry '{}' names missing inode {}", dir_ino, name, child_ino));
      } else if (!IsDir(*child)) {
        non_dir_entries.push_back(child_ino);
      } else if (child->parent != dir_ino || child_ino == kRootIno) {
        problem(
            fmt::format("dir {} in dir {} records parent {}", child_ino, dir_ino, child->parent));
      } else {
        ++subdirs;
        stack.push_back(child);
      }
    }
    if (dir->attrs.nlink != 2 + subdirs) {
      problem(fmt::format("dir {} nlink {} != {}", dir_ino, dir->attrs.nlink, 2 + subdirs));
    }
  }
  if (reached != directories) {
    problem(fmt::format("{} directories, {} reached from the root", directories, reached));
    return;
  }

  // 3. Link counts of non-directories: group the entries by inode.
  std::sort(non_dir_entries.begin(), non_dir_entries.end());
  size_t named = 0;
  for (size_t i = 0; i < non_dir_entries.size();) {
    size_t j = i;
    while (j < non_dir_entries.size() && non_dir_entries[j] == non_dir_entries[i]) ++j;
    const uint64_t ino = non_dir_entries[i];
    const Inode* inode = Find(ino);
    if (inode->attrs.nlink != j - i) {
      problem(fmt::format("inode {} nlink {} != {} entries", ino, inode->attrs.nlink, j - i));
    }
    ++named;
    i = j;
  }
  if (named != linked_non_dirs) {
    problem(fmt::format("{} linked non-directories, {} named by an entry", linked_non_dirs, named));
  }
}

Status NamespaceStore::CheckInvariants() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> problems;
  CheckInvariantsLocked(&problems);
  if (problems.empty()) return Status::Ok();
  std::string text;
  for (const std::string& p : problems) text += (text.empty() ? "" : "; ") + p;
  return Err(ErrorCode::kCorrupt, text);
}

std::string NamespaceStore::DumpCanonical() const {
  std::shared_lock lock(mu_);
  std::vector<uint64_t> ids;
  ids.reserve(inodes_.size());
  for (const auto& [ino, inode] : inodes_) ids.push_back(ino);
  std::sort(ids.begin(), ids.end());
  // Names and values are bytes: print them escaped so the dump stays one line
  // per item.
  auto quote = [](std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
        out += fmt::format("\\x{:02x}", c);
      } else {
        out += static_cast<char>(c);
      }
    }
    return out + "\"";
  };
  std::string out = fmt::format("next_ino {}\n", next_ino_);
  for (uint64_t ino : ids) {
    const Inode& inode = inodes_.at(ino);
    const InodeAttrs& a = inode.attrs;
    out += fmt::format(
        "inode {} type {} mode {:o} uid {} gid {} nlink {} size {} rdev {} atime {} mtime {} "
        "ctime {} shard_size {} goal {} stored {} parent {}\n",
        ino, static_cast<int>(a.type), a.mode, a.uid, a.gid, a.nlink, a.size, a.rdev, a.atime_ns,
        a.mtime_ns, a.ctime_ns, a.shard_size, a.replication_goal, a.stored_bytes, inode.parent);
    if (a.type == FileType::kSymlink)
      out += fmt::format("  target {}\n", quote(inode.symlink_target));
    for (const auto& [k, v] : inode.xattrs)
      out += fmt::format("  xattr {} {}\n", quote(k), quote(v));
    for (const auto& [name, child] : inode.children) {
      out += fmt::format("  entry {} {}\n", quote(name), child);
    }
    for (const auto& [index, e] : inode.shards) {
      out += fmt::format("  shard {} gen {} len {} sum {:x} on {}{}\n", index, e.generation,
                         e.length, e.checksum, fmt::join(e.replicas, ","),
                         e.data_bytes ? fmt::format(" data {}", *e.data_bytes) : "");
    }
  }
  for (uint64_t ino : orphans_) out += fmt::format("orphan {}\n", ino);
  for (const auto& [key, g] : garbage_) {
    out += fmt::format("garbage {}/{}/{} len {} released {} on {}\n", key.inode, key.index,
                       key.generation, g.length, g.released_ns, fmt::join(g.replicas, ","));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Snapshot codec
//
// Stream of MessagePack objects (each decoded on its own, so loading a million
// inodes never builds one giant object tree):
//   header  [version=1, next_ino, inode_count, garbage_count, [node id, ...]]
//   inode   [ino, type, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime,
//            shard_size, goal, parent, symlink_target, [xattr k, v, ...],
//            [entry name, ino, ...], [[index, gen, length, checksum, [node#...]], ...]]
//   garbage [ino, index, gen, length, released_ns, [node#, ...]]
// Replica node ids are written as indexes into the header's table: a file's
// three replicas cost three bytes instead of three ids.

namespace {

constexpr uint32_t kSnapshotVersion = 1;

class NodeTable {
 public:
  uint32_t Intern(const std::string& id) {
    auto [it, inserted] = index_.try_emplace(id, static_cast<uint32_t>(ids_.size()));
    if (inserted) ids_.push_back(id);
    return it->second;
  }
  const std::vector<std::string>& ids() const { return ids_; }

 private:
  std::unordered_map<std::string, uint32_t> index_;
  std::vector<std::string> ids_;
};

void PackNodeRefs(codec::Packer& pk, const std::vector<std::string>& replicas, NodeTable& table) {
  pk.pack_array(static_cast<uint32_t>(replicas.size()));
  for (const std::string& r : replicas) pk.pack_uint32(table.Intern(r));
}

bool UnpackNodeRefs(const msgpack::object* obj, const std::vector<std::string>& table,
                    std::vector<std::string>* out) {
  if (obj == nullptr) return false;
  codec::ArrayReader r(*obj);
  out->resize(r.remaining());
  for (std::string& id : *out) {
    uint32_t idx = 0;
    if (!r.U32(&idx) || idx >= table.size()) return false;
    id = table[idx];
  }
  return r.ok();
}

bool UnpackInode(const msgpack::object& obj, const std::vector<std::string>& table, Inode* inode) {
  codec::ArrayReader r(obj);
  InodeAttrs& a = inode->attrs;
  uint8_t type = 0;
  r.U64(&a.ino);
  r.U8(&type);
  r.U32(&a.mode);
  r.U32(&a.uid);
  r.U32(&a.gid);
  r.U32(&a.nlink);
  r.U64(&a.size);
  r.U64(&a.rdev);
  r.I64(&a.atime_ns);
  r.I64(&a.mtime_ns);
  r.I64(&a.ctime_ns);
  r.U32(&a.shard_size);
  r.U32(&a.replication_goal);
  r.U64(&inode->parent);
  r.Str(&inode->symlink_target);
  const msgpack::object* xattrs = r.Next();
  const msgpack::object* children = r.Next();
  const msgpack::object* shards = r.Next();
  if (!r.ok() || !IsValidFileType(type)) return false;
  a.type = static_cast<FileType>(type);

  codec::ArrayReader xr(*xattrs);
  while (xr.ok() && xr.remaining() >= 2) {
    std::string k, v;
    xr.Str(&k);
    xr.Str(&v);
    inode->xattrs.emplace_hint(inode->xattrs.end(), std::move(k), std::move(v));
  }
  if (!xr.ok() || xr.remaining() != 0) return false;

  codec::ArrayReader cr(*children);
  while (cr.ok() && cr.remaining() >= 2) {
    std::string name;
    uint64_t child = 0;
    cr.Str(&name);
    cr.U64(&child);
    // Entries were written in order, so each insert is at the end: linear.
    inode->children.emplace_hint(inode->children.end(), std::move(name), child);
  }
  if (!cr.ok() || cr.remaining() != 0) return false;

  codec::ArrayReader sr(*shards);
  while (sr.ok() && sr.remaining() > 0) {
    const msgpack::object* so = sr.Next();
    codec::ArrayReader er(*so);
    ShardEntry e;
    er.U32(&e.index);
    er.U64(&e.generation);
    er.U64(&e.length);
    er.U64(&e.checksum);
    if (!UnpackNodeRefs(er.Next(), table, &e.replicas) || !er.ok()) return false;
    if (er.remaining() > 0) {  // written since shards record their holes
      uint64_t data_bytes = 0;
      if (!er.U64(&data_bytes) || er.remaining() != 0) return false;
      e.data_bytes = data_bytes;
    }
    inode->shards.emplace_hint(inode->shards.end(), e.index, std::move(e));
  }
  CountStoredBytes(*inode);
  return sr.ok();
}

}  // namespace

std::string NamespaceStore::EncodeSnapshot() const {
  std::shared_lock lock(mu_);
  std::vector<uint64_t> ids;
  ids.reserve(inodes_.size());
  for (const auto& [ino, inode] : inodes_) ids.push_back(ino);
  std::sort(ids.begin(), ids.end());

  // The body is written first so the node table is complete when the header
  // (which must come first in the stream) is written.
  NodeTable table;
  msgpack::sbuffer body(inodes_.size() * 64 + 1024);
  codec::Packer pk(body);
  for (uint64_t ino : ids) {
    const Inode& inode = inodes_.at(ino);
    const InodeAttrs& a = inode.attrs;
    pk.pack_array(18);
    pk.pack_uint64(a.ino);
    pk.pack_uint8(static_cast<uint8_t>(a.type));
    pk.pack_uint32(a.mode);
    pk.pack_uint32(a.uid);
    pk.pack_uint32(a.gid);
    pk.pack_uint32(a.nlink);
    pk.pack_uint64(a.size);
    pk.pack_uint64(a.rdev);
    pk.pack_int64(a.atime_ns);
    pk.pack_int64(a.mtime_ns);
    pk.pack_int64(a.ctime_ns);
    pk.pack_uint32(a.shard_size);
    pk.pack_uint32(a.replication_goal);
    pk.pack_uint64(inode.parent);
    codec::PackStr(pk, inode.symlink_target);
    pk.pack_array(static_cast<uint32_t>(inode.xattrs.size() * 2));
    for (const auto& [k, v] : inode.xattrs) {
      codec::PackStr(pk, k);
      codec::PackStr(pk, v);
    }
    pk.pack_array(static_cast<uint32_t>(inode.children.size() * 2));
    for (const auto& [name, child] : inode.children) {
      codec::PackStr(pk, name);
      pk.pack_uint64(child);
    }
    pk.pack_array(static_cast<uint32_t>(inode.shards.size()));
    for (const auto& [index, e] : inode.shards) {
      pk.pack_array(e.data_bytes ? 6 : 5);
      pk.pack_uint32(e.index);
      pk.pack_uint64(e.generation);
      pk.pack_uint64(e.length);
      pk.pack_uint64(e.checksum);
      PackNodeRefs(pk, e.replicas, table);
      if (e.data_bytes) pk.pack_uint64(*e.data_bytes);
    }
  }
  for (const auto& [key, g] : garbage_) {
    pk.pack_array(6);
    pk.pack_uint64(key.inode);
    pk.pack_uint32(key.index);
    pk.pack_uint64(key.generation);
    pk.pack_uint64(g.length);
    pk.pack_int64(g.released_ns);
    PackNodeRefs(pk, g.replicas, table);
  }

  msgpack::sbuffer head(256);
  codec::Packer hp(head);
  hp.pack_array(5);
  hp.pack_uint32(kSnapshotVersion);
  hp.pack_uint64(next_ino_);
  hp.pack_uint64(ids.size());
  hp.pack_uint64(garbage_.size());
  hp.pack_array(static_cast<uint32_t>(table.ids().size()));
  for (const std::string& id : table.ids()) codec::PackStr(hp, id);

  std::string out;
  out.reserve(head.size() + body.size());
  out.append(head.data(), head.size());
  out.append(body.data(), body.size());
  return out;
}

Status NamespaceStore::LoadSnapshot(std::string_view bytes) {
  std::unordered_map<uint64_t, Inode> inodes;
  std::map<ShardKey, GarbageEntry> garbage;
  std::set<uint64_t> orphans;
  uint64_t next_ino = 0;
  auto corrupt = [](std::string what) { return Err(ErrorCode::kCorrupt, "snapshot: " + what); };
  try {
    size_t offset = 0;
    const size_t n = bytes.size();
    msgpack::unpack_limit limit(n, n, n, n, n, 16);
    // One zone reused for every object, and strings referenced in `bytes`
    // instead of copied: a million inodes would otherwise cost a million
    // zone allocations.
    msgpack::zone zone;
    auto reference = [](msgpack::type::object_type, size_t, void*) { return true; };
    auto next = [&]() {
      zone.clear();
      // Claims that add up to more than the bytes left, and deep nesting,
      // are refused before msgpack-c allocates for them.
      if (Status claims = CheckClaimedSizes(bytes, offset, 16); !claims.ok()) {
        throw std::runtime_error(claims.message());
      }
      return msgpack::unpack(zone, bytes.data(), bytes.size(), offset, reference, nullptr, limit);
    };
    const msgpack::object head = next();
    codec::ArrayReader hr(head);
    uint32_t version = 0;
    uint64_t inode_count = 0, garbage_count = 0;
    hr.U32(&version);
    hr.U64(&next_ino);
    hr.U64(&inode_count);
    hr.U64(&garbage_count);
    const msgpack::object* table_obj = hr.Next();
    if (!hr.ok()) return corrupt("bad header");
    if (version != kSnapshotVersion) return corrupt(fmt::format("unknown version {}", version));
    // Counts are checked against the bytes left before reserving memory.
    if (inode_count > n || garbage_count > n) return corrupt("counts exceed size");
    // Copied out: the zone holding the header is cleared by the next object.
    std::vector<std::string> table;
    codec::ArrayReader tr(*table_obj);
    table.resize(tr.remaining());
    // Ids are bounded as on the wire: each replica reference is one byte in
    // the file but a copy of its id in memory, so one long id referenced by
    // every shard would cost (file size)^2.
    for (std::string& id : table) {
      if (tr.Str(&id) && id.size() > kMaxNodeIdLength) tr.Fail();
    }
    if (!tr.ok()) return corrupt("bad node table");

    inodes.reserve(inode_count);
    for (uint64_t i = 0; i < inode_count; ++i) {
      const msgpack::object obj = next();
      Inode inode;
      if (!UnpackInode(obj, table, &inode)) return corrupt(fmt::format("bad inode #{}", i));
      const uint64_t ino = inode.attrs.ino;
      if (inode.attrs.nlink == 0 && !IsDir(inode)) orphans.insert(ino);
      if (!inodes.emplace(ino, std::move(inode)).second) {
        return corrupt(fmt::format("inode {} twice", ino));
      }
    }
    for (uint64_t i = 0; i < garbage_count; ++i) {
      const msgpack::object obj = next();
      codec::ArrayReader gr(obj);
      GarbageEntry g;
      gr.U64(&g.key.inode);
      gr.U32(&g.key.index);
      gr.U64(&g.key.generation);
      gr.U64(&g.length);
      gr.I64(&g.released_ns);
      if (!UnpackNodeRefs(gr.Next(), table, &g.replicas) || !gr.ok()) {
        return corrupt(fmt::format("bad garbage entry #{}", i));
      }
      garbage.emplace(g.key, std::move(g));
    }
    if (offset != bytes.size()) return corrupt("trailing bytes");
  } catch (const std::exception& e) {
    return corrupt(std::string("undecodable: ") + e.what());
  }

  std::unique_lock lock(mu_);
  std::swap(inodes_, inodes);
  std::swap(garbage_, garbage);
  std::swap(orphans_, orphans);
  std::swap(next_ino_, next_ino);
  std::vector<std::string> problems;
  CheckInvariantsLocked(&problems);
  if (!problems.empty()) {
    // Put the old state back: a snapshot that decodes but does not hold
    // together is as corrupt as one that does not decode.
    std::swap(inodes_, inodes);
    std::swap(garbage_, garbage);
    std::swap(orphans_, orphans);
    std::swap(next_ino_, next_ino);
    return corrupt("inconsistent: " + problems.front());
  }
  return Status::Ok();
}

}  // namespace shardfs
