// Namespace mutations as data: the records of the registry's metadata log.
//
// Every change to the namespace is one NamespaceOp, a value that carries
// everything needed to apply it again: the inode id a create will use, the
// time stamps, the owner, whether an unlinked file stays as an open orphan.
// NamespaceStore::Apply is a pure function of (store, op), so replaying the
// log after a restart rebuilds exactly the state that was acknowledged.
// Fields that depend on live state (a new inode id left 0, `keep_orphan`) are
// filled in by NamespaceStore::Prepare under the same lock as the apply; once
// an op is logged it is never re-decided.
//
// Wire/disk encoding (EncodeOp/DecodeOp): one MessagePack array
//   [kind, field, field, ...]
// with fields in the order of the struct declarations below. Kinds and field
// orders are part of the on-disk format: add new kinds at the end and new
// fields at the end of a kind; decoders ignore trailing fields they do not
// know, so an old binary can read a newer log as long as the new fields do not
// change meaning. Malformed input is a kBadMessage/kCorrupt error, never an
// exception (msgpack-c throws; this module catches).
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "src/inode.h"
#include "src/status.h"

namespace shardfs {

// renameat2(2) flags; same values as Linux's RENAME_NOREPLACE/RENAME_EXCHANGE.
inline constexpr uint32_t kRenameNoReplace = 1u << 0;
inline constexpr uint32_t kRenameExchange = 1u << 1;

// setxattr(2) flags; same values as Linux's XATTR_CREATE/XATTR_REPLACE.
inline constexpr uint32_t kXattrCreate = 1;
inline constexpr uint32_t kXattrReplace = 2;

// SetattrOp::mask bits. ctime is always set to the op's time.
inline constexpr uint32_t kSetAttrMode = 1u << 0;
inline constexpr uint32_t kSetAttrUid = 1u << 1;
inline constexpr uint32_t kSetAttrGid = 1u << 2;
inline constexpr uint32_t kSetAttrSize = 1u << 3;
inline constexpr uint32_t kSetAttrAtime = 1u << 4;
inline constexpr uint32_t kSetAttrMtime = 1u << 5;
inline constexpr uint32_t kSetAttrAll = (1u << 6) - 1;

// Creates a regular file, fifo, socket or device node (not a directory or a
// symlink: those have their own ops). ino 0 = let Prepare pick the next id.
// shard_size 0 = kDefaultShardSize; replication_goal 0 = the parent's goal.
struct MknodOp {
  uint64_t parent = 0;
  std::string name = {};
  uint64_t ino = 0;
  FileType type = FileType::kRegular;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t rdev = 0;
  uint32_t shard_size = 0;
  uint32_t replication_goal = 0;
  int64_t time_ns = 0;
};

// The new directory inherits the parent's replication goal.
struct MkdirOp {
  uint64_t parent = 0;
  std::string name = {};
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t time_ns = 0;
};

struct SymlinkOp {
  uint64_t parent = 0;
  std::string name = {};
  uint64_t ino = 0;
  std::string target = {};
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t time_ns = 0;
};

// A new name (parent, name) for the existing non-directory `ino`.
struct LinkOp {
  uint64_t ino = 0;
  uint64_t parent = 0;
  std::string name = {};
  int64_t time_ns = 0;
};

// Removes a non-directory entry. If that was the last link and keep_orphan is
// set (the file is open somewhere), the inode stays with nlink 0 until a
// DropOrphanOp; otherwise it is removed now and its shards become garbage.
struct UnlinkOp {
  uint64_t parent = 0;
  std::string name = {};
  bool keep_orphan = false;
  int64_t time_ns = 0;
};

struct RmdirOp {
  uint64_t parent = 0;
  std::string name = {};
  int64_t time_ns = 0;
};

// keep_orphan applies to a non-directory target that loses its last link.
struct RenameOp {
  uint64_t parent = 0;
  std::string name = {};
  uint64_t new_parent = 0;
  std::string new_name = {};
  uint32_t flags = 0;  // kRenameNoReplace | kRenameExchange
  bool keep_orphan = false;
  int64_t time_ns = 0;
};

// Sets the fields selected by `mask`; ctime becomes time_ns. Setting the size
// of a regular file truncates or extends it: shards wholly past the new size
// become garbage, the shard holding the new end gets a shorter length (see
// ShardEntry), and mtime becomes time_ns unless the mask sets it too.
struct SetattrOp {
  uint64_t ino = 0;
  uint32_t mask = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t time_ns = 0;
};

struct SetxattrOp {
  uint64_t ino = 0;
  std::string name = {};
  std::string value = {};
  uint32_t flags = 0;  // kXattrCreate | kXattrReplace
  int64_t time_ns = 0;
};

struct RemovexattrOp {
  uint64_t ino = 0;
  std::string name = {};
  int64_t time_ns = 0;
};

// The moment a write becomes visible: replaces the shard table entries at the
// indexes in `shards` (their previous generations become garbage), sets the
// size (shards past it are dropped as by a truncate) and mtime/ctime.
// A generation lower than the current one at that index is kStale (a slower
// writer lost a race); the same generation recommitted replaces the replica
// list (replicas no longer listed become garbage), which is also how repair
// records a new copy.
struct CommitShardsOp {
  uint64_t ino = 0;
  std::vector<ShardEntry> shards = {};
  uint64_t size = 0;
  int64_t time_ns = 0;
};

// goal 0 = back to the cluster default.
struct SetReplicationGoalOp {
  uint64_t ino = 0;
  uint32_t goal = 0;
  int64_t time_ns = 0;
};

// Reserves `count` inode ids [first, first + count) that no create will pick
// (for callers that need ids before they create, e.g. a batch). first 0 = let
// Prepare pick.
struct AllocateInodesOp {
  uint64_t count = 0;
  uint64_t first = 0;
};

// The registry deleted these garbage shards from the nodes; forget them.
// Keys not in the list are ignored, so a retried forget is harmless.
struct ForgetGarbageOp {
  std::vector<ShardKey> keys = {};
};

// Removes an inode with nlink 0 (an unlinked file whose last open closed, or
// any orphan found after a restart); its shards become garbage.
struct DropOrphanOp {
  uint64_t ino = 0;
  int64_t time_ns = 0;
};

// Repair's change to where a shard lives: replaces the replica list of shard
// `index` of `ino` if its current generation is still `generation` (kStale
// otherwise: a writer replaced it meanwhile and the repair is moot). Nodes no
// longer listed become garbage for that key. Unlike a recommit it leaves size
// and times alone: moving copies is not a change to the file.
struct SetShardReplicasOp {
  uint64_t ino = 0;
  uint32_t index = 0;
  uint64_t generation = 0;
  std::vector<std::string> replicas = {};
  int64_t time_ns = 0;
};

// The index of each alternative is its kind number on disk minus one: append.
using NamespaceOp =
    std::variant<MknodOp, MkdirOp, SymlinkOp, LinkOp, UnlinkOp, RmdirOp, RenameOp, SetattrOp,
                 SetxattrOp, RemovexattrOp, CommitShardsOp, SetReplicationGoalOp, AllocateInodesOp,
                 ForgetGarbageOp, DropOrphanOp, SetShardReplicasOp>;

// "mknod", "rename", ... for logs and errors.
std::string_view OpName(const NamespaceOp& op);

// The op's time stamp field, or nullptr for ops that carry none.
int64_t* OpTime(NamespaceOp* op);

std::string EncodeOp(const NamespaceOp& op);
// kBadMessage on anything that is not a well-formed op.
Result<NamespaceOp> DecodeOp(std::string_view bytes);

// MessagePack helpers shared by the op codec and the store's snapshot codec.
namespace codec {

using Packer = msgpack::packer<msgpack::sbuffer>;

// Reads the elements of a MessagePack array one by one, checking types; the
// first mismatch makes ok() false and every later read fail, so a decoder can
// read all fields and check once at the end.
class ArrayReader {
 public:
  explicit ArrayReader(const msgpack::object& obj);

  bool ok() const { return ok_; }
  // Marks the whole read as failed (a field had a bad value).
  void Fail() { ok_ = false; }
  // Elements not yet read.
  uint32_t remaining() const { return ok_ ? size_ - pos_ : 0; }

  bool U64(uint64_t* out);
  bool U32(uint32_t* out);
  bool U8(uint8_t* out);
  bool I64(int64_t* out);
  bool Bool(bool* out);
  bool Str(std::string* out);
  // The next element as a raw object (for nested arrays/maps), or nullptr.
  const msgpack::object* Next();

 private:
  const msgpack::object* items_ = nullptr;
  uint32_t size_ = 0;
  uint32_t pos_ = 0;
  bool ok_ = false;
};

void PackStr(Packer& pk, std::string_view s);
void PackShardEntry(Packer& pk, const ShardEntry& entry);
bool UnpackShardEntry(const msgpack::object& obj, ShardEntry* entry);
void PackShardKey(Packer& pk, const ShardKey& key);
bool UnpackShardKey(const msgpack::object& obj, ShardKey* key);

}  // namespace codec
}  // namespace shardfs
