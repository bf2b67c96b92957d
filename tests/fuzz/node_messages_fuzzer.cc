// Fuzz target: every node message's Decode() on any header.
//
// The input is a header frame. Whatever DecodeHeader() accepts, its fields
// go to every request and reply Decode() of protocol/node_messages.h,
// whatever the header's type says: a peer chooses the type too. Each Decode
// must return a message or a kBadMessage error, never crash; what it accepts
// must obey the limits the node relies on (lengths within a shard, patches
// within the new length, inventory pages of 1..kMaxInventoryPage, copy
// requests with 1..kMaxCopySources tcp:// sources); and a
// decoded message, encoded again and decoded again, must come back equal,
// so Encode() and Decode() agree on the wire format.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/envelope.h"
#include "protocol/node_messages.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

bool Same(const PutShardRequest& a, const PutShardRequest& b) {
  return a.key == b.key && a.sync == b.sync && a.checksum == b.checksum;
}
bool Same(const PutShardReply& a, const PutShardReply& b) {
  return a.length == b.length && a.checksum == b.checksum && a.data_bytes == b.data_bytes;
}
bool Same(const ShardExtentsReply& a, const ShardExtentsReply& b) {
  return a.length == b.length && a.extents == b.extents;
}
bool Same(const PutPatchedShardRequest& a, const PutPatchedShardRequest& b) {
  if (a.key != b.key || a.base != b.base || a.new_length != b.new_length || a.sync != b.sync ||
      a.patches.size() != b.patches.size()) {
    return false;
  }
  for (size_t i = 0; i < a.patches.size(); ++i) {
    if (a.patches[i].offset != b.patches[i].offset || a.patches[i].length != b.patches[i].length) {
      return false;
    }
  }
  return true;
}
bool Same(const GetShardRequest& a, const GetShardRequest& b) {
  return a.key == b.key && a.offset == b.offset && a.length == b.length;
}
bool Same(const GetShardReply& a, const GetShardReply& b) {
  return a.shard_length == b.shard_length;
}
bool Same(const ShardKeyRequest& a, const ShardKeyRequest& b) {
  return a.key == b.key;
}
bool Same(const ShardStatReply& a, const ShardStatReply& b) {
  return a.length == b.length && a.checksum == b.checksum;
}
bool Same(const InventoryRequest& a, const InventoryRequest& b) {
  return a.after == b.after && a.max == b.max;
}
bool Same(const InventoryReply& a, const InventoryReply& b) {
  if (a.more != b.more || a.entries.size() != b.entries.size()) return false;
  for (size_t i = 0; i < a.entries.size(); ++i) {
    if (a.entries[i].key != b.entries[i].key || a.entries[i].length != b.entries[i].length ||
        a.entries[i].checksum != b.entries[i].checksum) {
      return false;
    }
  }
  return true;
}
bool Same(const CopyShardFromRequest& a, const CopyShardFromRequest& b) {
  return a.key == b.key && a.length == b.length && a.checksum == b.checksum &&
         a.sources == b.sources && a.sync == b.sync;
}
bool Same(const NodeInfoReply& a, const NodeInfoReply& b) {
  return a.node_id == b.node_id && a.capacity == b.capacity && a.used == b.used &&
         a.shard_count == b.shard_count;
}

// What the node relies on once a message decoded.
void CheckLimits(const PutShardRequest&) {}
void CheckLimits(const PutShardReply& m) {
  FUZZ_CHECK(m.length <= kMaxShardBytes);
  FUZZ_CHECK(m.data_bytes <= m.length);
}
// The mount takes whatever is outside the extents for holes.
void CheckLimits(const ShardExtentsReply& m) {
  FUZZ_CHECK(m.length <= kMaxShardBytes);
  FUZZ_CHECK(m.extents.size() <= kMaxShardExtents);
  uint64_t end = 0;
  for (const Extent& e : m.extents) {
    FUZZ_CHECK(e.length > 0 && e.offset >= end && e.end() <= m.length);
    end = e.end();
  }
}
void CheckLimits(const PutPatchedShardRequest& m) {
  FUZZ_CHECK(m.new_length <= kMaxShardBytes);
  FUZZ_CHECK(m.patches.size() <= kMaxPatches);
  for (const auto& p : m.patches) {
    FUZZ_CHECK(p.offset <= m.new_length && p.length <= m.new_length - p.offset);
  }
}
void CheckLimits(const GetShardRequest& m) {
  FUZZ_CHECK(m.offset <= kMaxShardBytes && m.length <= kMaxShardBytes);
}
void CheckLimits(const GetShardReply& m) {
  FUZZ_CHECK(m.shard_length <= kMaxShardBytes);
}
void CheckLimits(const ShardKeyRequest&) {}
void CheckLimits(const ShardStatReply& m) {
  FUZZ_CHECK(m.length <= kMaxShardBytes);
}
void CheckLimits(const InventoryRequest& m) {
  FUZZ_CHECK(m.max >= 1 && m.max <= kMaxInventoryPage);
}
void CheckLimits(const InventoryReply& m) {
  FUZZ_CHECK(m.entries.size() <= kMaxInventoryPage);
  for (const auto& e : m.entries) FUZZ_CHECK(e.length <= kMaxShardBytes);
}
void CheckLimits(const CopyShardFromRequest& m) {
  FUZZ_CHECK(m.length <= kMaxShardBytes);
  FUZZ_CHECK(!m.sources.empty() && m.sources.size() <= kMaxCopySources);
  for (const auto& source : m.sources) {
    FUZZ_CHECK(source.size() <= 256 && source.rfind("tcp://", 0) == 0);
  }
}
void CheckLimits(const NodeInfoReply& m) {
  FUZZ_CHECK(m.node_id.size() <= kMaxNodeIdLength);
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
  DecodeAs<PutShardRequest>(f, t, id);
  DecodeAs<PutShardReply>(f, t, id);
  DecodeAs<PutPatchedShardRequest>(f, t, id);
  DecodeAs<GetShardRequest>(f, t, id);
  DecodeAs<GetShardReply>(f, t, id);
  DecodeAs<ShardKeyRequest>(f, t, id);
  DecodeAs<ShardStatReply>(f, t, id);
  DecodeAs<ShardExtentsReply>(f, t, id);
  DecodeAs<InventoryRequest>(f, t, id);
  DecodeAs<InventoryReply>(f, t, id);
  DecodeAs<CopyShardFromRequest>(f, t, id);
  DecodeAs<NodeInfoReply>(f, t, id);
  return 0;
}
