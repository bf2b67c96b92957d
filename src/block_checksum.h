// Checksums of shard data (xxHash XXH3, 64 bits).
//
// Two kinds, for two jobs:
//  - the whole-shard checksum, XXH3_64bits over all of a shard's bytes. The
//    writing client computes it, the registry records it in the shard table,
//    and any party can recompute it to compare replicas end to end;
//  - block checksums, one per `block_size` slice (the last block may be
//    shorter), kept by the node next to the data so that a read verifies only
//    the blocks it touches instead of the whole shard (DESIGN.md: "a 4 KiB read
//    does not move a whole shard").
// A block checksum is seeded with the block's index, so a block that lands at
// the wrong place (a misdirected write, a copy at the wrong offset) fails to
// verify even though its bytes are intact.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace shardfs {

inline constexpr uint32_t kDefaultBlockSize = 64 * 1024;

// XXH3_64bits of the whole shard.
// The bytes of a string, as the checksum functions take them.
inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

uint64_t ShardChecksum(std::span<const uint8_t> data);

// Checksum of block number `block_index` of a shard, whose bytes are `block`.
uint64_t BlockChecksum(std::span<const uint8_t> block, uint64_t block_index);

// Number of blocks a shard of `length` bytes has: ceil(length / block_size),
// 0 for an empty shard. `block_size` must be > 0.
uint64_t BlockCount(uint64_t length, uint32_t block_size);

// The block checksums of a whole shard, in block order.
std::vector<uint64_t> BlockChecksums(std::span<const uint8_t> data,
                                     uint32_t block_size = kDefaultBlockSize);

// Checks `data`, which holds consecutive blocks of a shard starting at block
// `first_block` (only the last of them may be short), against `expected`
// (one checksum per block in `data`, starting with `first_block`'s). Returns
// the index of the first block that does not match, or nullopt if all match.
// A `data` that needs more checksums than `expected` holds reports the first
// block without one as bad.
std::optional<uint64_t> FindBadBlock(std::span<const uint8_t> data, uint32_t block_size,
                                     uint64_t first_block, std::span<const uint64_t> expected);

// Computes ShardChecksum() of data handed over in pieces, so a shard that is
// produced block by block (a patched copy) never has to be in memory whole.
class StreamingShardChecksum {
 public:
  StreamingShardChecksum();
  StreamingShardChecksum(const StreamingShardChecksum&) = delete;
  StreamingShardChecksum& operator=(const StreamingShardChecksum&) = delete;

  void Update(std::span<const uint8_t> bytes);
  // The checksum of everything passed to Update() so far.
  uint64_t Digest() const;

 private:
  struct StateDeleter {
    void operator()(XXH3_state_t* state) const { XXH3_freeState(state); }
  };
  std::unique_ptr<XXH3_state_t, StateDeleter> state_;
};

}  // namespace shardfs
