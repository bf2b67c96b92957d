// The registry's namespace messages: what a mount asks of `shardfs-registry`.
//
// Requests carry what the caller knows (parent inode, name, mode, the
// caller's uid/gid); the registry decides the rest (new inode ids, shard
// generations, timestamps) so that its log alone can replay every change.
// Replies that create or change an inode return its attributes, so a mount
// never needs a second round trip for a FUSE entry. Names are checked here
// for length only; the store enforces POSIX name rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/fields.h"
#include "src/inode.h"
#include "src/status.h"

namespace shardfs {

inline constexpr size_t kMaxWireName = 1024;  // longer than NAME_MAX so the store says ENAMETOOLONG
inline constexpr size_t kMaxWireSymlink = 8192;
inline constexpr size_t kMaxWireXattrValue = 1u << 17;
inline constexpr size_t kMaxReadDirPage = 10000;
inline constexpr size_t kMaxShardsPerMessage = 65536;
inline constexpr size_t kMaxReplicas = 16;

void EncodeAttrs(FieldWriter& w, const InodeAttrs& a);
Result<InodeAttrs> DecodeAttrs(const FieldReader& r);
FieldWriter AttrsFields(const InodeAttrs& a);

// The directories a namespace mutation changed (added, removed or moved a
// name in), with their attributes after it. The registry adds them to the
// reply of every such mutation under "dirs", so a mount can answer the
// kernel's next GETATTR of the directory (the kernel drops its cached
// attributes after each change) without another round trip.
inline constexpr size_t kMaxChangedDirs = 2;
void EncodeChangedDirs(FieldWriter& w, const std::vector<InodeAttrs>& dirs);
// Absent: none. Present and malformed: an error.
Result<std::vector<InodeAttrs>> DecodeChangedDirs(const FieldReader& r);

// Most replies: the attributes of the inode concerned.
struct AttrReply {
  InodeAttrs attrs;
  FieldWriter Encode() const { return AttrsFields(attrs); }
  static Result<AttrReply> Decode(const FieldReader& r);
};

// Who is asking, for ownership of new inodes.
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct InoRequest {  // GetAttr, Readlink, ListXattr, Open, Release
  uint64_t ino = 0;
  FieldWriter Encode() const;
  static Result<InoRequest> Decode(const FieldReader& r);
};

struct NameRequest {  // Lookup, Unlink, Rmdir
  uint64_t parent = 0;
  std::string name;
  FieldWriter Encode() const;
  static Result<NameRequest> Decode(const FieldReader& r);
};

struct SetAttrRequest {
  uint64_t ino = 0;
  uint32_t mask = 0;  // kSetAttr* bits of src/namespace_op.h
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  bool atime_now = false;  // the registry's clock instead of atime_ns
  bool mtime_now = false;
  FieldWriter Encode() const;
  static Result<SetAttrRequest> Decode(const FieldReader& r);
};

struct MknodRequest {  // regular files, fifos, sockets, devices; and mkdir
  uint64_t parent = 0;
  std::string name;
  FileType type = FileType::kRegular;
  uint32_t mode = 0;
  Caller caller;
  uint64_t rdev = 0;
  uint32_t shard_size = 0;        // 0: the cluster default
  uint32_t replication_goal = 0;  // 0: the cluster default
  // Also open the new file (as kOpen does), so create+open is one round trip,
  // under this client session (protocol/session_messages.h; 0: none).
  bool open = false;
  uint64_t session = 0;
  FieldWriter Encode() const;
  static Result<MknodRequest> Decode(const FieldReader& r);
};

struct SymlinkRequest {
  uint64_t parent = 0;
  std::string name;
  std::string target;
  Caller caller;
  FieldWriter Encode() const;
  static Result<SymlinkRequest> Decode(const FieldReader& r);
};

struct LinkRequest {
  uint64_t ino = 0;
  uint64_t new_parent = 0;
  std::string new_name;
  FieldWriter Encode() const;
  static Result<LinkRequest> Decode(const FieldReader& r);
};

struct RenameRequest {
  uint64_t parent = 0;
  std::string name;
  uint64_t new_parent = 0;
  std::string new_name;
  uint32_t flags = 0;  // kRenameNoReplace | kRenameExchange
  FieldWriter Encode() const;
  static Result<RenameRequest> Decode(const FieldReader& r);
};

struct ReadlinkReply {
  std::string target;
  FieldWriter Encode() const;
  static Result<ReadlinkReply> Decode(const FieldReader& r);
};

struct ReadDirRequest {
  uint64_t ino = 0;
  std::string after;  // resume after this name; empty: from the start
  uint64_t max = 1000;
  bool plus = false;  // include attributes (readdirplus)
  FieldWriter Encode() const;
  static Result<ReadDirRequest> Decode(const FieldReader& r);
};

struct ReadDirReply {
  std::vector<DirEntry> entries;
  bool more = false;
  FieldWriter Encode() const;
  static Result<ReadDirReply> Decode(const FieldReader& r);
};

struct StatFsReply {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t inodes = 0;
  uint64_t live_nodes = 0;
  FieldWriter Encode() const;
  static Result<StatFsReply> Decode(const FieldReader& r);
};

struct XattrRequest {  // SetXattr (value, flags), GetXattr and RemoveXattr (name only)
  uint64_t ino = 0;
  std::string name;
  std::string value;
  uint32_t flags = 0;  // kXattrCreate | kXattrReplace
  FieldWriter Encode() const;
  static Result<XattrRequest> Decode(const FieldReader& r);
};

struct XattrValueReply {
  std::string value;
  FieldWriter Encode() const;
  static Result<XattrValueReply> Decode(const FieldReader& r);
};

struct XattrListReply {
  std::vector<std::string> names;
  FieldWriter Encode() const;
  static Result<XattrListReply> Decode(const FieldReader& r);
};

// A node a reply refers to by id, with where to reach it.
struct NodeAddress {
  std::string id;
  std::string endpoint;
};

// Asks for new generations of some shards of a file, and where to put them.
struct AllocateShardsRequest {
  uint64_t ino = 0;
  std::vector<uint32_t> indexes;
  FieldWriter Encode() const;
  static Result<AllocateShardsRequest> Decode(const FieldReader& r);
};

struct ShardPlacement {
  uint32_t index = 0;
  uint64_t generation = 0;
  std::vector<std::string> replicas;  // node ids, in preference order
};

struct AllocateShardsReply {
  std::vector<ShardPlacement> placements;
  std::vector<NodeAddress> nodes;  // every node named in placements
  uint32_t min_replicas = 2;       // writes with fewer successful copies fail
  FieldWriter Encode() const;
  static Result<AllocateShardsReply> Decode(const FieldReader& r);
};

// The reply to a create-and-open (MknodRequest::open) of a regular file: its
// attributes, and a placement for its first shard made at once ("first"), so
// a small file's first store needs no AllocateShards round trip. The
// placement is absent when no nodes could take it; the store then asks.
struct CreateReply {
  InodeAttrs attrs;
  std::optional<AllocateShardsReply> first_shard;
  static Result<CreateReply> Decode(const FieldReader& r);
};
void EncodeFirstShard(FieldWriter& w, const AllocateShardsReply& placed);

// Makes new shard generations current, with the file's new size, in one step.
struct CommitShardsRequest {
  uint64_t ino = 0;
  std::vector<ShardEntry> shards;
  uint64_t size = 0;
  bool set_mtime = true;
  FieldWriter Encode() const;
  static Result<CommitShardsRequest> Decode(const FieldReader& r);
};

struct GetShardTableRequest {
  uint64_t ino = 0;
  uint32_t first = 0;
  uint32_t count = 1024;
  // Also open the file (as kOpen does), so open+table is one round trip,
  // under this client session (protocol/session_messages.h; 0: none).
  bool open = false;
  uint64_t session = 0;
  FieldWriter Encode() const;
  static Result<GetShardTableRequest> Decode(const FieldReader& r);
};

struct ShardTableReply {
  InodeAttrs attrs;
  std::vector<ShardEntry> shards;  // the existing entries in [first, first + count)
  std::vector<NodeAddress> nodes;  // every node named in shards
  FieldWriter Encode() const;
  static Result<ShardTableReply> Decode(const FieldReader& r);
};

struct SetReplicasRequest {
  uint64_t ino = 0;
  uint32_t goal = 0;
  bool recursive = false;
  FieldWriter Encode() const;
  static Result<SetReplicasRequest> Decode(const FieldReader& r);
};

FieldWriter EncodeShardEntry(const ShardEntry& e);
Result<ShardEntry> DecodeShardEntry(const FieldReader& r);

}  // namespace shardfs
