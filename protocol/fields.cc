#include "protocol/fields.h"

namespace shardfs {
namespace {

Status Bad(std::string_view key, std::string_view what) {
  return Status::Error(ErrorCode::kBadMessage,
                       "field '" + std::string(key) + "' " + std::string(what));
}

}  // namespace

FieldWriter::FieldWriter()
    // Small first: a readdir reply builds one writer per entry, and msgpack's
    // default 8 KiB start made each of them a page-faulting allocation.
    : body_(std::make_unique<msgpack::sbuffer>(64)),
      packer_(std::make_unique<msgpack::packer<msgpack::sbuffer>>(*body_)) {}
FieldWriter::FieldWriter(FieldWriter&&) noexcept = default;
FieldWriter& FieldWriter::operator=(FieldWriter&&) noexcept = default;
FieldWriter::~FieldWriter() = default;

void FieldWriter::Key(std::string_view key) {
  packer_->pack_str(static_cast<uint32_t>(key.size()));
  packer_->pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
  ++count_;
}

FieldWriter& FieldWriter::U64(std::string_view key, uint64_t value) {
  Key(key);
  packer_->pack_uint64(value);
  return *this;
}

FieldWriter& FieldWriter::I64(std::string_view key, int64_t value) {
  Key(key);
  packer_->pack_int64(value);
  return *this;
}

FieldWriter& FieldWriter::Bool(std::string_view key, bool value) {
  Key(key);
  if (value) {
    packer_->pack_true();
  } else {
    packer_->pack_false();
  }
  return *this;
}

FieldWriter& FieldWriter::Str(std::string_view key, std::string_view value) {
  Key(key);
  packer_->pack_str(static_cast<uint32_t>(value.size()));
  packer_->pack_str_body(value.data(), static_cast<uint32_t>(value.size()));
  return *this;
}

FieldWriter& FieldWriter::Bin(std::string_view key, std::string_view value) {
  Key(key);
  packer_->pack_bin(static_cast<uint32_t>(value.size()));
  packer_->pack_bin_body(value.data(), static_cast<uint32_t>(value.size()));
  return *this;
}

FieldWriter& FieldWriter::U64Array(std::string_view key, const std::vector<uint64_t>& values) {
  Key(key);
  packer_->pack_array(static_cast<uint32_t>(values.size()));
  for (uint64_t v : values) packer_->pack_uint64(v);
  return *this;
}

FieldWriter& FieldWriter::StrArray(std::string_view key, const std::vector<std::string>& values) {
  Key(key);
  packer_->pack_array(static_cast<uint32_t>(values.size()));
  for (const auto& v : values) {
    packer_->pack_str(static_cast<uint32_t>(v.size()));
    packer_->pack_str_body(v.data(), static_cast<uint32_t>(v.size()));
  }
  return *this;
}

FieldWriter& FieldWriter::Map(std::string_view key, const FieldWriter& value) {
  Key(key);
  value.AppendTo(body_.get());
  return *this;
}

FieldWriter& FieldWriter::MapArray(std::string_view key, const std::vector<FieldWriter>& values) {
  Key(key);
  packer_->pack_array(static_cast<uint32_t>(values.size()));
  for (const auto& v : values) v.AppendTo(body_.get());
  return *this;
}

void FieldWriter::AppendTo(msgpack::sbuffer* out) const {
  msgpack::packer<msgpack::sbuffer> head(*out);
  head.pack_map(count_);
  out->write(body_->data(), body_->size());
}

std::string FieldWriter::Finish() const {
  msgpack::sbuffer out(body_->size() + 8);
  AppendTo(&out);
  return std::string(out.data(), out.size());
}

Result<FieldReader> FieldReader::FromObject(const msgpack::object& object) {
  if (object.type != msgpack::type::MAP) {
    return Status::Error(ErrorCode::kBadMessage, "fields are not a map");
  }
  return FieldReader(&object.via.map);
}

const msgpack::object* FieldReader::Find(std::string_view key) const {
  if (map_ == nullptr) return nullptr;
  for (uint32_t i = 0; i < map_->size; ++i) {
    const msgpack::object& k = map_->ptr[i].key;
    if (k.type == msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == key) {
      return &map_->ptr[i].val;
    }
  }
  return nullptr;
}

Result<const msgpack::object*> FieldReader::Need(std::string_view key) const {
  const msgpack::object* o = Find(key);
  if (o == nullptr) return Bad(key, "is missing");
  return o;
}

Result<uint64_t> FieldReader::U64(std::string_view key) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type != msgpack::type::POSITIVE_INTEGER) return Bad(key, "is not an unsigned integer");
  return o->via.u64;
}

Result<uint64_t> FieldReader::U64(std::string_view key, uint64_t max) const {
  SHARDFS_ASSIGN_OR_RETURN(uint64_t v, U64(key));
  if (v > max) return Bad(key, "is out of range");
  return v;
}

Result<int64_t> FieldReader::I64(std::string_view key) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type == msgpack::type::NEGATIVE_INTEGER) return o->via.i64;
  if (o->type == msgpack::type::POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
    return static_cast<int64_t>(o->via.u64);
  }
  return Bad(key, "is not a signed integer");
}

Result<bool> FieldReader::Bool(std::string_view key) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type != msgpack::type::BOOLEAN) return Bad(key, "is not a boolean");
  return o->via.boolean;
}

Result<std::string> FieldReader::Str(std::string_view key, size_t max_len) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type == msgpack::type::STR) {
    if (o->via.str.size > max_len) return Bad(key, "is too long");
    return std::string(o->via.str.ptr, o->via.str.size);
  }
  if (o->type == msgpack::type::BIN) {
    if (o->via.bin.size > max_len) return Bad(key, "is too long");
    return std::string(o->via.bin.ptr, o->via.bin.size);
  }
  return Bad(key, "is not a string");
}

Result<std::string> FieldReader::Bin(std::string_view key, size_t max_len) const {
  return Str(key, max_len);
}

Result<std::vector<uint64_t>> FieldReader::U64Array(std::string_view key, size_t max_items) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type != msgpack::type::ARRAY) return Bad(key, "is not an array");
  if (o->via.array.size > max_items) return Bad(key, "has too many items");
  std::vector<uint64_t> out;
  out.reserve(o->via.array.size);
  for (uint32_t i = 0; i < o->via.array.size; ++i) {
    const msgpack::object& item = o->via.array.ptr[i];
    if (item.type != msgpack::type::POSITIVE_INTEGER) return Bad(key, "has a non-integer item");
    out.push_back(item.via.u64);
  }
  return out;
}

Result<std::vector<std::string>> FieldReader::StrArray(std::string_view key, size_t max_items,
                                                       size_t max_len) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type != msgpack::type::ARRAY) return Bad(key, "is not an array");
  if (o->via.array.size > max_items) return Bad(key, "has too many items");
  std::vector<std::string> out;
  out.reserve(o->via.array.size);
  for (uint32_t i = 0; i < o->via.array.size; ++i) {
    const msgpack::object& item = o->via.array.ptr[i];
    if (item.type != msgpack::type::STR) return Bad(key, "has a non-string item");
    if (item.via.str.size > max_len) return Bad(key, "has a too long item");
    out.emplace_back(item.via.str.ptr, item.via.str.size);
  }
  return out;
}

Result<FieldReader> FieldReader::Map(std::string_view key) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type != msgpack::type::MAP) return Bad(key, "is not a map");
  return FieldReader(&o->via.map);
}

Result<std::vector<FieldReader>> FieldReader::MapArray(std::string_view key,
                                                       size_t max_items) const {
  SHARDFS_ASSIGN_OR_RETURN(const msgpack::object* o, Need(key));
  if (o->type != msgpack::type::ARRAY) return Bad(key, "is not an array");
  if (o->via.array.size > max_items) return Bad(key, "has too many items");
  std::vector<FieldReader> out;
  out.reserve(o->via.array.size);
  for (uint32_t i = 0; i < o->via.array.size; ++i) {
    const msgpack::object& item = o->via.array.ptr[i];
    if (item.type != msgpack::type::MAP) return Bad(key, "has a non-map item");
    out.push_back(FieldReader(&item.via.map));
  }
  return out;
}

Result<uint64_t> FieldReader::OptU64(std::string_view key, uint64_t fallback) const {
  if (!Has(key)) return fallback;
  return U64(key);
}

Result<bool> FieldReader::OptBool(std::string_view key, bool fallback) const {
  if (!Has(key)) return fallback;
  return Bool(key);
}

Result<std::string> FieldReader::OptStr(std::string_view key, size_t max_len,
                                        std::string fallback) const {
  if (!Has(key)) return fallback;
  return Str(key, max_len);
}

}  // namespace shardfs
