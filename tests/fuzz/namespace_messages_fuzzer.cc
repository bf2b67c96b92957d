// Fuzz target: every namespace message's Decode() on any header.
//
// The input is a header frame. Whatever DecodeHeader() accepts, its fields
// go to every request and reply Decode() of protocol/namespace_messages.h,
// whatever the header's type says: a peer chooses the type too. Each Decode
// must return a message or a kBadMessage error, never crash; what it accepts
// must obey the limits the registry and the mount rely on (name, target and
// value lengths, page and batch sizes, replica counts, flags); and a decoded
// message, encoded again and decoded again, must come back equal, so
// Encode() and Decode() agree on the wire format.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/envelope.h"
#include "protocol/namespace_messages.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

bool SameEntries(const std::vector<DirEntry>& a, const std::vector<DirEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].ino != b[i].ino || a[i].type != b[i].type ||
        a[i].attrs != b[i].attrs || a[i].has_xattrs != b[i].has_xattrs) {
      return false;
    }
  }
  return true;
}
bool SameNodes(const std::vector<NodeAddress>& a, const std::vector<NodeAddress>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id || a[i].endpoint != b[i].endpoint) return false;
  }
  return true;
}

bool Same(const AttrReply& a, const AttrReply& b) {
  return a.attrs == b.attrs;
}
bool Same(const InoRequest& a, const InoRequest& b) {
  return a.ino == b.ino;
}
bool Same(const NameRequest& a, const NameRequest& b) {
  return a.parent == b.parent && a.name == b.name;
}
bool Same(const SetAttrRequest& a, const SetAttrRequest& b) {
  return a.ino == b.ino && a.mask == b.mask && a.mode == b.mode && a.uid == b.uid &&
         a.gid == b.gid && a.size == b.size && a.atime_ns == b.atime_ns &&
         a.mtime_ns == b.mtime_ns && a.atime_now == b.atime_now && a.mtime_now == b.mtime_now;
}
bool Same(const MknodRequest& a, const MknodRequest& b) {
  return a.parent == b.parent && a.name == b.name && a.type == b.type && a.mode == b.mode &&
         a.caller.uid == b.caller.uid && a.caller.gid == b.caller.gid && a.rdev == b.rdev &&
         a.shard_size == b.shard_size && a.replication_goal == b.replication_goal;
}
bool Same(const SymlinkRequest& a, const SymlinkRequest& b) {
  return a.parent == b.parent && a.name == b.name && a.target == b.target &&
         a.caller.uid == b.caller.uid && a.caller.gid == b.caller.gid;
}
bool Same(const LinkRequest& a, const LinkRequest& b) {
  return a.ino == b.ino && a.new_parent == b.new_parent && a.new_name == b.new_name;
}
bool Same(const RenameRequest& a, const RenameRequest& b) {
  return a.parent == b.parent && a.name == b.name && a.new_parent == b.new_parent &&
         a.new_name == b.new_name && a.flags == b.flags;
}
bool Same(const ReadlinkReply& a, const ReadlinkReply& b) {
  return a.target == b.target;
}
bool Same(const ReadDirRequest& a, const ReadDirRequest& b) {
  return a.ino == b.ino && a.after == b.after && a.max == b.max && a.plus == b.plus;
}
bool Same(const ReadDirReply& a, const ReadDirReply& b) {
  return a.more == b.more && SameEntries(a.entries, b.entries);
}
bool Same(const StatFsReply& a, const StatFsReply& b) {
  return a.total_bytes == b.total_bytes && a.free_bytes == b.free_bytes && a.inodes == b.inodes &&
         a.live_nodes == b.live_nodes;
}
bool Same(const XattrRequest& a, const XattrRequest& b) {
  return a.ino == b.ino && a.name == b.name && a.value == b.value && a.flags == b.flags;
}
bool Same(const XattrValueReply& a, const XattrValueReply& b) {
  return a.value == b.value;
}
bool Same(const XattrListReply& a, const XattrListReply& b) {
  return a.names == b.names;
}
bool Same(const AllocateShardsRequest& a, const AllocateShardsRequest& b) {
  return a.ino == b.ino && a.indexes == b.indexes;
}
bool Same(const AllocateShardsReply& a, const AllocateShardsReply& b) {
  if (a.min_replicas != b.min_replicas || a.placements.size() != b.placements.size() ||
      !SameNodes(a.nodes, b.nodes)) {
    return false;
  }
  for (size_t i = 0; i < a.placements.size(); ++i) {
    const ShardPlacement& x = a.placements[i];
    const ShardPlacement& y = b.placements[i];
    if (x.index != y.index || x.generation != y.generation || x.replicas != y.replicas) {
      return false;
    }
  }
  return true;
}
bool Same(const CommitShardsRequest& a, const CommitShardsRequest& b) {
  return a.ino == b.ino && a.shards == b.shards && a.size == b.size && a.set_mtime == b.set_mtime;
}
bool Same(const GetShardTableRequest& a, const GetShardTableRequest& b) {
  return a.ino == b.ino && a.first == b.first && a.count == b.count;
}
bool Same(const ShardTableReply& a, const ShardTableReply& b) {
  return a.attrs == b.attrs && a.shards == b.shards && SameNodes(a.nodes, b.nodes);
}
bool Same(const SetReplicasRequest& a, const SetReplicasRequest& b) {
  return a.ino == b.ino && a.goal == b.goal && a.recursive == b.recursive;
}

// What the registry and the mount rely on once a message decoded.
void CheckShard(const ShardEntry& e) {
  FUZZ_CHECK(e.length <= kMaxShardSize);
  FUZZ_CHECK(e.replicas.size() <= kMaxReplicas);
}
void CheckNodes(const std::vector<NodeAddress>& nodes) {
  for (const auto& n : nodes) FUZZ_CHECK(n.id.size() <= 64 && n.endpoint.size() <= 512);
}
void CheckLimits(const AttrReply&) {}
void CheckLimits(const InoRequest&) {}
void CheckLimits(const NameRequest& m) {
  FUZZ_CHECK(m.name.size() <= kMaxWireName);
}
void CheckLimits(const SetAttrRequest&) {}
void CheckLimits(const MknodRequest& m) {
  FUZZ_CHECK(m.name.size() <= kMaxWireName);
  FUZZ_CHECK(m.replication_goal <= kMaxReplicas);
}
void CheckLimits(const SymlinkRequest& m) {
  FUZZ_CHECK(m.name.size() <= kMaxWireName);
  FUZZ_CHECK(m.target.size() <= kMaxWireSymlink);
}
void CheckLimits(const LinkRequest& m) {
  FUZZ_CHECK(m.new_name.size() <= kMaxWireName);
}
void CheckLimits(const RenameRequest& m) {
  FUZZ_CHECK(m.name.size() <= kMaxWireName && m.new_name.size() <= kMaxWireName);
}
void CheckLimits(const ReadlinkReply& m) {
  FUZZ_CHECK(m.target.size() <= kMaxWireSymlink);
}
void CheckLimits(const ReadDirRequest& m) {
  FUZZ_CHECK(m.max >= 1 && m.max <= kMaxReadDirPage);
  FUZZ_CHECK(m.after.size() <= kMaxWireName);
}
void CheckLimits(const ReadDirReply& m) {
  FUZZ_CHECK(m.entries.size() <= kMaxReadDirPage);
  for (const auto& e : m.entries) FUZZ_CHECK(e.name.size() <= kMaxWireName);
}
void CheckLimits(const StatFsReply&) {}
void CheckLimits(const XattrRequest& m) {
  FUZZ_CHECK(m.name.size() <= kMaxWireName);
  FUZZ_CHECK(m.value.size() <= kMaxWireXattrValue);
  FUZZ_CHECK(m.flags <= 3);
}
void CheckLimits(const XattrValueReply& m) {
  FUZZ_CHECK(m.value.size() <= kMaxWireXattrValue);
}
void CheckLimits(const XattrListReply& m) {
  for (const auto& n : m.names) FUZZ_CHECK(n.size() <= kMaxWireName);
}
void CheckLimits(const AllocateShardsRequest& m) {
  FUZZ_CHECK(m.indexes.size() <= kMaxShardsPerMessage);
}
void CheckLimits(const AllocateShardsReply& m) {
  FUZZ_CHECK(m.placements.size() <= kMaxShardsPerMessage);
  for (const auto& p : m.placements) FUZZ_CHECK(p.replicas.size() <= kMaxReplicas);
  CheckNodes(m.nodes);
}
void CheckLimits(const CommitShardsRequest& m) {
  FUZZ_CHECK(m.shards.size() <= kMaxShardsPerMessage);
  for (const auto& e : m.shards) CheckShard(e);
}
void CheckLimits(const GetShardTableRequest& m) {
  FUZZ_CHECK(m.count <= kMaxShardsPerMessage);
}
void CheckLimits(const ShardTableReply& m) {
  FUZZ_CHECK(m.shards.size() <= kMaxShardsPerMessage);
  for (const auto& e : m.shards) CheckShard(e);
  CheckNodes(m.nodes);
}
void CheckLimits(const SetReplicasRequest& m) {
  FUZZ_CHECK(m.goal <= kMaxReplicas);
}

// Decodes `fields` as a T; when that works, checks its limits and that it
// survives Encode() -> header -> DecodeHeader() -> Decode() unchanged.
template <typename T>
void DecodeAs(const FieldReader& fields, uint16_t type, uint64_t request_id) {
  Result<T> m = T::Decode(fields);
  if (!m.ok()) {
    FUZZ_CHECK(m.status().code() == ErrorCode::kBadMessage);
    return;
  }
  CheckLimits(*m);
  const std::string wire = EncodeHeader(type, request_id, m->Encode());
  auto env = DecodeHeader(wire);
  FUZZ_CHECK(env.ok());
  Result<T> again = T::Decode(env->fields);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(Same(*m, *again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto env = DecodeHeader(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!env.ok()) return 0;
  const FieldReader& f = env->fields;
  const uint16_t t = env->type;
  const uint64_t id = env->request_id;
  DecodeAs<AttrReply>(f, t, id);
  DecodeAs<InoRequest>(f, t, id);
  DecodeAs<NameRequest>(f, t, id);
  DecodeAs<SetAttrRequest>(f, t, id);
  DecodeAs<MknodRequest>(f, t, id);
  DecodeAs<SymlinkRequest>(f, t, id);
  DecodeAs<LinkRequest>(f, t, id);
  DecodeAs<RenameRequest>(f, t, id);
  DecodeAs<ReadlinkReply>(f, t, id);
  DecodeAs<ReadDirRequest>(f, t, id);
  DecodeAs<ReadDirReply>(f, t, id);
  DecodeAs<StatFsReply>(f, t, id);
  DecodeAs<XattrRequest>(f, t, id);
  DecodeAs<XattrValueReply>(f, t, id);
  DecodeAs<XattrListReply>(f, t, id);
  DecodeAs<AllocateShardsRequest>(f, t, id);
  DecodeAs<AllocateShardsReply>(f, t, id);
  DecodeAs<CommitShardsRequest>(f, t, id);
  DecodeAs<GetShardTableRequest>(f, t, id);
  DecodeAs<ShardTableReply>(f, t, id);
  DecodeAs<SetReplicasRequest>(f, t, id);
  return 0;
}
