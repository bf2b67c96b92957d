// MessagePack field maps: how every message header is written and read.
//
// A header's fields are a MessagePack map from short string keys to values.
// FieldWriter builds one; FieldReader reads one and checks every field's
// presence, type and size, so a typed message's Decode() is a list of checked
// reads and a hostile peer can only ever produce an error value. Nested maps
// and arrays of maps carry structured fields (shard tables, cluster maps).
#pragma once

#include <cstdint>
#include <memory>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/status.h"

namespace shardfs {

// Builds a MessagePack map. Single-threaded; cheap to move.
class FieldWriter {
 public:
  FieldWriter();
  FieldWriter(FieldWriter&&) noexcept;
  FieldWriter& operator=(FieldWriter&&) noexcept;
  ~FieldWriter();

  FieldWriter& U64(std::string_view key, uint64_t value);
  FieldWriter& I64(std::string_view key, int64_t value);
  FieldWriter& Bool(std::string_view key, bool value);
  FieldWriter& Str(std::string_view key, std::string_view value);
  FieldWriter& Bin(std::string_view key, std::string_view value);
  FieldWriter& U64Array(std::string_view key, const std::vector<uint64_t>& values);
  FieldWriter& StrArray(std::string_view key, const std::vector<std::string>& values);
  FieldWriter& Map(std::string_view key, const FieldWriter& value);
  FieldWriter& MapArray(std::string_view key, const std::vector<FieldWriter>& values);

  size_t count() const { return count_; }
  // The encoded map (header + entries).
  std::string Finish() const;
  // Appends the encoded map to a packer's buffer.
  void AppendTo(msgpack::sbuffer* out) const;

 private:
  void Key(std::string_view key);
  std::unique_ptr<msgpack::sbuffer> body_;
  std::unique_ptr<msgpack::packer<msgpack::sbuffer>> packer_;
  uint32_t count_ = 0;
};

// Reads a MessagePack map that lives in a zone owned by someone else (the
// decoded message keeps the zone alive). All reads are checked.
class FieldReader {
 public:
  FieldReader() = default;
  // `object` must be a map; returns kBadMessage otherwise.
  static Result<FieldReader> FromObject(const msgpack::object& object);

  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  Result<uint64_t> U64(std::string_view key) const;
  Result<uint64_t> U64(std::string_view key, uint64_t max) const;
  Result<int64_t> I64(std::string_view key) const;
  Result<bool> Bool(std::string_view key) const;
  // String (or bin) of at most max_len bytes.
  Result<std::string> Str(std::string_view key, size_t max_len) const;
  Result<std::string> Bin(std::string_view key, size_t max_len) const;
  Result<std::vector<uint64_t>> U64Array(std::string_view key, size_t max_items) const;
  Result<std::vector<std::string>> StrArray(std::string_view key, size_t max_items,
                                            size_t max_len) const;
  Result<FieldReader> Map(std::string_view key) const;
  Result<std::vector<FieldReader>> MapArray(std::string_view key, size_t max_items) const;

  // Optional variants: absent -> default, present but wrong -> error.
  Result<uint64_t> OptU64(std::string_view key, uint64_t fallback) const;
  Result<bool> OptBool(std::string_view key, bool fallback) const;
  Result<std::string> OptStr(std::string_view key, size_t max_len, std::string fallback) const;

 private:
  explicit FieldReader(const msgpack::object_map* map) : map_(map) {}
  const msgpack::object* Find(std::string_view key) const;
  Result<const msgpack::object*> Need(std::string_view key) const;
  const msgpack::object_map* map_ = nullptr;
};

}  // namespace shardfs
