// Inodes and shard tables: the data model of the registry's namespace.
//
// An Inode is what the registry knows about one file system object: POSIX
// attributes, xattrs, for a directory its entries, for a regular file its
// shard table. A regular file's bytes live on node servers as immutable shard
// objects keyed (inode, index, generation); the shard table says, per index,
// which generation is current, how many bytes of it belong to the file and
// which nodes hold a replica. Everything here is plain data: the rules that
// keep it consistent live in NamespaceStore (src/namespace_store.h).
//
// Units: times are nanoseconds since the Unix epoch (int64, so dates before
// 1970 work); sizes are bytes. `mode` holds only the permission bits (07777);
// the file type is `type`, and StatMode() combines the two the way st_mode does.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/shard_key.h"

namespace shardfs {

// The root directory's inode id. Ids are never reused: the store hands out
// ids from a counter that only grows, so a stale handle can never name a new
// file.
inline constexpr uint64_t kRootIno = 1;

// Shard size of a file created without one (the cluster default in DESIGN.md).
inline constexpr uint32_t kDefaultShardSize = 4u << 20;
// Bounds for a per-file shard size; it must also be a multiple of 4 KiB so
// that shard boundaries fall on page boundaries.
inline constexpr uint32_t kMinShardSize = 4096;
inline constexpr uint32_t kMaxShardSize = 1u << 30;

// POSIX limits enforced by the store (Linux values).
inline constexpr size_t kMaxNameLength = 255;        // NAME_MAX
inline constexpr size_t kMaxSymlinkLength = 4095;    // PATH_MAX - 1
inline constexpr size_t kMaxXattrNameLength = 255;   // XATTR_NAME_MAX
inline constexpr size_t kMaxXattrValueSize = 65536;  // XATTR_SIZE_MAX
inline constexpr uint32_t kMaxLinks = 65000;         // like ext4's EXT4_LINK_MAX

// Values are stored in snapshots and the log: append, never renumber.
enum class FileType : uint8_t {
  kRegular = 1,
  kDirectory = 2,
  kSymlink = 3,
  kFifo = 4,
  kSocket = 5,
  kCharDevice = 6,
  kBlockDevice = 7,
};

inline bool IsValidFileType(uint8_t t) {
  return t >= 1 && t <= 7;
}

// The S_IFMT bits for a type, as in struct stat's st_mode.
inline uint32_t FileTypeToModeBits(FileType type) {
  switch (type) {
    case FileType::kRegular:
      return S_IFREG;
    case FileType::kDirectory:
      return S_IFDIR;
    case FileType::kSymlink:
      return S_IFLNK;
    case FileType::kFifo:
      return S_IFIFO;
    case FileType::kSocket:
      return S_IFSOCK;
    case FileType::kCharDevice:
      return S_IFCHR;
    case FileType::kBlockDevice:
      return S_IFBLK;
  }
  return 0;
}

// One entry of a file's shard table: the current generation of shard `index`.
//
// `checksum` is the xxh64 of the shard object as its writer produced it.
// `length` is how many bytes of that object belong to the file. The two
// normally describe the same bytes; after a truncate that cuts into this shard,
// `length` is shortened while the object on the nodes (and `checksum`) stay as
// written: readers use only the first `length` bytes (node-side block
// checksums verify what they read) and treat anything past `length` and up to
// the file size as zeros, and the mount rewrites the shard as a new generation
// when it next writes it.
struct ShardEntry {
  uint32_t index = 0;
  uint64_t generation = 0;
  uint64_t length = 0;
  uint64_t checksum = 0;
  std::vector<std::string> replicas;  // node ids, as committed by the writer
  // How many bytes of the object the nodes store: its length less the
  // pages of zeros they keep as holes. Unset for entries from writers or
  // nodes that did not say (all of it, then). What st_blocks counts.
  std::optional<uint64_t> data_bytes;

  // What the shard takes on each replica's disk, as far as the file's
  // `length` reaches.
  uint64_t StoredBytes() const { return std::min(length, data_bytes.value_or(length)); }

  bool operator==(const ShardEntry&) const = default;
};

// The attributes a getattr returns: everything but the variable-size parts.
struct InodeAttrs {
  uint64_t ino = 0;
  FileType type = FileType::kRegular;
  uint32_t mode = 0;  // permission bits only (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;  // bytes; for a symlink the target's length
  uint64_t rdev = 0;  // device number for char/block devices
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint32_t shard_size = 0;        // regular files: fixed at create
  uint32_t replication_goal = 0;  // 0 = the cluster default
  // Regular files: the bytes the shard table holds, which is less than
  // `size` where the file is sparse (what st_blocks reports). Derived from
  // the table, never logged or kept in snapshots.
  uint64_t stored_bytes = 0;

  bool operator==(const InodeAttrs&) const = default;
};

// st_mode for these attributes: type bits | permission bits.
inline uint32_t StatMode(const InodeAttrs& attrs) {
  return FileTypeToModeBits(attrs.type) | (attrs.mode & 07777);
}

struct Inode {
  InodeAttrs attrs;
  // Directories only: the directory holding this one (root: itself). Kept so
  // rename can refuse to move a directory into its own subtree without a scan.
  uint64_t parent = 0;
  std::string symlink_target;                 // symlinks only
  std::map<std::string, std::string> xattrs;  // name -> value
  std::map<std::string, uint64_t> children;   // directories: name -> ino, ordered for readdir
  std::map<uint32_t, ShardEntry> shards;      // regular files: index -> entry

  bool operator==(const Inode&) const = default;
};

// One directory entry as readdir returns it (attrs filled for readdirplus).
struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  FileType type = FileType::kRegular;
  std::optional<InodeAttrs> attrs;
  // With attrs: whether the inode has any extended attribute, so a mount
  // walking the listing (ls -l asks for security.selinux and ACLs of each
  // name) knows the common "none" without asking for each.
  std::optional<bool> has_xattrs;
};

// A shard generation no longer referenced by any file: its replicas should be
// deleted from the nodes once `released_ns` is older than the grace period
// (readers that fetched the old shard table may still be reading it).
struct GarbageEntry {
  ShardKey key;  // (inode, index, generation)
  uint64_t length = 0;
  std::vector<std::string> replicas;  // nodes that hold a copy to delete
  int64_t released_ns = 0;            // time of the op that released it

  bool operator==(const GarbageEntry&) const = default;
};

}  // namespace shardfs
