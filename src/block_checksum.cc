#include "src/block_checksum.h"

#include <algorithm>
#include <cstdlib>

namespace shardfs {

uint64_t ShardChecksum(std::span<const uint8_t> data) {
  return XXH3_64bits(data.data(), data.size());
}

uint64_t BlockChecksum(std::span<const uint8_t> block, uint64_t block_index) {
  return XXH3_64bits_withSeed(block.data(), block.size(), block_index);
}

uint64_t BlockCount(uint64_t length, uint32_t block_size) {
  return length / block_size + (length % block_size != 0 ? 1 : 0);
}

std::vector<uint64_t> BlockChecksums(std::span<const uint8_t> data, uint32_t block_size) {
  std::vector<uint64_t> sums;
  sums.reserve(BlockCount(data.size(), block_size));
  for (uint64_t start = 0, index = 0; start < data.size(); start += block_size, ++index) {
    size_t len = std::min<uint64_t>(block_size, data.size() - start);
    sums.push_back(BlockChecksum(data.subspan(start, len), index));
  }
  return sums;
}

std::optional<uint64_t> FindBadBlock(std::span<const uint8_t> data, uint32_t block_size,
                                     uint64_t first_block, std::span<const uint64_t> expected) {
  for (uint64_t start = 0, i = 0; start < data.size(); start += block_size, ++i) {
    if (i >= expected.size()) return first_block + i;
    size_t len = std::min<uint64_t>(block_size, data.size() - start);
    if (BlockChecksum(data.subspan(start, len), first_block + i) != expected[i]) {
      return first_block + i;
    }
  }
  return std::nullopt;
}

StreamingShardChecksum::StreamingShardChecksum() : state_(XXH3_createState()) {
  // Out of memory for ~600 bytes: nothing sensible is left to do, as with a
  // failed operator new.
  if (state_ == nullptr) std::abort();
  XXH3_64bits_reset(state_.get());
}

void StreamingShardChecksum::Update(std::span<const uint8_t> bytes) {
  XXH3_64bits_update(state_.get(), bytes.data(), bytes.size());
}

uint64_t StreamingShardChecksum::Digest() const {
  return XXH3_64bits_digest(state_.get());
}

}  // namespace shardfs
