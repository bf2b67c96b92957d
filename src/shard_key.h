// ShardKey: the name of one immutable shard object.
//
// A shard object is identified by the file's inode, the shard's index within
// the file and the generation the write produced (DESIGN.md, "Data model").
// The key doubles as the object's file name on a node's disk, so it has one
// canonical text form and a strict parser: a name read back from disk either
// round-trips exactly or is not a shard.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/status.h"

namespace shardfs {

struct ShardKey {
  uint64_t inode = 0;
  uint32_t index = 0;
  uint64_t generation = 0;

  // Orders by inode, then index, then generation: a file's shards sort
  // together, and the generations of one shard sort oldest first.
  friend auto operator<=>(const ShardKey&, const ShardKey&) = default;
  friend bool operator==(const ShardKey&, const ShardKey&) = default;

  // Fixed-width lowercase hex, "iiiiiiiiiiiiiiii.xxxxxxxx.gggggggggggggggg"
  // (16.8.16 digits, 42 characters). Fixed width makes the text form unique
  // per key and makes text order equal key order.
  std::string ToString() const;

  // Accepts exactly the output of ToString(): anything else (other lengths,
  // upper case, signs, missing dots, trailing bytes) is kInvalidArgument.
  static Result<ShardKey> Parse(std::string_view text);
};

inline constexpr size_t kShardKeyTextLength = 16 + 1 + 8 + 1 + 16;

}  // namespace shardfs
