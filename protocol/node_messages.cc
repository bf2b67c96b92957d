#include "protocol/node_messages.h"

#include "protocol/beacon.h"

namespace shardfs {

void EncodeShardKey(FieldWriter& w, const ShardKey& key) {
  w.U64("ino", key.inode).U64("idx", key.index).U64("gen", key.generation);
}

Result<ShardKey> DecodeShardKey(const FieldReader& r) {
  ShardKey key;
  SHARDFS_ASSIGN_OR_RETURN(key.inode, r.U64("ino"));
  SHARDFS_ASSIGN_OR_RETURN(uint64_t index, r.U64("idx", UINT32_MAX));
  key.index = static_cast<uint32_t>(index);
  SHARDFS_ASSIGN_OR_RETURN(key.generation, r.U64("gen"));
  return key;
}

FieldWriter SyncShardsRequest::Encode() const {
  std::vector<FieldWriter> items;
  items.reserve(keys.size());
  for (const ShardKey& key : keys) {
    FieldWriter item;
    EncodeShardKey(item, key);
    items.push_back(std::move(item));
  }
  FieldWriter w;
  w.MapArray("keys", items);
  return w;
}

Result<SyncShardsRequest> SyncShardsRequest::Decode(const FieldReader& r) {
  SyncShardsRequest m;
  SHARDFS_ASSIGN_OR_RETURN(auto items, r.MapArray("keys", kMaxSyncKeys));
  m.keys.reserve(items.size());
  for (const FieldReader& item : items) {
    SHARDFS_ASSIGN_OR_RETURN(ShardKey key, DecodeShardKey(item));
    m.keys.push_back(key);
  }
  return m;
}

FieldWriter PutShardRequest::Encode() const {
  FieldWriter w;
  EncodeShardKey(w, key);
  w.Bool("sync", sync);
  if (checksum) w.U64("sum", *checksum);
  return w;
}

Result<PutShardRequest> PutShardRequest::Decode(const FieldReader& r) {
  PutShardRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.key, DecodeShardKey(r));
  SHARDFS_ASSIGN_OR_RETURN(m.sync, r.OptBool("sync", false));
  if (r.Has("sum")) {
    SHARDFS_ASSIGN_OR_RETURN(uint64_t sum, r.U64("sum"));
    m.checksum = sum;
  }
  return m;
}

FieldWriter PutShardReply::Encode() const {
  FieldWriter w;
  w.U64("len", length).U64("sum", checksum).U64("data", data_bytes);
  return w;
}

Result<PutShardReply> PutShardReply::Decode(const FieldReader& r) {
  PutShardReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.length, r.U64("len", kMaxShardBytes));
  SHARDFS_ASSIGN_OR_RETURN(m.checksum, r.U64("sum"));
  SHARDFS_ASSIGN_OR_RETURN(m.data_bytes, r.OptU64("data", m.length));
  if (m.data_bytes > m.length) {
    return Status::Error(ErrorCode::kBadMessage, "put reply: more data bytes than the length");
  }
  return m;
}

FieldWriter ShardExtentsReply::Encode() const {
  std::vector<uint64_t> flat;
  flat.reserve(extents.size() * 2);
  for (const Extent& e : extents) {
    flat.push_back(e.offset);
    flat.push_back(e.length);
  }
  FieldWriter w;
  w.U64("len", length).U64Array("ext", flat);
  return w;
}

Result<ShardExtentsReply> ShardExtentsReply::Decode(const FieldReader& r) {
  ShardExtentsReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.length, r.U64("len", kMaxShardBytes));
  SHARDFS_ASSIGN_OR_RETURN(std::vector<uint64_t> flat, r.U64Array("ext", 2 * kMaxShardExtents));
  if (flat.size() % 2 != 0) {
    return Status::Error(ErrorCode::kBadMessage, "extents come in (offset, length) pairs");
  }
  uint64_t end = 0;
  for (size_t i = 0; i < flat.size(); i += 2) {
    const Extent e{flat[i], flat[i + 1]};
    if (e.length == 0 || e.offset < end || e.offset > m.length || e.length > m.length - e.offset) {
      return Status::Error(ErrorCode::kBadMessage,
                           "extents must be sorted, disjoint, non-empty and within the shard");
    }
    end = e.end();
    m.extents.push_back(e);
  }
  return m;
}

FieldWriter PutPatchedShardRequest::Encode() const {
  FieldWriter w;
  EncodeShardKey(w, key);
  FieldWriter b;
  EncodeShardKey(b, base);
  w.Map("base", b).U64("newlen", new_length).Bool("sync", sync);
  std::vector<uint64_t> flat;
  flat.reserve(patches.size() * 2);
  for (const auto& p : patches) {
    flat.push_back(p.offset);
    flat.push_back(p.length);
  }
  w.U64Array("patches", flat);
  return w;
}

Result<PutPatchedShardRequest> PutPatchedShardRequest::Decode(const FieldReader& r) {
  PutPatchedShardRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.key, DecodeShardKey(r));
  SHARDFS_ASSIGN_OR_RETURN(FieldReader base, r.Map("base"));
  SHARDFS_ASSIGN_OR_RETURN(m.base, DecodeShardKey(base));
  SHARDFS_ASSIGN_OR_RETURN(m.new_length, r.U64("newlen", kMaxShardBytes));
  SHARDFS_ASSIGN_OR_RETURN(m.sync, r.OptBool("sync", false));
  SHARDFS_ASSIGN_OR_RETURN(std::vector<uint64_t> flat, r.U64Array("patches", kMaxPatches * 2));
  if (flat.size() % 2 != 0) {
    return Status::Error(ErrorCode::kBadMessage, "patches come in (offset, length) pairs");
  }
  for (size_t i = 0; i < flat.size(); i += 2) {
    if (flat[i] > m.new_length || flat[i + 1] > m.new_length - flat[i]) {
      return Status::Error(ErrorCode::kBadMessage, "patch reaches past the new length");
    }
    m.patches.push_back({flat[i], flat[i + 1]});
  }
  return m;
}

FieldWriter GetShardRequest::Encode() const {
  FieldWriter w;
  EncodeShardKey(w, key);
  w.U64("off", offset).U64("len", length);
  return w;
}

Result<GetShardRequest> GetShardRequest::Decode(const FieldReader& r) {
  GetShardRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.key, DecodeShardKey(r));
  SHARDFS_ASSIGN_OR_RETURN(m.offset, r.U64("off", kMaxShardBytes));
  SHARDFS_ASSIGN_OR_RETURN(m.length, r.U64("len", kMaxShardBytes));
  return m;
}

FieldWriter GetShardReply::Encode() const {
  FieldWriter w;
  w.U64("shardlen", shard_length);
  return w;
}

Result<GetShardReply> GetShardReply::Decode(const FieldReader& r) {
  GetShardReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.shard_length, r.U64("shardlen", kMaxShardBytes));
  return m;
}

FieldWriter ShardKeyRequest::Encode() const {
  FieldWriter w;
  EncodeShardKey(w, key);
  return w;
}

Result<ShardKeyRequest> ShardKeyRequest::Decode(const FieldReader& r) {
  ShardKeyRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.key, DecodeShardKey(r));
  return m;
}

FieldWriter ShardStatReply::Encode() const {
  FieldWriter w;
  w.U64("len", length).U64("sum", checksum);
  return w;
}

Result<ShardStatReply> ShardStatReply::Decode(const FieldReader& r) {
  ShardStatReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.length, r.U64("len", kMaxShardBytes));
  SHARDFS_ASSIGN_OR_RETURN(m.checksum, r.U64("sum"));
  return m;
}

FieldWriter InventoryRequest::Encode() const {
  FieldWriter w;
  if (after) {
    FieldWriter a;
    EncodeShardKey(a, *after);
    w.Map("after", a);
  }
  w.U64("max", max);
  return w;
}

Result<InventoryRequest> InventoryRequest::Decode(const FieldReader& r) {
  InventoryRequest m;
  if (r.Has("after")) {
    SHARDFS_ASSIGN_OR_RETURN(FieldReader a, r.Map("after"));
    SHARDFS_ASSIGN_OR_RETURN(ShardKey key, DecodeShardKey(a));
    m.after = key;
  }
  SHARDFS_ASSIGN_OR_RETURN(m.max, r.U64("max", kMaxInventoryPage));
  if (m.max == 0) return Status::Error(ErrorCode::kBadMessage, "inventory page of 0 entries");
  return m;
}

FieldWriter InventoryReply::Encode() const {
  std::vector<FieldWriter> items;
  items.reserve(entries.size());
  for (const auto& e : entries) {
    FieldWriter item;
    EncodeShardKey(item, e.key);
    item.U64("len", e.length).U64("sum", e.checksum);
    items.push_back(std::move(item));
  }
  FieldWriter w;
  w.MapArray("entries", items).Bool("more", more);
  return w;
}

Result<InventoryReply> InventoryReply::Decode(const FieldReader& r) {
  InventoryReply m;
  SHARDFS_ASSIGN_OR_RETURN(std::vector<FieldReader> items,
                           r.MapArray("entries", kMaxInventoryPage));
  for (const auto& item : items) {
    InventoryEntry e;
    SHARDFS_ASSIGN_OR_RETURN(e.key, DecodeShardKey(item));
    SHARDFS_ASSIGN_OR_RETURN(e.length, item.U64("len", kMaxShardBytes));
    SHARDFS_ASSIGN_OR_RETURN(e.checksum, item.U64("sum"));
    m.entries.push_back(e);
  }
  SHARDFS_ASSIGN_OR_RETURN(m.more, r.Bool("more"));
  return m;
}

FieldWriter CopyShardFromRequest::Encode() const {
  FieldWriter w;
  EncodeShardKey(w, key);
  w.U64("len", length).U64("sum", checksum).StrArray("src", sources).Bool("sync", sync);
  return w;
}

Result<CopyShardFromRequest> CopyShardFromRequest::Decode(const FieldReader& r) {
  CopyShardFromRequest m;
  SHARDFS_ASSIGN_OR_RETURN(m.key, DecodeShardKey(r));
  SHARDFS_ASSIGN_OR_RETURN(m.length, r.U64("len", kMaxShardBytes));
  SHARDFS_ASSIGN_OR_RETURN(m.checksum, r.U64("sum"));
  SHARDFS_ASSIGN_OR_RETURN(m.sources, r.StrArray("src", kMaxCopySources, kMaxEndpointLength));
  if (m.sources.empty()) {
    return Status::Error(ErrorCode::kBadMessage, "copy request names no source");
  }
  for (const auto& source : m.sources) {
    SHARDFS_ASSIGN_OR_RETURN(TcpEndpoint ep, ParseTcpEndpoint(source));
    if (ep.IsWildcard() || ep.port == 0) {
      return Status::Error(ErrorCode::kBadMessage,
                           "copy source '" + source + "' is not connectable");
    }
  }
  SHARDFS_ASSIGN_OR_RETURN(m.sync, r.OptBool("sync", true));
  return m;
}

FieldWriter NodeInfoReply::Encode() const {
  FieldWriter w;
  w.Str("id", node_id).U64("cap", capacity).U64("used", used).U64("shards", shard_count);
  return w;
}

Result<NodeInfoReply> NodeInfoReply::Decode(const FieldReader& r) {
  NodeInfoReply m;
  SHARDFS_ASSIGN_OR_RETURN(m.node_id, r.Str("id", kMaxNodeIdLength));
  SHARDFS_ASSIGN_OR_RETURN(m.capacity, r.U64("cap"));
  SHARDFS_ASSIGN_OR_RETURN(m.used, r.U64("used"));
  SHARDFS_ASSIGN_OR_RETURN(m.shard_count, r.U64("shards"));
  return m;
}

}  // namespace shardfs
