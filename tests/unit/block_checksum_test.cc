#include "src/block_checksum.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace shardfs {
namespace {

std::vector<uint8_t> Pattern(size_t size, uint32_t seed = 1) {
  std::vector<uint8_t> bytes(size);
  uint32_t x = seed;
  for (auto& b : bytes) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return bytes;
}

TEST(BlockChecksumTest, ShardChecksumIsPlainXxh3) {
  std::vector<uint8_t> data = Pattern(1000);
  EXPECT_EQ(ShardChecksum(data), XXH3_64bits(data.data(), data.size()));
  EXPECT_EQ(ShardChecksum({}), XXH3_64bits(nullptr, 0));
}

TEST(BlockChecksumTest, BlockCount) {
  EXPECT_EQ(BlockCount(0, 4096), 0u);
  EXPECT_EQ(BlockCount(1, 4096), 1u);
  EXPECT_EQ(BlockCount(4096, 4096), 1u);
  EXPECT_EQ(BlockCount(4097, 4096), 2u);
  EXPECT_EQ(BlockCount(64ull << 20, kDefaultBlockSize), 1024u);
}

TEST(BlockChecksumTest, OneChecksumPerBlockLastBlockShort) {
  const uint32_t block_size = 4096;
  std::vector<uint8_t> data = Pattern(2 * block_size + 10);
  std::vector<uint64_t> sums = BlockChecksums(data, block_size);
  ASSERT_EQ(sums.size(), 3u);
  EXPECT_EQ(sums[0], BlockChecksum(std::span(data).subspan(0, block_size), 0));
  EXPECT_EQ(sums[1], BlockChecksum(std::span(data).subspan(block_size, block_size), 1));
  EXPECT_EQ(sums[2], BlockChecksum(std::span(data).subspan(2 * block_size, 10), 2));
  EXPECT_TRUE(BlockChecksums({}, block_size).empty());
}

TEST(BlockChecksumTest, BlockChecksumDependsOnPosition) {
  std::vector<uint8_t> block = Pattern(4096);
  EXPECT_NE(BlockChecksum(block, 0), BlockChecksum(block, 1));
}

TEST(BlockChecksumTest, FindBadBlock) {
  const uint32_t block_size = 4096;
  std::vector<uint8_t> data = Pattern(4 * block_size + 1);
  std::vector<uint64_t> sums = BlockChecksums(data, block_size);
  EXPECT_EQ(FindBadBlock(data, block_size, 0, sums), std::nullopt);

  // A sub-range starting at block 2 checks against checksums 2 and up.
  std::span<const uint8_t> tail = std::span(data).subspan(2 * block_size);
  EXPECT_EQ(FindBadBlock(tail, block_size, 2, std::span(sums).subspan(2)), std::nullopt);
  // Checked as if it were at block 1, it does not verify.
  EXPECT_EQ(FindBadBlock(tail, block_size, 1, std::span(sums).subspan(1)), 1u);

  data[3 * block_size + 7] ^= 0x01;
  EXPECT_EQ(FindBadBlock(data, block_size, 0, sums), 3u);
  // Too few checksums for the data: the first block without one is reported.
  data[3 * block_size + 7] ^= 0x01;
  EXPECT_EQ(FindBadBlock(data, block_size, 0, std::span(sums).first(2)), 2u);
}

TEST(BlockChecksumTest, StreamingMatchesOneShot) {
  std::vector<uint8_t> data = Pattern(300000);
  StreamingShardChecksum streaming;
  for (size_t at = 0; at < data.size(); at += 7777) {
    streaming.Update(std::span(data).subspan(at, std::min<size_t>(7777, data.size() - at)));
  }
  EXPECT_EQ(streaming.Digest(), ShardChecksum(data));
  EXPECT_EQ(StreamingShardChecksum().Digest(), ShardChecksum({}));
}

}  // namespace
}  // namespace shardfs
