#include "src/namespace_op.h"

#include <exception>
#include <limits>
#include <type_traits>

#include "protocol/msgpack_bounds.h"
#include "protocol/node_messages.h"

namespace shardfs {
namespace codec {

ArrayReader::ArrayReader(const msgpack::object& obj) {
  if (obj.type == msgpack::type::ARRAY) {
    items_ = obj.via.array.ptr;
    size_ = obj.via.array.size;
    ok_ = true;
  }
}

const msgpack::object* ArrayReader::Next() {
  if (!ok_ || pos_ >= size_) {
    ok_ = false;
    return nullptr;
  }
  return &items_[pos_++];
}

bool ArrayReader::U64(uint64_t* out) {
  const msgpack::object* o = Next();
  if (o == nullptr || o->type != msgpack::type::POSITIVE_INTEGER) return ok_ = false;
  *out = o->via.u64;
  return true;
}

bool ArrayReader::U32(uint32_t* out) {
  uint64_t v = 0;
  if (!U64(&v) || v > std::numeric_limits<uint32_t>::max()) return ok_ = false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool ArrayReader::U8(uint8_t* out) {
  uint64_t v = 0;
  if (!U64(&v) || v > std::numeric_limits<uint8_t>::max()) return ok_ = false;
  *out = static_cast<uint8_t>(v);
  return true;
}

bool ArrayReader::I64(int64_t* out) {
  const msgpack::object* o = Next();
  if (o == nullptr) return false;
  if (o->type == msgpack::type::NEGATIVE_INTEGER) {
    *out = o->via.i64;
    return true;
  }
  if (o->type == msgpack::type::POSITIVE_INTEGER &&
      o->via.u64 <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    *out = static_cast<int64_t>(o->via.u64);
    return true;
  }
  return ok_ = false;
}

bool ArrayReader::Bool(bool* out) {
  const msgpack::object* o = Next();
  if (o == nullptr || o->type != msgpack::type::BOOLEAN) return ok_ = false;
  *out = o->via.boolean;
  return true;
}

bool ArrayReader::Str(std::string* out) {
  const msgpack::object* o = Next();
  if (o == nullptr) return false;
  // BIN is accepted too: names are bytes, not necessarily UTF-8.
  if (o->type == msgpack::type::STR) {
    out->assign(o->via.str.ptr, o->via.str.size);
    return true;
  }
  if (o->type == msgpack::type::BIN) {
    out->assign(o->via.bin.ptr, o->via.bin.size);
    return true;
  }
  return ok_ = false;
}

void PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void PackShardEntry(Packer& pk, const ShardEntry& entry) {
  // data_bytes came later: records without it keep the old five elements.
  pk.pack_array(entry.data_bytes ? 6 : 5);
  pk.pack_uint32(entry.index);
  pk.pack_uint64(entry.generation);
  pk.pack_uint64(entry.length);
  pk.pack_uint64(entry.checksum);
  pk.pack_array(static_cast<uint32_t>(entry.replicas.size()));
  for (const std::string& r : entry.replicas) PackStr(pk, r);
  if (entry.data_bytes) pk.pack_uint64(*entry.data_bytes);
}

bool UnpackShardEntry(const msgpack::object& obj, ShardEntry* entry) {
  ArrayReader r(obj);
  r.U32(&entry->index);
  r.U64(&entry->generation);
  r.U64(&entry->length);
  r.U64(&entry->checksum);
  const msgpack::object* reps = r.Next();
  if (!r.ok() || reps->type != msgpack::type::ARRAY) return false;
  ArrayReader rr(*reps);
  entry->replicas.resize(rr.remaining());
  for (std::string& s : entry->replicas) {
    if (rr.Str(&s) && s.size() > kMaxNodeIdLength) rr.Fail();
  }
  entry->data_bytes.reset();
  if (r.remaining() > 0) {
    uint64_t data_bytes = 0;
    if (!r.U64(&data_bytes)) return false;
    entry->data_bytes = data_bytes;
  }
  return rr.ok() && r.remaining() == 0;
}

void PackShardKey(Packer& pk, const ShardKey& key) {
  pk.pack_array(3);
  pk.pack_uint64(key.inode);
  pk.pack_uint32(key.index);
  pk.pack_uint64(key.generation);
}

bool UnpackShardKey(const msgpack::object& obj, ShardKey* key) {
  ArrayReader r(obj);
  r.U64(&key->inode);
  r.U32(&key->index);
  r.U64(&key->generation);
  return r.ok();
}

}  // namespace codec

namespace {

using codec::ArrayReader;
using codec::Packer;

// The field list of each op, written once and walked by both the encoder and
// the decoder, so the two cannot disagree on order. Keep in struct order.
template <typename V>
void Fields(V& v, MknodOp& op) {
  v(op.parent), v(op.name), v(op.ino), v(op.type), v(op.mode), v(op.uid), v(op.gid), v(op.rdev),
      v(op.shard_size), v(op.replication_goal), v(op.time_ns);
}
template <typename V>
void Fields(V& v, MkdirOp& op) {
  v(op.parent), v(op.name), v(op.ino), v(op.mode), v(op.uid), v(op.gid), v(op.time_ns);
}
template <typename V>
void Fields(V& v, SymlinkOp& op) {
  v(op.parent), v(op.name), v(op.ino), v(op.target), v(op.uid), v(op.gid), v(op.time_ns);
}
template <typename V>
void Fields(V& v, LinkOp& op) {
  v(op.ino), v(op.parent), v(op.name), v(op.time_ns);
}
template <typename V>
void Fields(V& v, UnlinkOp& op) {
  v(op.parent), v(op.name), v(op.keep_orphan), v(op.time_ns);
}
template <typename V>
void Fields(V& v, RmdirOp& op) {
  v(op.parent), v(op.name), v(op.time_ns);
}
template <typename V>
void Fields(V& v, RenameOp& op) {
  v(op.parent), v(op.name), v(op.new_parent), v(op.new_name), v(op.flags), v(op.keep_orphan),
      v(op.time_ns);
}
template <typename V>
void Fields(V& v, SetattrOp& op) {
  v(op.ino), v(op.mask), v(op.mode), v(op.uid), v(op.gid), v(op.size), v(op.atime_ns),
      v(op.mtime_ns), v(op.time_ns);
}
template <typename V>
void Fields(V& v, SetxattrOp& op) {
  v(op.ino), v(op.name), v(op.value), v(op.flags), v(op.time_ns);
}
template <typename V>
void Fields(V& v, RemovexattrOp& op) {
  v(op.ino), v(op.name), v(op.time_ns);
}
template <typename V>
void Fields(V& v, CommitShardsOp& op) {
  v(op.ino), v(op.shards), v(op.size), v(op.time_ns);
}
template <typename V>
void Fields(V& v, SetReplicationGoalOp& op) {
  v(op.ino), v(op.goal), v(op.time_ns);
}
template <typename V>
void Fields(V& v, AllocateInodesOp& op) {
  v(op.count), v(op.first);
}
template <typename V>
void Fields(V& v, ForgetGarbageOp& op) {
  v(op.keys);
}
template <typename V>
void Fields(V& v, DropOrphanOp& op) {
  v(op.ino), v(op.time_ns);
}
template <typename V>
void Fields(V& v, SetShardReplicasOp& op) {
  v(op.ino), v(op.index), v(op.generation), v(op.replicas), v(op.time_ns);
}

// Counts fields, so the encoder can write the array header first.
struct CountVisitor {
  uint32_t n = 0;
  template <typename T>
  CountVisitor& operator()(const T&) {
    ++n;
    return *this;
  }
};

struct PackVisitor {
  Packer& pk;
  PackVisitor& operator()(uint64_t x) { return pk.pack_uint64(x), *this; }
  PackVisitor& operator()(uint32_t x) { return pk.pack_uint32(x), *this; }
  PackVisitor& operator()(int64_t x) { return pk.pack_int64(x), *this; }
  PackVisitor& operator()(bool x) { return x ? pk.pack_true() : pk.pack_false(), *this; }
  PackVisitor& operator()(FileType x) { return pk.pack_uint8(static_cast<uint8_t>(x)), *this; }
  PackVisitor& operator()(const std::string& x) { return codec::PackStr(pk, x), *this; }
  PackVisitor& operator()(const std::vector<ShardEntry>& x) {
    pk.pack_array(static_cast<uint32_t>(x.size()));
    for (const ShardEntry& e : x) codec::PackShardEntry(pk, e);
    return *this;
  }
  PackVisitor& operator()(const std::vector<ShardKey>& x) {
    pk.pack_array(static_cast<uint32_t>(x.size()));
    for (const ShardKey& k : x) codec::PackShardKey(pk, k);
    return *this;
  }
  PackVisitor& operator()(const std::vector<std::string>& x) {
    pk.pack_array(static_cast<uint32_t>(x.size()));
    for (const std::string& s : x) codec::PackStr(pk, s);
    return *this;
  }
};

struct ReadVisitor {
  ArrayReader& r;
  ReadVisitor& operator()(uint64_t& x) { return r.U64(&x), *this; }
  ReadVisitor& operator()(uint32_t& x) { return r.U32(&x), *this; }
  ReadVisitor& operator()(int64_t& x) { return r.I64(&x), *this; }
  ReadVisitor& operator()(bool& x) { return r.Bool(&x), *this; }
  ReadVisitor& operator()(std::string& x) { return r.Str(&x), *this; }
  ReadVisitor& operator()(FileType& x) {
    uint8_t t = 0;
    // An unknown type number is malformed; Next() past the end marks it so.
    if (r.U8(&t) && !IsValidFileType(t)) {
      r.Fail();
      return *this;
    }
    x = static_cast<FileType>(t);
    return *this;
  }
  template <typename T, bool (*Unpack)(const msgpack::object&, T*)>
  void List(std::vector<T>& x) {
    const msgpack::object* o = r.Next();
    if (o == nullptr) return;
    if (o->type != msgpack::type::ARRAY) {
      r.Fail();
      return;
    }
    x.resize(o->via.array.size);
    for (uint32_t i = 0; i < o->via.array.size; ++i) {
      if (!Unpack(o->via.array.ptr[i], &x[i])) {
        r.Fail();
        return;
      }
    }
  }
  ReadVisitor& operator()(std::vector<ShardEntry>& x) {
    List<ShardEntry, codec::UnpackShardEntry>(x);
    return *this;
  }
  ReadVisitor& operator()(std::vector<ShardKey>& x) {
    List<ShardKey, codec::UnpackShardKey>(x);
    return *this;
  }
  ReadVisitor& operator()(std::vector<std::string>& x) {
    const msgpack::object* o = r.Next();
    if (o == nullptr) return *this;
    ArrayReader items(*o);
    x.resize(items.remaining());
    // Only replica lists are string lists; node ids are bounded as on the
    // wire, and as the snapshot's node table requires.
    for (std::string& s : x) {
      if (items.Str(&s) && s.size() > kMaxNodeIdLength) items.Fail();
    }
    if (!items.ok()) r.Fail();
    return *this;
  }
};

template <size_t I = 0>
bool DecodeKind(size_t kind_index, ArrayReader& r, NamespaceOp* out) {
  if constexpr (I < std::variant_size_v<NamespaceOp>) {
    if (kind_index == I) {
      std::variant_alternative_t<I, NamespaceOp> op;
      ReadVisitor v{r};
      Fields(v, op);
      if (!r.ok()) return false;
      *out = std::move(op);
      return true;
    }
    return DecodeKind<I + 1>(kind_index, r, out);
  } else {
    return false;
  }
}

}  // namespace

std::string_view OpName(const NamespaceOp& op) {
  static constexpr std::string_view kNames[] = {
      "mknod",           "mkdir",          "symlink",       "link",
      "unlink",          "rmdir",          "rename",        "setattr",
      "setxattr",        "removexattr",    "commit_shards", "set_replication_goal",
      "allocate_inodes", "forget_garbage", "drop_orphan",   "set_shard_replicas"};
  static_assert(std::size(kNames) == std::variant_size_v<NamespaceOp>);
  return kNames[op.index()];
}

int64_t* OpTime(NamespaceOp* op) {
  return std::visit(
      [](auto& o) -> int64_t* {
        if constexpr (requires { o.time_ns; }) {
          return &o.time_ns;
        } else {
          return nullptr;
        }
      },
      *op);
}

std::string EncodeOp(const NamespaceOp& op) {
  msgpack::sbuffer buf(64);
  Packer pk(buf);
  std::visit(
      [&](const auto& o) {
        // Fields() walks non-const references; the pack visitor only reads.
        auto& mut = const_cast<std::remove_const_t<std::remove_reference_t<decltype(o)>>&>(o);
        CountVisitor count;
        Fields(count, mut);
        pk.pack_array(count.n + 1);
        pk.pack_uint32(static_cast<uint32_t>(op.index() + 1));
        PackVisitor v{pk};
        Fields(v, mut);
      },
      op);
  return std::string(buf.data(), buf.size());
}

Result<NamespaceOp> DecodeOp(std::string_view bytes) {
  try {
    size_t offset = 0;
    // Every element takes at least one byte, so no honest container claims
    // more elements than there are bytes; the limit stops a forged length from
    // making msgpack-c allocate gigabytes.
    // Nor nested claims that each fit but add up to many times the size.
    const size_t n = bytes.size();
    if (Status claims = CheckClaimedSizes(bytes, 0, 16); !claims.ok()) {
      return Status::Error(ErrorCode::kBadMessage, "undecodable namespace op: " + claims.message());
    }
    msgpack::unpack_limit limit(n, n, n, n, n, 16);
    msgpack::object_handle oh =
        msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
    if (offset != bytes.size()) {
      return Status::Error(ErrorCode::kBadMessage, "trailing bytes after namespace op");
    }
    ArrayReader r(oh.get());
    uint32_t kind = 0;
    if (!r.U32(&kind) || kind == 0 || kind > std::variant_size_v<NamespaceOp>) {
      return Status::Error(ErrorCode::kBadMessage, "unknown namespace op kind");
    }
    NamespaceOp op;
    if (!DecodeKind(kind - 1, r, &op)) {
      return Status::Error(ErrorCode::kBadMessage, "malformed namespace op");
    }
    return op;
  } catch (const std::exception& e) {
    return Status::Error(ErrorCode::kBadMessage,
                         std::string("undecodable namespace op: ") + e.what());
  }
}

}  // namespace shardfs
