// The node server's messages: what a client may ask of `shardfs-node`.
//
// Each request and reply is a struct with Encode() to a field map and a
// Decode() that checks every field; the shard bytes of PutShard, GetShard and
// PutPatchedShard travel in the payload frame, never in the map. Keys are
// (inode, index, generation); a node never turns anything but a validated key
// into a file name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/fields.h"
#include "src/data_extents.h"
#include "src/shard_key.h"
#include "src/status.h"

namespace shardfs {

// Largest shard a node accepts, and the most patches one PutPatched may carry.
inline constexpr uint64_t kMaxShardBytes = 64ull << 20;
inline constexpr size_t kMaxPatches = 4096;
inline constexpr size_t kMaxInventoryPage = 10000;
inline constexpr size_t kMaxNodeIdLength = 64;
// Most peers one CopyShardFrom may name.
inline constexpr size_t kMaxCopySources = 16;

void EncodeShardKey(FieldWriter& w, const ShardKey& key);
Result<ShardKey> DecodeShardKey(const FieldReader& r);

struct PutShardRequest {
  ShardKey key;
  bool sync = false;
  std::optional<uint64_t> checksum;  // of the payload; checked before storing
  FieldWriter Encode() const;
  static Result<PutShardRequest> Decode(const FieldReader& r);
};

struct PutShardReply {
  uint64_t length = 0;
  uint64_t checksum = 0;
  // The part of `length` the node stored: less the pages of zeros it keeps
  // as holes. A node that does not say stored all of it.
  uint64_t data_bytes = 0;
  FieldWriter Encode() const;
  static Result<PutShardReply> Decode(const FieldReader& r);
};

// The payload is the patches' bytes, concatenated in order.
struct PutPatchedShardRequest {
  struct Patch {
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  ShardKey key;
  ShardKey base;
  uint64_t new_length = 0;
  bool sync = false;
  std::vector<Patch> patches;
  FieldWriter Encode() const;
  static Result<PutPatchedShardRequest> Decode(const FieldReader& r);
};

struct GetShardRequest {
  ShardKey key;
  uint64_t offset = 0;
  uint64_t length = 0;
  FieldWriter Encode() const;
  static Result<GetShardRequest> Decode(const FieldReader& r);
};

// The payload holds the bytes read (fewer than asked at the end of a shard).
struct GetShardReply {
  uint64_t shard_length = 0;
  FieldWriter Encode() const;
  static Result<GetShardReply> Decode(const FieldReader& r);
};

struct ShardKeyRequest {  // DeleteShard, StatShard and ShardExtents
  ShardKey key;
  FieldWriter Encode() const;
  static Result<ShardKeyRequest> Decode(const FieldReader& r);
};

// fsync() on a file: the node makes these shards, stored earlier without
// sync, durable. The reply has no fields; any key missing is NOT_FOUND.
inline constexpr size_t kMaxSyncKeys = 65536;
struct SyncShardsRequest {
  std::vector<ShardKey> keys;
  FieldWriter Encode() const;
  static Result<SyncShardsRequest> Decode(const FieldReader& r);
};

struct ShardStatReply {
  uint64_t length = 0;
  uint64_t checksum = 0;
  FieldWriter Encode() const;
  static Result<ShardStatReply> Decode(const FieldReader& r);
};

// Where a shard holds data, as extents of its bytes in order; the rest are
// the pages of zeros the node keeps as holes. The node checks the blocks
// around every hole against their checksums first, so a hole reported is
// zeros the writer wrote. Decode() takes only sorted, disjoint, non-empty
// extents within `length`.
inline constexpr size_t kMaxShardExtents = kMaxShardBytes / 4096 / 2 + 1;
struct ShardExtentsReply {
  uint64_t length = 0;
  std::vector<Extent> extents;
  FieldWriter Encode() const;
  static Result<ShardExtentsReply> Decode(const FieldReader& r);
};

struct InventoryRequest {
  std::optional<ShardKey> after;
  uint64_t max = 1000;
  FieldWriter Encode() const;
  static Result<InventoryRequest> Decode(const FieldReader& r);
};

struct InventoryEntry {
  ShardKey key;
  uint64_t length = 0;
  uint64_t checksum = 0;
};

struct InventoryReply {
  std::vector<InventoryEntry> entries;
  bool more = false;
  FieldWriter Encode() const;
  static Result<InventoryReply> Decode(const FieldReader& r);
};

// Repair, node to node: asks a node to fetch shard `key` from one of
// `sources` (node endpoints, tried in order until one gives verified bytes)
// and store it. The reply is a PutShardReply.
// Decode() accepts only 1..kMaxCopySources connectable tcp://HOST:PORT
// endpoints: the node connects to whatever is named here, so nothing else
// (ipc:// paths, wildcards) may come in from the wire.
struct CopyShardFromRequest {
  ShardKey key;
  uint64_t length = 0;    // the object's length, as the shard table says
  uint64_t checksum = 0;  // the whole object's checksum, as PutShardReply.checksum gives it
  std::vector<std::string> sources;  // 1..16 endpoints, each <= 256 bytes
  bool sync = true;
  FieldWriter Encode() const;
  static Result<CopyShardFromRequest> Decode(const FieldReader& r);
};

struct NodeInfoReply {
  std::string node_id;
  uint64_t capacity = 0;
  uint64_t used = 0;
  uint64_t shard_count = 0;
  FieldWriter Encode() const;
  static Result<NodeInfoReply> Decode(const FieldReader& r);
};

}  // namespace shardfs
