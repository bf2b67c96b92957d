#include "protocol/namespace_messages.h"

namespace shardfs {
namespace {

Result<uint32_t> U32(const FieldReader& r, std::string_view key) {
  SHARDFS_ASSIGN_OR_RETURN(uint64_t v, r.U64(key, UINT32_MAX));
  return static_cast<uint32_t>(v);
}

Result<FileType> Type(const FieldReader& r, std::string_view key) {
  SHARDFS_ASSIGN_OR_RETURN(uint64_t v, r.U64(key, 255));
  if (!IsValidFileType(static_cast<uint8_t>(v))) {
    return Status::Error(ErrorCode::kBadMessage, "unknown file type");
  }
  return static_cast<FileType>(v);
}

void EncodeNodes(FieldWriter& w, const std::vector<NodeAddress>& nodes) {
  std::vector<FieldWriter> items;
  for (const auto& n : nodes) {
    FieldWriter item;
    item.Str("id", n.id).Str("ep", n.endpoint);
    items.push_back(std::move(item));
  }
  w.MapArray("nodes", items);
}

Result<std::vector<NodeAddress>> DecodeNodes(const FieldReader& r) {
  SHARDFS_ASSIGN_OR_RETURN(auto items, r.MapArray("nodes", 4096));
  std::vector<NodeAddress> out;
  for (const auto& item : items) {
    NodeAddress n;
    SHARDFS_ASSIGN_OR_RETURN(n.id, item.Str("id", 64));
    SHARDFS_ASSIGN_OR_RETURN(n.endpoint, item.Str("ep", 512));
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace

void EncodeAttrs(FieldWriter& w, const InodeAttrs& a) {
  w.U64("ino", a.ino)
      .U64("type", static_cast<uint8_t>(a.type))
      .U64("mode", a.mode)
      .U64("uid", a.uid)
      .U64("gid", a.gid)
      .U64("nlink", a.nlink)
      .U64("size", a.size)
      .U64("rdev", a.rdev)
      .I64("atime", a.atime_ns)
      .I64("mtime", a.mtime_ns)
      .I64("ctime", a.ctime_ns)
      .U64("shardsize", a.shard_size)
      .U64("goal", a.replication_goal)
      .U64("stored", a.stored_bytes);
}

FieldWriter AttrsFields(const InodeAttrs& a) {
  FieldWriter w;
  EncodeAttrs(w, a);
  return w;
}

Result<InodeAttrs> DecodeAttrs(const FieldReader& r) {
  InodeAttrs a;
  SHARDFS_ASSIGN_OR_RETURN(a.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(a.type, Type(r, "type"));
  SHARDFS_ASSIGN_OR_RETURN(a.mode, U32(r, "mode"));
  SHARDFS_ASSIGN_OR_RETURN(a.uid, U32(r, "uid"));
  SHARDFS_ASSIGN_OR_RETURN(a.gid, U32(r, "gid"));
  SHARDFS_ASSIGN_OR_RETURN(a.nlink, U32(r, "nlink"));
  SHARDFS_ASSIGN_OR_RETURN(a.size, r.U64("size"));
  SHARDFS_ASSIGN_OR_RETURN(a.rdev, r.U64("rdev"));
  SHARDFS_ASSIGN_OR_RETURN(a.atime_ns, r.I64("atime"));
  SHARDFS_ASSIGN_OR_RETURN(a.mtime_ns, r.I64("mtime"));
  SHARDFS_ASSIGN_OR_RETURN(a.ctime_ns, r.I64("ctime"));
  SHARDFS_ASSIGN_OR_RETURN(a.shard_size, U32(r, "shardsize"));
  SHARDFS_ASSIGN_OR_RETURN(a.replication_goal, U32(r, "goal"));
  // A registry from before this field: as if the file were not sparse.
  SHARDFS_ASSIGN_OR_RETURN(a.stored_bytes, r.OptU64("stored", a.size));
  return a;
}

void EncodeChangedDirs(FieldWriter& w, const std::vector<InodeAttrs>& dirs) {
  std::vector<FieldWriter> maps;
  for (const auto& d : dirs) maps.push_back(AttrsFields(d));
  w.MapArray("dirs", maps);
}

Result<std::vector<InodeAttrs>> DecodeChangedDirs(const FieldReader& r) {
  std::vector<InodeAttrs> dirs;
  if (!r.Has("dirs")) return dirs;
  SHARDFS_ASSIGN_OR_RETURN(std::vector<FieldReader> maps, r.MapArray("dirs", kMaxChangedDirs));
  for (const auto& m : maps) {
    SHARDFS_ASSIGN_OR_RETURN(InodeAttrs a, DecodeAttrs(m));
    if (a.type != FileType::kDirectory) {
      return Status::Error(ErrorCode::kBadMessage, "a changed directory that is not a directory");
    }
    dirs.push_back(a);
  }
  return dirs;
}

void EncodeFirstShard(FieldWriter& w, const AllocateShardsReply& placed) {
  w.Map("first", placed.Encode());
}

Result<CreateReply> CreateReply::Decode(const FieldReader& r) {
  CreateReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.attrs, DecodeAttrs(r));
  if (r.Has("first")) {
    SHARDFS_ASSIGN_OR_RETURN(FieldReader first, r.Map("first"));
    SHARDFS_ASSIGN_OR_RETURN(AllocateShardsReply placed, AllocateShardsReply::Decode(first));
    if (placed.placements.size() != 1 || placed.placements[0].index != 0) {
      return Status::Error(ErrorCode::kBadMessage, "a first-shard placement for another shard");
    }
    m.first_shard = std::move(placed);
  }
  return m;
}

Result<AttrReply> AttrReply::Decode(const FieldReader& r) {
  SHARDFS_ASSIGN_OR_RETURN(InodeAttrs a, DecodeAttrs(r));
  return AttrReply{a};
}

FieldWriter InoRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino);
  return w;
}

Result<InoRequest> InoRequest::Decode(const FieldReader& r) {
  InoRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  return m;
}

FieldWriter NameRequest::Encode() const {
  FieldWriter w;
  w.U64("parent", parent).Str("name", name);
  return w;
}

Result<NameRequest> NameRequest::Decode(const FieldReader& r) {
  NameRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.parent, r.U64("parent"));
  SHARDFS_ASSIGN_OR_RETURN(m.name, r.Str("name", kMaxWireName));
  return m;
}

FieldWriter SetAttrRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino)
      .U64("mask", mask)
      .U64("mode", mode)
      .U64("uid", uid)
      .U64("gid", gid)
      .U64("size", size)
      .I64("atime", atime_ns)
      .I64("mtime", mtime_ns)
      .Bool("atimenow", atime_now)
      .Bool("mtimenow", mtime_now);
  return w;
}

Result<SetAttrRequest> SetAttrRequest::Decode(const FieldReader& r) {
  SetAttrRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.mask, U32(r, "mask"));
  SHARDFS_ASSIGN_OR_RETURN(m.mode, U32(r, "mode"));
  SHARDFS_ASSIGN_OR_RETURN(m.uid, U32(r, "uid"));
  SHARDFS_ASSIGN_OR_RETURN(m.gid, U32(r, "gid"));
  SHARDFS_ASSIGN_OR_RETURN(m.size, r.U64("size"));
  SHARDFS_ASSIGN_OR_RETURN(m.atime_ns, r.I64("atime"));
  SHARDFS_ASSIGN_OR_RETURN(m.mtime_ns, r.I64("mtime"));
  SHARDFS_ASSIGN_OR_RETURN(m.atime_now, r.OptBool("atimenow", false));
  SHARDFS_ASSIGN_OR_RETURN(m.mtime_now, r.OptBool("mtimenow", false));
  return m;
}

FieldWriter MknodRequest::Encode() const {
  FieldWriter w;
  w.U64("parent", parent)
      .Str("name", name)
      .U64("type", static_cast<uint8_t>(type))
      .U64("mode", mode)
      .U64("uid", caller.uid)
      .U64("gid", caller.gid)
      .U64("rdev", rdev)
      .U64("shardsize", shard_size)
      .U64("goal", replication_goal);
  if (open) w.Bool("open", true).U64("session", session);
  return w;
}

Result<MknodRequest> MknodRequest::Decode(const FieldReader& r) {
  MknodRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.parent, r.U64("parent"));
  SHARDFS_ASSIGN_OR_RETURN(m.name, r.Str("name", kMaxWireName));
  SHARDFS_ASSIGN_OR_RETURN(m.type, Type(r, "type"));
  SHARDFS_ASSIGN_OR_RETURN(m.mode, U32(r, "mode"));
  SHARDFS_ASSIGN_OR_RETURN(m.caller.uid, U32(r, "uid"));
  SHARDFS_ASSIGN_OR_RETURN(m.caller.gid, U32(r, "gid"));
  SHARDFS_ASSIGN_OR_RETURN(m.rdev, r.OptU64("rdev", 0));
  SHARDFS_ASSIGN_OR_RETURN(uint64_t shard_size, r.OptU64("shardsize", 0));
  SHARDFS_ASSIGN_OR_RETURN(uint64_t goal, r.OptU64("goal", 0));
  if (shard_size > UINT32_MAX || goal > kMaxReplicas) {
    return Status::Error(ErrorCode::kBadMessage, "shard size or replication goal out of range");
  }
  m.shard_size = static_cast<uint32_t>(shard_size);
  m.replication_goal = static_cast<uint32_t>(goal);
  SHARDFS_ASSIGN_OR_RETURN(m.open, r.OptBool("open", false));
  SHARDFS_ASSIGN_OR_RETURN(m.session, r.OptU64("session", 0));
  return m;
}

FieldWriter SymlinkRequest::Encode() const {
  FieldWriter w;
  w.U64("parent", parent)
      .Str("name", name)
      .Str("target", target)
      .U64("uid", caller.uid)
      .U64("gid", caller.gid);
  return w;
}

Result<SymlinkRequest> SymlinkRequest::Decode(const FieldReader& r) {
  SymlinkRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.parent, r.U64("parent"));
  SHARDFS_ASSIGN_OR_RETURN(m.name, r.Str("name", kMaxWireName));
  SHARDFS_ASSIGN_OR_RETURN(m.target, r.Str("target", kMaxWireSymlink));
  SHARDFS_ASSIGN_OR_RETURN(m.caller.uid, U32(r, "uid"));
  SHARDFS_ASSIGN_OR_RETURN(m.caller.gid, U32(r, "gid"));
  return m;
}

FieldWriter LinkRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).U64("newparent", new_parent).Str("newname", new_name);
  return w;
}

Result<LinkRequest> LinkRequest::Decode(const FieldReader& r) {
  LinkRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.new_parent, r.U64("newparent"));
  SHARDFS_ASSIGN_OR_RETURN(m.new_name, r.Str("newname", kMaxWireName));
  return m;
}

FieldWriter RenameRequest::Encode() const {
  FieldWriter w;
  w.U64("parent", parent)
      .Str("name", name)
      .U64("newparent", new_parent)
      .Str("newname", new_name)
      .U64("flags", flags);
  return w;
}

Result<RenameRequest> RenameRequest::Decode(const FieldReader& r) {
  RenameRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.parent, r.U64("parent"));
  SHARDFS_ASSIGN_OR_RETURN(m.name, r.Str("name", kMaxWireName));
  SHARDFS_ASSIGN_OR_RETURN(m.new_parent, r.U64("newparent"));
  SHARDFS_ASSIGN_OR_RETURN(m.new_name, r.Str("newname", kMaxWireName));
  SHARDFS_ASSIGN_OR_RETURN(m.flags, U32(r, "flags"));
  return m;
}

FieldWriter ReadlinkReply::Encode() const {
  FieldWriter w;
  w.Str("target", target);
  return w;
}

Result<ReadlinkReply> ReadlinkReply::Decode(const FieldReader& r) {
  ReadlinkReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.target, r.Str("target", kMaxWireSymlink));
  return m;
}

FieldWriter ReadDirRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).Str("after", after).U64("max", max).Bool("plus", plus);
  return w;
}

Result<ReadDirRequest> ReadDirRequest::Decode(const FieldReader& r) {
  ReadDirRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.after, r.OptStr("after", kMaxWireName, ""));
  SHARDFS_ASSIGN_OR_RETURN(m.max, r.U64("max", kMaxReadDirPage));
  SHARDFS_ASSIGN_OR_RETURN(m.plus, r.OptBool("plus", false));
  if (m.max == 0) return Status::Error(ErrorCode::kBadMessage, "readdir of 0 entries");
  return m;
}

FieldWriter ReadDirReply::Encode() const {
  std::vector<FieldWriter> items;
  items.reserve(entries.size());
  for (const auto& e : entries) {
    FieldWriter item;
    item.Str("name", e.name).U64("ino", e.ino).U64("type", static_cast<uint8_t>(e.type));
    if (e.attrs) item.Map("attrs", AttrsFields(*e.attrs));
    if (e.has_xattrs) item.Bool("xattrs", *e.has_xattrs);
    items.push_back(std::move(item));
  }
  FieldWriter w;
  w.MapArray("entries", items).Bool("more", more);
  return w;
}

Result<ReadDirReply> ReadDirReply::Decode(const FieldReader& r) {
  ReadDirReply m;
  SHARDFS_ASSIGN_OR_RETURN(auto items, r.MapArray("entries", kMaxReadDirPage));
  m.entries.reserve(items.size());
  for (const auto& item : items) {
    DirEntry e;
    SHARDFS_ASSIGN_OR_RETURN(e.name, item.Str("name", kMaxWireName));
    SHARDFS_ASSIGN_OR_RETURN(e.ino, item.U64("ino"));
    SHARDFS_ASSIGN_OR_RETURN(e.type, Type(item, "type"));
    if (item.Has("attrs")) {
      SHARDFS_ASSIGN_OR_RETURN(FieldReader a, item.Map("attrs"));
      SHARDFS_ASSIGN_OR_RETURN(InodeAttrs attrs, DecodeAttrs(a));
      e.attrs = attrs;
    }
    if (item.Has("xattrs")) {
      SHARDFS_ASSIGN_OR_RETURN(bool has, item.Bool("xattrs"));
      e.has_xattrs = has;
    }
    m.entries.push_back(std::move(e));
  }
  SHARDFS_ASSIGN_OR_RETURN(m.more, r.Bool("more"));
  return m;
}

FieldWriter StatFsReply::Encode() const {
  FieldWriter w;
  w.U64("total", total_bytes)
      .U64("free", free_bytes)
      .U64("inodes", inodes)
      .U64("nodes", live_nodes);
  return w;
}

Result<StatFsReply> StatFsReply::Decode(const FieldReader& r) {
  StatFsReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.total_bytes, r.U64("total"));
  SHARDFS_ASSIGN_OR_RETURN(m.free_bytes, r.U64("free"));
  SHARDFS_ASSIGN_OR_RETURN(m.inodes, r.U64("inodes"));
  SHARDFS_ASSIGN_OR_RETURN(m.live_nodes, r.U64("nodes"));
  return m;
}

FieldWriter XattrRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).Str("name", name).Bin("value", value).U64("flags", flags);
  return w;
}

Result<XattrRequest> XattrRequest::Decode(const FieldReader& r) {
  XattrRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.name, r.Str("name", kMaxWireName));
  if (r.Has("value")) {
    SHARDFS_ASSIGN_OR_RETURN(m.value, r.Bin("value", kMaxWireXattrValue));
  }
  SHARDFS_ASSIGN_OR_RETURN(uint64_t flags, r.OptU64("flags", 0));
  if (flags > 3) return Status::Error(ErrorCode::kBadMessage, "unknown xattr flags");
  m.flags = static_cast<uint32_t>(flags);
  return m;
}

FieldWriter XattrValueReply::Encode() const {
  FieldWriter w;
  w.Bin("value", value);
  return w;
}

Result<XattrValueReply> XattrValueReply::Decode(const FieldReader& r) {
  XattrValueReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.value, r.Bin("value", kMaxWireXattrValue));
  return m;
}

FieldWriter XattrListReply::Encode() const {
  FieldWriter w;
  w.StrArray("names", names);
  return w;
}

Result<XattrListReply> XattrListReply::Decode(const FieldReader& r) {
  XattrListReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.names, r.StrArray("names", 65536, kMaxWireName));
  return m;
}

FieldWriter AllocateShardsRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).U64Array("indexes", std::vector<uint64_t>(indexes.begin(), indexes.end()));
  return w;
}

Result<AllocateShardsRequest> AllocateShardsRequest::Decode(const FieldReader& r) {
  AllocateShardsRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(auto indexes, r.U64Array("indexes", kMaxShardsPerMessage));
  for (uint64_t i : indexes) {
    if (i > UINT32_MAX) return Status::Error(ErrorCode::kBadMessage, "shard index out of range");
    m.indexes.push_back(static_cast<uint32_t>(i));
  }
  return m;
}

FieldWriter AllocateShardsReply::Encode() const {
  std::vector<FieldWriter> items;
  for (const auto& p : placements) {
    FieldWriter item;
    item.U64("idx", p.index).U64("gen", p.generation).StrArray("replicas", p.replicas);
    items.push_back(std::move(item));
  }
  FieldWriter w;
  w.MapArray("placements", items).U64("min", min_replicas);
  EncodeNodes(w, nodes);
  return w;
}

Result<AllocateShardsReply> AllocateShardsReply::Decode(const FieldReader& r) {
  AllocateShardsReply m;
  SHARDFS_ASSIGN_OR_RETURN(auto items, r.MapArray("placements", kMaxShardsPerMessage));
  for (const auto& item : items) {
    ShardPlacement p;
    SHARDFS_ASSIGN_OR_RETURN(p.index, U32(item, "idx"));
    SHARDFS_ASSIGN_OR_RETURN(p.generation, item.U64("gen"));
    SHARDFS_ASSIGN_OR_RETURN(p.replicas, item.StrArray("replicas", kMaxReplicas, 64));
    m.placements.push_back(std::move(p));
  }
  SHARDFS_ASSIGN_OR_RETURN(m.min_replicas, U32(r, "min"));
  SHARDFS_ASSIGN_OR_RETURN(m.nodes, DecodeNodes(r));
  return m;
}

FieldWriter EncodeShardEntry(const ShardEntry& e) {
  FieldWriter w;
  w.U64("idx", e.index)
      .U64("gen", e.generation)
      .U64("len", e.length)
      .U64("sum", e.checksum)
      .StrArray("replicas", e.replicas);
  if (e.data_bytes) w.U64("data", *e.data_bytes);
  return w;
}

Result<ShardEntry> DecodeShardEntry(const FieldReader& r) {
  ShardEntry e;
  SHARDFS_ASSIGN_OR_RETURN(e.index, U32(r, "idx"));
  SHARDFS_ASSIGN_OR_RETURN(e.generation, r.U64("gen"));
  SHARDFS_ASSIGN_OR_RETURN(e.length, r.U64("len", kMaxShardSize));
  SHARDFS_ASSIGN_OR_RETURN(e.checksum, r.U64("sum"));
  SHARDFS_ASSIGN_OR_RETURN(e.replicas, r.StrArray("replicas", kMaxReplicas, 64));
  if (r.Has("data")) {
    SHARDFS_ASSIGN_OR_RETURN(uint64_t data_bytes, r.U64("data", kMaxShardSize));
    e.data_bytes = data_bytes;
  }
  return e;
}

namespace {

void EncodeShardEntries(FieldWriter& w, const std::vector<ShardEntry>& shards) {
  std::vector<FieldWriter> items;
  items.reserve(shards.size());
  for (const auto& e : shards) items.push_back(EncodeShardEntry(e));
  w.MapArray("shards", items);
}

Result<std::vector<ShardEntry>> DecodeShardEntries(const FieldReader& r) {
  SHARDFS_ASSIGN_OR_RETURN(auto items, r.MapArray("shards", kMaxShardsPerMessage));
  std::vector<ShardEntry> out;
  out.reserve(items.size());
  for (const auto& item : items) {
    SHARDFS_ASSIGN_OR_RETURN(ShardEntry e, DecodeShardEntry(item));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

FieldWriter CommitShardsRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).U64("size", size).Bool("setmtime", set_mtime);
  EncodeShardEntries(w, shards);
  return w;
}

Result<CommitShardsRequest> CommitShardsRequest::Decode(const FieldReader& r) {
  CommitShardsRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.size, r.U64("size"));
  SHARDFS_ASSIGN_OR_RETURN(m.set_mtime, r.OptBool("setmtime", true));
  SHARDFS_ASSIGN_OR_RETURN(m.shards, DecodeShardEntries(r));
  return m;
}

FieldWriter GetShardTableRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).U64("first", first).U64("count", count);
  if (open) w.Bool("open", true).U64("session", session);
  return w;
}

Result<GetShardTableRequest> GetShardTableRequest::Decode(const FieldReader& r) {
  GetShardTableRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(m.first, U32(r, "first"));
  SHARDFS_ASSIGN_OR_RETURN(uint64_t count, r.U64("count", kMaxShardsPerMessage));
  m.count = static_cast<uint32_t>(count);
  SHARDFS_ASSIGN_OR_RETURN(m.open, r.OptBool("open", false));
  SHARDFS_ASSIGN_OR_RETURN(m.session, r.OptU64("session", 0));
  return m;
}

FieldWriter ShardTableReply::Encode() const {
  FieldWriter w;
  w.Map("attrs", AttrsFields(attrs));
  EncodeShardEntries(w, shards);
  EncodeNodes(w, nodes);
  return w;
}

Result<ShardTableReply> ShardTableReply::Decode(const FieldReader& r) {
  ShardTableReply m;
  SHARDFS_ASSIGN_OR_RETURN(FieldReader a, r.Map("attrs"));
  SHARDFS_ASSIGN_OR_RETURN(m.attrs, DecodeAttrs(a));
  SHARDFS_ASSIGN_OR_RETURN(m.shards, DecodeShardEntries(r));
  SHARDFS_ASSIGN_OR_RETURN(m.nodes, DecodeNodes(r));
  return m;
}

FieldWriter SetReplicasRequest::Encode() const {
  FieldWriter w;
  w.U64("ino", ino).U64("goal", goal).Bool("recursive", recursive);
  return w;
}

Result<SetReplicasRequest> SetReplicasRequest::Decode(const FieldReader& r) {
  SetReplicasRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.ino, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(uint64_t goal, r.U64("goal", kMaxReplicas));
  m.goal = static_cast<uint32_t>(goal);
  SHARDFS_ASSIGN_OR_RETURN(m.recursive, r.OptBool("recursive", false));
  return m;
}

}  // namespace shardfs
