#include "src/shard_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/block_checksum.h"
#include "src/data_extents.h"
#include "src/shard_key.h"

namespace shardfs {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kBlock = kDefaultBlockSize;

std::vector<uint8_t> Pattern(size_t size, uint32_t seed = 1) {
  std::vector<uint8_t> bytes(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : bytes) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return bytes;
}

std::string Slice(const std::vector<uint8_t>& data, uint64_t offset, uint64_t length) {
  if (offset >= data.size()) return "";
  length = std::min<uint64_t>(length, data.size() - offset);
  return std::string(reinterpret_cast<const char*>(data.data()) + offset, length);
}

std::string AsString(const std::vector<uint8_t>& data) {
  return Slice(data, 0, data.size());
}

size_t CountEntries(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

// XORs `mask` into the byte at `offset` of `path`, as a disk would corrupt it.
void FlipByte(const std::string& path, uint64_t offset, uint8_t mask = 0x40) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(offset)), 1);
  byte ^= mask;
  ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

// A fresh directory per test, removed afterwards.
class ShardStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "shard_store_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    root_ = tmpl;
    data_dir_ = root_ + "/data";
  }

  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  ShardStore::Options DefaultOptions() const {
    ShardStore::Options options;
    options.dir = data_dir_;
    options.capacity_bytes = 1ull << 30;
    return options;
  }

  void OpenStore(const ShardStore::Options& options) {
    store_.reset();
    auto opened = ShardStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }
  void OpenStore() { OpenStore(DefaultOptions()); }

  void PutOk(const ShardKey& key, const std::vector<uint8_t>& data, bool sync = false) {
    Status status = store_->Put(key, data, sync, ShardChecksum(data));
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  // Reads and returns the bytes, failing the test on an error.
  std::string ReadOk(const ShardKey& key, uint64_t offset, uint64_t length) {
    std::string out;
    Status status = store_->Read(key, offset, length, &out);
    EXPECT_TRUE(status.ok()) << status.ToString() << " reading [" << offset << ", +" << length
                             << ")";
    return out;
  }

  ErrorCode ReadCode(const ShardKey& key, uint64_t offset, uint64_t length) {
    std::string out = "prefix";
    Status status = store_->Read(key, offset, length, &out);
    if (!status.ok()) {
      EXPECT_EQ(out, "prefix") << "a failed read must not append";
    }
    return status.code();
  }

  std::string TmpDir() const { return data_dir_ + "/tmp"; }
  std::string QuarantineDir() const { return data_dir_ + "/quarantine"; }

  std::string root_;
  std::string data_dir_;
  std::unique_ptr<ShardStore> store_;
};

TEST(ShardKeyTest, ToStringIsFixedWidthHex) {
  ShardKey key{0x1a, 2, 0xabc};
  EXPECT_EQ(key.ToString(), "000000000000001a.00000002.0000000000000abc");
  EXPECT_EQ(key.ToString().size(), kShardKeyTextLength);
}

TEST(ShardKeyTest, ParseRoundTrips) {
  for (ShardKey key :
       {ShardKey{0, 0, 0}, ShardKey{1, 2, 3}, ShardKey{UINT64_MAX, UINT32_MAX, UINT64_MAX},
        ShardKey{0xdeadbeefcafef00dull, 0x12345678u, 0x0123456789abcdefull}}) {
    Result<ShardKey> parsed = ShardKey::Parse(key.ToString());
    ASSERT_TRUE(parsed.ok()) << key.ToString();
    EXPECT_EQ(*parsed, key);
  }
}

TEST(ShardKeyTest, ParseIsStrict) {
  for (std::string_view bad : {
           std::string_view(""),
           std::string_view("1.2.3"),
           std::string_view("000000000000001a.00000002.0000000000000ABC"),   // upper case
           std::string_view("000000000000001a.00000002.0000000000000abc "),  // trailing byte
           std::string_view("000000000000001a.00000002.0000000000000abc.1.2.tmp"),
           std::string_view("000000000000001a-00000002.0000000000000abc"),
           std::string_view("000000000000001a.0000002.00000000000000abc"),  // dots misplaced
           std::string_view("+00000000000001a.00000002.0000000000000abc"),
           std::string_view("0x0000000000001a.00000002.0000000000000abc"),
           std::string_view("000000000000001a.00000002.0000000000000ab\0", 42),
       }) {
    Result<ShardKey> parsed = ShardKey::Parse(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(ShardKeyTest, OrderIsInodeIndexGeneration) {
  EXPECT_LT((ShardKey{1, 9, 9}), (ShardKey{2, 0, 0}));
  EXPECT_LT((ShardKey{1, 1, 9}), (ShardKey{1, 2, 0}));
  EXPECT_LT((ShardKey{1, 1, 1}), (ShardKey{1, 1, 2}));
  EXPECT_EQ((ShardKey{1, 1, 1}), (ShardKey{1, 1, 1}));
  // Text order is key order too.
  EXPECT_LT((ShardKey{1, 0xffffffff, 0}).ToString(), (ShardKey{2, 0, 0}).ToString());
}

TEST(ShardDataOffsetTest, AlignedAfterChecksums) {
  EXPECT_EQ(ShardDataOffset(0, kBlock), 4096u);
  EXPECT_EQ(ShardDataOffset(64ull << 20, kBlock), 12288u);  // 80 + 1024 * 8 rounded up
  EXPECT_EQ(ShardDataOffset(1, 4096) % 4096, 0u);
}

// The space a file takes on disk (holes excluded).
uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

TEST(NonZeroExtentsTest, WholeZeroPagesAreLeftOut) {
  constexpr uint64_t kPage = kHolePageBytes;
  const uint64_t at = 8 * kPage;
  std::vector<uint8_t> bytes(5 * kPage + 100, 0);
  EXPECT_TRUE(NonZeroExtents(bytes, at).empty());
  bytes[kPage + 7] = 1;       // page 1
  bytes[2 * kPage] = 1;       // page 2 joins it
  bytes[5 * kPage + 99] = 1;  // the partial last page counts as a page
  EXPECT_EQ(NonZeroExtents(bytes, at),
            (std::vector<Extent>{{at + kPage, 2 * kPage}, {at + 5 * kPage, 100}}));
  bytes[5 * kPage + 99] = 0;
  EXPECT_EQ(NonZeroExtents(bytes, at), (std::vector<Extent>{{at + kPage, 2 * kPage}}));

  std::vector<uint8_t> data = Pattern(3 * kPage + 1);
  EXPECT_EQ(NonZeroExtents(data, at), (std::vector<Extent>{{at, data.size()}}));
  EXPECT_TRUE(NonZeroExtents({}, at).empty());
}

TEST(NonZeroExtentsTest, AppendJoinsTouchingExtentsAndDropsEmptyOnes) {
  std::vector<Extent> extents;
  AppendExtent(&extents, {0, 4096});
  AppendExtent(&extents, {4096, 100});
  AppendExtent(&extents, {9000, 0});
  AppendExtent(&extents, {8192, 10});
  EXPECT_EQ(extents, (std::vector<Extent>{{0, 4196}, {8192, 10}}));
  EXPECT_EQ(TotalLength(extents), 4206u);
}

TEST_F(ShardStoreTest, PutStatReadDelete) {
  OpenStore();
  const ShardKey key{42, 3, 7};
  std::vector<uint8_t> data = Pattern(3 * kBlock + 100);
  PutOk(key, data, /*sync=*/true);

  Result<ShardInfo> info = store_->Stat(key);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->key, key);
  EXPECT_EQ(info->length, data.size());
  EXPECT_EQ(info->checksum, ShardChecksum(data));
  EXPECT_EQ(ReadOk(key, 0, data.size()), AsString(data));
  EXPECT_TRUE(store_->Verify(key).ok());

  StoreUsage usage = store_->Usage();
  EXPECT_EQ(usage.shard_count, 1u);
  EXPECT_EQ(usage.used_bytes, ShardDataOffset(data.size(), kBlock) + data.size());
  EXPECT_EQ(usage.used_bytes, fs::file_size(store_->ShardPath(key)));
  EXPECT_EQ(usage.capacity_bytes, 1ull << 30);

  ASSERT_TRUE(store_->Delete(key).ok());
  EXPECT_EQ(store_->Stat(key).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ReadCode(key, 0, 10), ErrorCode::kNotFound);
  EXPECT_EQ(store_->Verify(key).code(), ErrorCode::kNotFound);
  EXPECT_EQ(store_->Delete(key).code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(store_->ShardPath(key)));
  usage = store_->Usage();
  EXPECT_EQ(usage.shard_count, 0u);
  EXPECT_EQ(usage.used_bytes, 0u);
}

TEST_F(ShardStoreTest, SyncMakesAnUnsyncedShardDurable) {
  OpenStore();
  const ShardKey key{42, 0, 9};
  PutOk(key, Pattern(kBlock + 1), /*sync=*/false);
  EXPECT_TRUE(store_->Sync(key).ok());
  EXPECT_EQ(store_->Sync(ShardKey{42, 0, 10}).code(), ErrorCode::kNotFound);
  ASSERT_TRUE(store_->Delete(key).ok());
  EXPECT_EQ(store_->Sync(key).code(), ErrorCode::kNotFound);
}

TEST_F(ShardStoreTest, MissingShardIsNotFound) {
  OpenStore();
  const ShardKey key{1, 1, 1};
  EXPECT_EQ(store_->Stat(key).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ReadCode(key, 0, 0), ErrorCode::kNotFound);
  EXPECT_EQ(store_->Delete(key).code(), ErrorCode::kNotFound);
}

TEST_F(ShardStoreTest, EmptyShard) {
  OpenStore();
  const ShardKey key{1, 0, 1};
  PutOk(key, {});
  EXPECT_EQ(ReadOk(key, 0, 100), "");
  EXPECT_EQ(store_->Stat(key)->length, 0u);
  EXPECT_EQ(store_->Stat(key)->checksum, ShardChecksum({}));
  EXPECT_TRUE(store_->Verify(key).ok());
}

// Every shape of range over a shard of `len` bytes (3 blocks and a short
// one), for the read paths that must agree on them.
struct Range {
  uint64_t offset, length;
};
std::vector<Range> RangeShapes(uint64_t len) {
  return {
      {0, 0},                    // empty at start
      {kBlock + 5, 0},           // empty in the middle
      {0, 1},                    // one byte
      {kBlock - 1, 1},           // last byte of a block
      {kBlock, 1},               // first byte of a block
      {len - 1, 1},              // last byte of the shard
      {kBlock, kBlock},          // exactly one block
      {0, kBlock},               // exactly the first block
      {3 * kBlock, 1000},        // exactly the short last block
      {kBlock - 10, 20},         // across a block boundary
      {10, 2 * kBlock + 5},      // across three blocks
      {0, len},                  // whole shard
      {0, UINT64_MAX},           // whole shard, open-ended
      {len - 5, 100},            // past the end: clipped
      {len, 10},                 // at the end: nothing
      {len + 4096, 10},          // after the end: nothing
      {UINT64_MAX, UINT64_MAX},  // no overflow
      {UINT64_MAX - 1, 2},
  };
}

TEST_F(ShardStoreTest, ReadRangeShapes) {
  OpenStore();
  const ShardKey key{5, 0, 1};
  std::vector<uint8_t> data = Pattern(3 * kBlock + 1000, 9);
  const uint64_t len = data.size();
  PutOk(key, data);

  for (Range r : RangeShapes(len)) {
    EXPECT_EQ(ReadOk(key, r.offset, r.length), Slice(data, r.offset, r.length))
        << "range [" << r.offset << ", +" << r.length << ")";
  }

  // Read appends.
  std::string out = "abc";
  ASSERT_TRUE(store_->Read(key, 1, 2, &out).ok());
  EXPECT_EQ(out, "abc" + Slice(data, 1, 2));
}

TEST_F(ShardStoreTest, SmallerBlockSize) {
  ShardStore::Options options = DefaultOptions();
  options.block_size = 4096;
  OpenStore(options);
  const ShardKey key{5, 0, 1};
  std::vector<uint8_t> data = Pattern(10 * 4096 + 1, 4);
  PutOk(key, data);
  EXPECT_EQ(fs::file_size(store_->ShardPath(key)),
            ShardDataOffset(data.size(), 4096) + data.size());
  EXPECT_EQ(ReadOk(key, 4095, 4098), Slice(data, 4095, 4098));
  EXPECT_TRUE(store_->Verify(key).ok());

  // Reopened with another block size, old shards keep theirs.
  store_.reset();
  OpenStore();
  EXPECT_EQ(ReadOk(key, 0, data.size()), AsString(data));
  EXPECT_TRUE(store_->Verify(key).ok());
}

TEST_F(ShardStoreTest, BadOptionsRejected) {
  ShardStore::Options options = DefaultOptions();
  options.block_size = 1000;
  EXPECT_EQ(ShardStore::Open(options).status().code(), ErrorCode::kInvalidArgument);
  options.block_size = 1024;
  EXPECT_EQ(ShardStore::Open(options).status().code(), ErrorCode::kInvalidArgument);
  options = DefaultOptions();
  options.dir = "";
  EXPECT_EQ(ShardStore::Open(options).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(ShardStoreTest, SecondOpenOfSameDirIsBusy) {
  OpenStore();
  EXPECT_EQ(ShardStore::Open(DefaultOptions()).status().code(), ErrorCode::kBusy);
  store_.reset();
  EXPECT_TRUE(ShardStore::Open(DefaultOptions()).ok());
}

TEST_F(ShardStoreTest, PutReplacesExisting) {
  OpenStore();
  const ShardKey key{1, 1, 1};
  std::vector<uint8_t> first = Pattern(2 * kBlock, 1);
  std::vector<uint8_t> second = Pattern(kBlock / 2, 2);
  PutOk(key, first);
  PutOk(key, second);
  EXPECT_EQ(ReadOk(key, 0, UINT64_MAX), AsString(second));
  EXPECT_EQ(store_->Stat(key)->checksum, ShardChecksum(second));
  StoreUsage usage = store_->Usage();
  EXPECT_EQ(usage.shard_count, 1u);
  EXPECT_EQ(usage.used_bytes, fs::file_size(store_->ShardPath(key)));
  EXPECT_EQ(CountEntries(TmpDir()), 0u);
}

TEST_F(ShardStoreTest, ListPagesInKeyOrder) {
  OpenStore();
  std::vector<ShardKey> keys;
  for (uint64_t inode : {1ull, 2ull, 300ull, 1ull << 40}) {
    for (uint32_t index : {0u, 1u, 7u}) {
      for (uint64_t gen : {1ull, 2ull}) keys.push_back({inode, index, gen});
    }
  }
  std::vector<ShardKey> shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(7));
  for (size_t i = 0; i < shuffled.size(); ++i) PutOk(shuffled[i], Pattern(i, uint32_t(i)));
  std::sort(keys.begin(), keys.end());

  std::vector<ShardKey> listed;
  std::optional<ShardKey> after;
  int pages = 0;
  while (true) {
    Result<std::vector<ShardInfo>> page = store_->List(after, 5);
    ASSERT_TRUE(page.ok());
    ASSERT_LE(page->size(), 5u);
    if (page->empty()) break;
    ++pages;
    for (const ShardInfo& info : *page) {
      listed.push_back(info.key);
      EXPECT_EQ(info.length, store_->Stat(info.key)->length);
    }
    after = page->back().key;
  }
  EXPECT_EQ(listed, keys);
  EXPECT_EQ(pages, 5);  // 24 shards in pages of 5

  EXPECT_TRUE(store_->List(std::nullopt, 0)->empty());
  EXPECT_TRUE(store_->List(keys.back(), 10)->empty());
  // `after` need not exist: the page starts at the next key.
  Result<std::vector<ShardInfo>> page = store_->List(ShardKey{2, 1, 5}, 2);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].key, (ShardKey{2, 7, 1}));
  EXPECT_EQ((*page)[1].key, (ShardKey{2, 7, 2}));
}

TEST_F(ShardStoreTest, ReopenRebuildsIndex) {
  OpenStore();
  std::vector<std::vector<uint8_t>> datas;
  for (uint32_t i = 0; i < 10; ++i) {
    datas.push_back(Pattern(i * 10000 + 1, i));
    PutOk({i, i, i}, datas.back());
  }
  ASSERT_TRUE(store_->Delete({3, 3, 3}).ok());
  StoreUsage before = store_->Usage();
  std::vector<ShardInfo> listed_before = *store_->List(std::nullopt, 100);

  OpenStore();
  StoreUsage after = store_->Usage();
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.shard_count, 9u);
  std::vector<ShardInfo> listed_after = *store_->List(std::nullopt, 100);
  ASSERT_EQ(listed_after.size(), listed_before.size());
  for (size_t i = 0; i < listed_after.size(); ++i) {
    EXPECT_EQ(listed_after[i].key, listed_before[i].key);
    EXPECT_EQ(listed_after[i].length, listed_before[i].length);
    EXPECT_EQ(listed_after[i].checksum, listed_before[i].checksum);
  }
  EXPECT_EQ(ReadOk({9, 9, 9}, 0, UINT64_MAX), AsString(datas[9]));
  EXPECT_EQ(CountEntries(QuarantineDir()), 0u);
}

TEST_F(ShardStoreTest, FlippedDataByteFailsOnlyReadsTouchingItsBlock) {
  OpenStore();
  const ShardKey key{8, 0, 1};
  const ShardKey other{8, 1, 1};
  std::vector<uint8_t> data = Pattern(4 * kBlock + 333, 3);
  PutOk(key, data);
  PutOk(other, data);
  const uint64_t bad_offset = 2 * kBlock + 17;  // in block 2
  FlipByte(store_->ShardPath(key), ShardDataOffset(data.size(), kBlock) + bad_offset);

  // Reads touching block 2 fail instead of returning the wrong byte.
  EXPECT_EQ(ReadCode(key, bad_offset, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, 2 * kBlock, kBlock), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, 2 * kBlock + 1000, 1), ErrorCode::kCorrupt);  // same block, not the byte
  EXPECT_EQ(ReadCode(key, kBlock - 1, kBlock + 2), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, 3 * kBlock - 1, 2), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, 0, UINT64_MAX), ErrorCode::kCorrupt);
  // Reads of other blocks still answer the right bytes.
  EXPECT_EQ(ReadOk(key, 0, 2 * kBlock), Slice(data, 0, 2 * kBlock));
  EXPECT_EQ(ReadOk(key, 3 * kBlock, UINT64_MAX), Slice(data, 3 * kBlock, UINT64_MAX));
  EXPECT_EQ(ReadOk(key, 2 * kBlock - 1, 1), Slice(data, 2 * kBlock - 1, 1));
  EXPECT_EQ(ReadOk(key, 3 * kBlock, 1), Slice(data, 3 * kBlock, 1));
  EXPECT_EQ(ReadOk(key, bad_offset, 0), "");

  Status verify = store_->Verify(key);
  EXPECT_EQ(verify.code(), ErrorCode::kCorrupt);
  EXPECT_NE(verify.message().find("block 2"), std::string::npos) << verify.message();
  EXPECT_TRUE(store_->Verify(other).ok());

  // Repair rewrites the replica with a Put.
  PutOk(key, data);
  EXPECT_TRUE(store_->Verify(key).ok());
  EXPECT_EQ(ReadOk(key, 0, UINT64_MAX), AsString(data));
}

TEST_F(ShardStoreTest, FlippedByteInLastShortBlock) {
  OpenStore();
  const ShardKey key{8, 0, 1};
  std::vector<uint8_t> data = Pattern(kBlock + 10, 3);
  PutOk(key, data);
  FlipByte(store_->ShardPath(key), ShardDataOffset(data.size(), kBlock) + kBlock + 9);
  EXPECT_EQ(ReadCode(key, kBlock + 9, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, kBlock, 100), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(key, 0, kBlock), Slice(data, 0, kBlock));
  EXPECT_EQ(store_->Verify(key).code(), ErrorCode::kCorrupt);
}

TEST_F(ShardStoreTest, FlippedBlockChecksumFailsItsBlock) {
  OpenStore();
  const ShardKey key{8, 0, 1};
  std::vector<uint8_t> data = Pattern(3 * kBlock, 3);
  PutOk(key, data);
  // Checksum table entry of block 1.
  FlipByte(store_->ShardPath(key), kShardHeaderSize + 8 * 1 + 3);
  EXPECT_EQ(ReadCode(key, kBlock, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(key, 0, kBlock), Slice(data, 0, kBlock));
  EXPECT_EQ(ReadOk(key, 2 * kBlock, kBlock), Slice(data, 2 * kBlock, kBlock));
  EXPECT_EQ(store_->Verify(key).code(), ErrorCode::kCorrupt);
}

TEST_F(ShardStoreTest, SwappedBlocksFailToVerify) {
  OpenStore();
  const ShardKey key{8, 0, 1};
  std::vector<uint8_t> block = Pattern(kBlock, 3);
  std::vector<uint8_t> data = block;
  data.insert(data.end(), block.begin(), block.end());
  std::vector<uint8_t> other_block = Pattern(kBlock, 4);
  data.insert(data.end(), other_block.begin(), other_block.end());
  PutOk(key, data);
  // Write block 2's bytes over block 0: valid data, wrong place.
  int fd = ::open(store_->ShardPath(key).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, other_block.data(), kBlock, ShardDataOffset(data.size(), kBlock)),
            ssize_t(kBlock));
  ::close(fd);
  EXPECT_EQ(ReadCode(key, 0, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(key, kBlock, 1), Slice(data, kBlock, 1));
}

TEST_F(ShardStoreTest, CorruptHeaderIsCorruptAndQuarantinedAtOpen) {
  OpenStore();
  const ShardKey key{9, 0, 1};
  const ShardKey good{9, 1, 1};
  std::vector<uint8_t> data = Pattern(2 * kBlock, 5);
  PutOk(key, data);
  PutOk(good, data);
  FlipByte(store_->ShardPath(key), 17);  // inside the data length field

  EXPECT_EQ(ReadCode(key, 0, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, 0, 0), ErrorCode::kCorrupt);
  EXPECT_EQ(store_->Verify(key).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(good, 0, 10), Slice(data, 0, 10));

  // At the next Open the file is no shard: moved aside, not indexed.
  OpenStore();
  EXPECT_EQ(store_->Stat(key).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ReadCode(key, 0, 1), ErrorCode::kNotFound);
  EXPECT_EQ(store_->Usage().shard_count, 1u);
  EXPECT_EQ(CountEntries(QuarantineDir()), 1u);
  EXPECT_TRUE(store_->Verify(good).ok());
}

TEST_F(ShardStoreTest, FileHoldingAnotherKeyIsCorrupt) {
  OpenStore();
  const ShardKey key{9, 0, 1};
  const ShardKey other{9, 0, 2};
  std::vector<uint8_t> data = Pattern(1000, 5);
  PutOk(key, data);
  PutOk(other, Pattern(1000, 6));
  // A file copied under the wrong name must not be served as that shard.
  fs::copy_file(store_->ShardPath(key), store_->ShardPath(other),
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(ReadCode(other, 0, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(store_->Verify(other).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(key, 0, 1000), AsString(data));
}

TEST_F(ShardStoreTest, TruncatedFileIsCorrupt) {
  OpenStore();
  const ShardKey key{9, 0, 1};
  std::vector<uint8_t> data = Pattern(3 * kBlock, 5);
  PutOk(key, data);
  fs::resize_file(store_->ShardPath(key), ShardDataOffset(data.size(), kBlock) + kBlock + 5);
  EXPECT_EQ(ReadOk(key, 0, kBlock), Slice(data, 0, kBlock));
  EXPECT_EQ(ReadCode(key, kBlock, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadCode(key, 2 * kBlock, 1), ErrorCode::kCorrupt);
  EXPECT_EQ(store_->Verify(key).code(), ErrorCode::kCorrupt);
}

TEST_F(ShardStoreTest, ExpectedChecksumMismatchStoresNothing) {
  OpenStore();
  const ShardKey key{10, 0, 1};
  std::vector<uint8_t> data = Pattern(kBlock + 1, 5);
  Status status = store_->Put(key, data, false, ShardChecksum(data) ^ 1);
  EXPECT_EQ(status.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(store_->Stat(key).status().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(store_->ShardPath(key)));
  EXPECT_EQ(store_->Usage().used_bytes, 0u);
  EXPECT_EQ(CountEntries(TmpDir()), 0u);

  // A bad replacement leaves the existing object alone.
  PutOk(key, data);
  std::vector<uint8_t> other = Pattern(100, 6);
  EXPECT_EQ(store_->Put(key, other, false, ShardChecksum(data)).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(key, 0, UINT64_MAX), AsString(data));

  // No expected checksum: stored as given.
  EXPECT_TRUE(store_->Put(key, other, false, std::nullopt).ok());
  EXPECT_EQ(ReadOk(key, 0, UINT64_MAX), AsString(other));
}

TEST_F(ShardStoreTest, TooLargeIsRefused) {
  ShardStore::Options options = DefaultOptions();
  options.max_shard_size = 2 * kBlock;
  OpenStore(options);
  std::vector<uint8_t> data = Pattern(2 * kBlock + 1);
  EXPECT_EQ(store_->Put({1, 0, 1}, data, false, std::nullopt).code(), ErrorCode::kTooLarge);
  data.pop_back();
  PutOk({1, 0, 1}, data);
  EXPECT_EQ(store_->PutPatched({1, 0, 2}, {1, 0, 1}, 2 * kBlock + 1, {}, false).code(),
            ErrorCode::kTooLarge);
}

// Applies patches to a copy of base resized to new_length, as PutPatched must.
std::vector<uint8_t> ExpectedPatched(std::vector<uint8_t> base, uint64_t new_length,
                                     const std::vector<ShardPatch>& patches) {
  base.resize(new_length, 0);
  for (const ShardPatch& patch : patches) {
    std::copy(patch.bytes.begin(), patch.bytes.end(), base.begin() + patch.offset);
  }
  return base;
}

class PutPatchedTest : public ShardStoreTest {
 protected:
  void SetUp() override {
    ShardStoreTest::SetUp();
    OpenStore();
    base_data_ = Pattern(kBlock + kBlock / 2, 11);
    PutOk(base_, base_data_);
  }

  // PutPatched, then checks content, Stat and Verify of the result.
  void PatchAndCheck(uint64_t new_length, const std::vector<ShardPatch>& patches) {
    Status status = store_->PutPatched(key_, base_, new_length, patches, false);
    ASSERT_TRUE(status.ok()) << status.ToString();
    std::vector<uint8_t> expected = ExpectedPatched(base_data_, new_length, patches);
    EXPECT_EQ(ReadOk(key_, 0, UINT64_MAX), AsString(expected));
    Result<ShardInfo> info = store_->Stat(key_);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->length, new_length);
    EXPECT_EQ(info->checksum, ShardChecksum(expected));
    EXPECT_TRUE(store_->Verify(key_).ok());
    // The base is untouched.
    EXPECT_EQ(ReadOk(base_, 0, UINT64_MAX), AsString(base_data_));
  }

  const ShardKey base_{20, 0, 1};
  const ShardKey key_{20, 0, 2};
  std::vector<uint8_t> base_data_;
};

TEST_F(PutPatchedTest, CopyWithoutPatches) {
  PatchAndCheck(base_data_.size(), {});
}

TEST_F(PutPatchedTest, GrowZeroFillsAndPatchesTheTail) {
  std::vector<uint8_t> tail = Pattern(100, 1);
  PatchAndCheck(3 * kBlock + 7, {{2 * kBlock + 3, tail}});
}

TEST_F(PutPatchedTest, GrowthAndZeroPatchesTakeNoSpace) {
  std::vector<uint8_t> tail = Pattern(100, 1);
  std::vector<uint8_t> zeros(3 * kBlock, 0);
  PatchAndCheck(4 << 20, {{kBlock, zeros}, {(3 << 20) + 1, tail}});
  // Left: the base's first block and the page with the tail.
  const uint64_t disk_bytes = ShardDataOffset(4 << 20, kBlock) + kBlock + kHolePageBytes;
  EXPECT_LE(AllocatedBytes(store_->ShardPath(key_)), disk_bytes);
  EXPECT_EQ(store_->Stat(key_)->data_bytes, kBlock + kHolePageBytes);
  EXPECT_EQ(store_->Stat(base_)->data_bytes, base_data_.size());
  EXPECT_EQ(store_->Usage().used_bytes,
            disk_bytes + ShardDataOffset(base_data_.size(), kBlock) + base_data_.size());
}

TEST_F(PutPatchedTest, Shrink) {
  std::vector<uint8_t> head = Pattern(10, 2);
  PatchAndCheck(kBlock / 2, {{5, head}});
  PatchAndCheck(0, {});
  PatchAndCheck(kBlock, {});
}

TEST_F(PutPatchedTest, PatchesSpanningBlocksAndOverlapping) {
  std::vector<uint8_t> a = Pattern(kBlock + 20, 3);  // covers block 1 entirely
  std::vector<uint8_t> b = Pattern(50, 4);           // overlaps a: applied later, wins
  std::vector<uint8_t> c = Pattern(1, 5);
  PatchAndCheck(2 * kBlock + 100, {{kBlock - 10, a}, {kBlock + 5, b}, {2 * kBlock + 99, c}});
}

TEST_F(PutPatchedTest, InPlace) {
  std::vector<uint8_t> patch = Pattern(300, 6);
  ASSERT_TRUE(store_->PutPatched(base_, base_, base_data_.size(), {{{100, patch}}}, true).ok());
  base_data_ = ExpectedPatched(base_data_, base_data_.size(), {{100, patch}});
  EXPECT_EQ(ReadOk(base_, 0, UINT64_MAX), AsString(base_data_));
  EXPECT_TRUE(store_->Verify(base_).ok());
  EXPECT_EQ(store_->Usage().shard_count, 1u);
}

TEST_F(PutPatchedTest, CorruptBaseIsCorruptAndStoresNothing) {
  FlipByte(store_->ShardPath(base_), ShardDataOffset(base_data_.size(), kBlock) + kBlock + 1);
  std::vector<uint8_t> patch = Pattern(10, 7);
  EXPECT_EQ(store_->PutPatched(key_, base_, 2 * kBlock, {{{0, patch}}}, false).code(),
            ErrorCode::kCorrupt);
  EXPECT_EQ(store_->Stat(key_).status().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(store_->ShardPath(key_)));
  EXPECT_EQ(CountEntries(TmpDir()), 0u);
  EXPECT_EQ(store_->Usage().shard_count, 1u);

  // A patch that overwrites the whole bad block does not need it.
  std::vector<uint8_t> cover = Pattern(kBlock / 2, 8);
  ASSERT_TRUE(store_->PutPatched(key_, base_, base_data_.size(), {{{kBlock, cover}}}, false).ok());
  EXPECT_EQ(ReadOk(key_, kBlock, UINT64_MAX), AsString(cover));
  EXPECT_TRUE(store_->Verify(key_).ok());
}

TEST_F(PutPatchedTest, CorruptBaseHeader) {
  FlipByte(store_->ShardPath(base_), 3);
  EXPECT_EQ(store_->PutPatched(key_, base_, 10, {}, false).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(CountEntries(TmpDir()), 0u);
}

TEST_F(PutPatchedTest, BadArguments) {
  std::vector<uint8_t> patch = Pattern(10, 7);
  EXPECT_EQ(store_->PutPatched(key_, {99, 0, 1}, 10, {}, false).code(), ErrorCode::kNotFound);
  EXPECT_EQ(store_->PutPatched(key_, base_, 15, {{{6, patch}}}, false).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->PutPatched(key_, base_, 15, {{{UINT64_MAX - 2, patch}}}, false).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->Stat(key_).status().code(), ErrorCode::kNotFound);
  // A patch ending exactly at the new length is fine.
  PatchAndCheck(16, {{6, patch}});
}

TEST_F(ShardStoreTest, CapacityLimitIsNoSpace) {
  const uint64_t length = 100000;
  const uint64_t file_bytes = ShardDataOffset(length, kBlock) + length;
  ShardStore::Options options = DefaultOptions();
  options.capacity_bytes = 3 * file_bytes + file_bytes / 2;
  OpenStore(options);
  for (uint32_t i = 0; i < 3; ++i) PutOk({1, i, 1}, Pattern(length, i));
  std::vector<uint8_t> data = Pattern(length, 9);
  EXPECT_EQ(store_->Put({1, 3, 1}, data, false, std::nullopt).code(), ErrorCode::kNoSpace);
  EXPECT_EQ(store_->PutPatched({1, 3, 1}, {1, 0, 1}, length, {}, false).code(),
            ErrorCode::kNoSpace);
  EXPECT_EQ(store_->Stat({1, 3, 1}).status().code(), ErrorCode::kNotFound);
  StoreUsage usage = store_->Usage();
  EXPECT_EQ(usage.capacity_bytes, options.capacity_bytes);
  EXPECT_EQ(usage.used_bytes, 3 * file_bytes);
  EXPECT_EQ(usage.shard_count, 3u);
  EXPECT_EQ(CountEntries(TmpDir()), 0u);

  // Replacing a shard frees its old bytes, so a full store can still repair.
  PutOk({1, 0, 1}, data);
  // A small shard still fits in the remaining half.
  PutOk({1, 4, 1}, Pattern(1000));
  ASSERT_TRUE(store_->Delete({1, 1, 1}).ok());
  ASSERT_TRUE(store_->Delete({1, 4, 1}).ok());
  PutOk({1, 3, 1}, data);
  EXPECT_EQ(store_->Usage().used_bytes, 3 * file_bytes);
}

// A 4 MiB shard with bytes at its start and 3 MiB in (a sparse file's shard).
std::vector<uint8_t> SparseShardData() {
  std::vector<uint8_t> data(4 << 20, 0);
  std::vector<uint8_t> head = Pattern(5000, 1);  // pages 0 and 1
  std::vector<uint8_t> tail = Pattern(3000, 2);  // page 768
  std::copy(head.begin(), head.end(), data.begin());
  std::copy(tail.begin(), tail.end(), data.begin() + (3 << 20) + 10);
  return data;
}

TEST_F(ShardStoreTest, ZeroPagesOfAShardTakeNoSpace) {
  OpenStore();
  const ShardKey key{5, 0, 1};
  std::vector<uint8_t> data = SparseShardData();
  PutOk(key, data, /*sync=*/true);
  const std::string path = store_->ShardPath(key);
  const uint64_t data_offset = ShardDataOffset(data.size(), kBlock);
  const uint64_t disk_bytes = data_offset + 3 * kHolePageBytes;

  EXPECT_EQ(fs::file_size(path), data_offset + data.size());
  EXPECT_LE(AllocatedBytes(path), disk_bytes);
  EXPECT_EQ(store_->Usage().used_bytes, disk_bytes);
  EXPECT_EQ(store_->Stat(key)->data_bytes, 3 * kHolePageBytes);
  EXPECT_EQ(ReadOk(key, 0, UINT64_MAX), AsString(data));
  EXPECT_EQ(ReadOk(key, 4000, 2 * kBlock), Slice(data, 4000, 2 * kBlock));
  EXPECT_EQ(ReadOk(key, (3 << 20) - 5, 5000), Slice(data, (3 << 20) - 5, 5000));
  EXPECT_TRUE(store_->Verify(key).ok());

  // A bad byte in the data is still found; the holes are checked too.
  FlipByte(path, data_offset + (3 << 20) + 11);
  EXPECT_EQ(ReadCode(key, 3 << 20, 100), ErrorCode::kCorrupt);
  EXPECT_EQ(ReadOk(key, 1 << 20, 100), Slice(data, 1 << 20, 100));
  FlipByte(path, data_offset + (3 << 20) + 11);

  // The index rebuilt at start-up counts the same space.
  OpenStore();
  EXPECT_EQ(store_->Usage().used_bytes, disk_bytes);
  EXPECT_EQ(store_->Stat(key)->data_bytes, 3 * kHolePageBytes);
  EXPECT_EQ(ReadOk(key, 0, UINT64_MAX), AsString(data));
}

TEST_F(ShardStoreTest, DataExtentsLeaveOutTheHolesAndCheckTheBlocksAroundThem) {
  OpenStore();
  const ShardKey key{7, 0, 1};
  std::vector<uint8_t> data = SparseShardData();
  PutOk(key, data);
  // Pages 0-1 ("head") and page 768 (the tail at 3 MiB + 10).
  auto extents = store_->DataExtents(key);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  EXPECT_EQ(*extents, (std::vector<Extent>{{0, 2 * kHolePageBytes}, {3 << 20, kHolePageBytes}}));
  // A shard without holes is one extent.
  const std::vector<uint8_t> dense = Pattern(kBlock + 5);
  PutOk({7, 1, 1}, dense);
  EXPECT_EQ(*store_->DataExtents({7, 1, 1}), (std::vector<Extent>{{0, dense.size()}}));
  EXPECT_EQ(store_->DataExtents({7, 2, 1}).status().code(), ErrorCode::kNotFound);

  // A data page the disk lost (now a hole, reading as zeros) is not
  // reported as a hole: its block no longer matches its checksum.
  const std::string path = store_->ShardPath(key);
  const uint64_t data_offset = ShardDataOffset(data.size(), kBlock);
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        static_cast<off_t>(data_offset + (3 << 20)), kHolePageBytes),
            0)
      << std::strerror(errno);
  ::close(fd);
  EXPECT_EQ(store_->DataExtents(key).status().code(), ErrorCode::kCorrupt);
}

TEST_F(ShardStoreTest, ASparseShardFitsWhereItsLengthWouldNot) {
  ShardStore::Options options = DefaultOptions();
  options.capacity_bytes = 1 << 20;
  OpenStore(options);
  PutOk({6, 0, 1}, SparseShardData());
  PutOk({6, 1, 1}, SparseShardData());
  EXPECT_EQ(store_->Put({6, 2, 1}, Pattern(1 << 20), false, std::nullopt).code(),
            ErrorCode::kNoSpace);
  EXPECT_EQ(store_->Usage().shard_count, 2u);
}

TEST_F(ShardStoreTest, CapacityDefaultsToFileSystemSize) {
  ShardStore::Options options = DefaultOptions();
  options.capacity_bytes = 0;
  OpenStore(options);
  fs::space_info space = fs::space(data_dir_);
  EXPECT_EQ(store_->Usage().capacity_bytes, space.capacity);
}

TEST_F(ShardStoreTest, OpenRemovesLeftoverTempFilesAndIgnoresNonShards) {
  OpenStore();
  const ShardKey good{30, 0, 1};
  std::vector<uint8_t> data = Pattern(2 * kBlock + 5, 12);
  PutOk(good, data);
  const std::string good_path = store_->ShardPath(good);
  const ShardKey half{30, 1, 1};
  const std::string half_path = store_->ShardPath(half);
  const ShardKey misplaced{30, 2, 1};
  PutOk(misplaced, data);
  const std::string misplaced_path = store_->ShardPath(misplaced);
  const std::string right_dir = fs::path(misplaced_path).parent_path();
  const std::string wrong_dir =
      data_dir_ + "/shards/" + (fs::path(right_dir).filename() == "00" ? "01" : "00");
  store_.reset();

  // What a killed writer leaves behind: temporary files, one of them partial.
  {
    std::ofstream(TmpDir() + "/" + half.ToString() + ".123.0.tmp") << "partial shard";
    std::ofstream(TmpDir() + "/garbage") << "x";
  }
  // A shard file cut short (e.g. power lost before an unsynced write hit the
  // disk), a file that is not named like a shard, and a valid shard in the
  // wrong fan-out directory.
  fs::create_directories(fs::path(half_path).parent_path());
  fs::copy_file(good_path, half_path);
  fs::resize_file(half_path, fs::file_size(good_path) / 2);
  const std::string fan_out_dir = fs::path(good_path).parent_path();
  std::ofstream(fan_out_dir + "/not-a-shard") << "hello";
  fs::create_directories(wrong_dir);
  fs::rename(misplaced_path, wrong_dir + "/" + misplaced.ToString());
  std::ofstream(data_dir_ + "/shards/README") << "not a fan-out directory";

  OpenStore();
  EXPECT_EQ(CountEntries(TmpDir()), 0u);
  EXPECT_EQ(store_->Stat(half).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ReadCode(half, 0, 1), ErrorCode::kNotFound);
  EXPECT_EQ(store_->Stat(misplaced).status().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(half_path));
  EXPECT_EQ(CountEntries(QuarantineDir()), 4u);
  std::vector<ShardInfo> listed = *store_->List(std::nullopt, 100);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].key, good);
  EXPECT_EQ(store_->Usage().used_bytes, fs::file_size(good_path));
  EXPECT_EQ(ReadOk(good, 0, UINT64_MAX), AsString(data));

  // The key is free to be written properly.
  PutOk(half, data);
  EXPECT_TRUE(store_->Verify(half).ok());
}

// Runs a child process that Puts 8 MiB shards of inode `inode` in a loop
// (keeping the last two generations) and SIGKILLs it after its second Put
// plus `delay_us`. Returns how many temporary files it left behind.
size_t RunWriterAndKill(const ShardStore::Options& options, uint64_t inode, int delay_us) {
  int ready[2];
  EXPECT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  EXPECT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    auto store = ShardStore::Open(options);
    if (!store.ok()) ::_exit(2);
    std::vector<uint8_t> data = Pattern(8 << 20, 1);
    for (uint64_t gen = 1;; ++gen) {
      // Synced, so most of the loop's time is spent with a temp file open.
      if (!(*store)->Put({inode, 0, gen}, data, true, std::nullopt).ok()) ::_exit(3);
      if (gen > 1) (void)(*store)->Delete({inode, 0, gen - 1});
      if (gen == 2 && ::write(ready[1], "r", 1) != 1) ::_exit(4);
    }
  }
  ::close(ready[1]);
  char byte;
  EXPECT_EQ(::read(ready[0], &byte, 1), 1) << "writer failed before its second Put";
  ::close(ready[0]);
  ::usleep(delay_us);
  ::kill(pid, SIGKILL);
  int wait_status = 0;
  EXPECT_EQ(::waitpid(pid, &wait_status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(wait_status)) << "writer exited on its own: " << wait_status;
  return CountEntries(options.dir + "/tmp");
}

// A writer killed with SIGKILL in the middle of Puts: the reopened store shows
// only whole shards and no temporary files.
TEST_F(ShardStoreTest, KillDuringWritesLeavesNoHalfShard) {
  const ShardStore::Options options = DefaultOptions();
  const uint64_t expected_checksum = ShardChecksum(Pattern(8 << 20, 1));
  int kills_mid_write = 0;
  // Kills land at random points of the write loop; retry until one has
  // caught a write in progress (usually the first or second), checking the
  // store after every kill.
  for (int attempt = 0; attempt < 10 && kills_mid_write == 0; ++attempt) {
    store_.reset();
    if (RunWriterAndKill(options, 77 + attempt, 5000 + 7000 * attempt) > 0) ++kills_mid_write;

    OpenStore(options);
    EXPECT_EQ(CountEntries(TmpDir()), 0u);
    std::vector<ShardInfo> listed = *store_->List(std::nullopt, 100);
    EXPECT_GE(listed.size(), 1u);
    EXPECT_LE(listed.size(), 2u);
    for (const ShardInfo& info : listed) {
      EXPECT_EQ(info.length, 8u << 20);
      EXPECT_EQ(info.checksum, expected_checksum);
      EXPECT_TRUE(store_->Verify(info.key).ok()) << info.key.ToString();
      EXPECT_TRUE(store_->Delete(info.key).ok());
    }
    EXPECT_EQ(CountEntries(QuarantineDir()), 0u);
  }
  RecordProperty("kills_mid_write", kills_mid_write);
}

TEST_F(ShardStoreTest, ConcurrentPutsReadsAndReplacements) {
  OpenStore();
  const ShardKey shared{1000, 0, 1};
  const std::vector<uint8_t> version_a = Pattern(3 * kBlock + 10, 100);
  const std::vector<uint8_t> version_b = Pattern(2 * kBlock + 99, 200);
  PutOk(shared, version_a);

  constexpr int kThreads = 8;
  constexpr int kRounds = 40;
  std::atomic<int> failures{0};
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) < 10) ADD_FAILURE() << what;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int round = 0; round < kRounds; ++round) {
        const ShardKey own{static_cast<uint64_t>(t), static_cast<uint32_t>(round % 5),
                           static_cast<uint64_t>(round)};
        std::vector<uint8_t> data = Pattern(rng() % (3 * kBlock), t * 1000 + round);
        Status put = store_->Put(own, data, round % 7 == 0, ShardChecksum(data));
        if (!put.ok()) fail("put: " + put.ToString());
        uint64_t offset = data.empty() ? 0 : rng() % data.size();
        uint64_t length = rng() % (2 * kBlock);
        std::string got;
        Status read = store_->Read(own, offset, length, &got);
        if (!read.ok() || got != Slice(data, offset, length)) fail("read own: " + read.ToString());

        // The shared shard is replaced while others read it: every read sees
        // one version whole.
        if (t == 0) {
          const auto& next = round % 2 == 0 ? version_b : version_a;
          Status replace = store_->Put(shared, next, false, std::nullopt);
          if (!replace.ok()) fail("replace: " + replace.ToString());
        } else {
          got.clear();
          Status shared_read = store_->Read(shared, 0, UINT64_MAX, &got);
          if (!shared_read.ok() || (got != AsString(version_a) && got != AsString(version_b))) {
            fail("shared read: " + shared_read.ToString());
          }
        }
        if (!store_->Stat(own).ok()) fail("stat");
        if (!store_->List(std::nullopt, 16).ok()) fail("list");
        if (round % 3 == 0 && !store_->Delete(own).ok()) fail("delete");
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(CountEntries(TmpDir()), 0u);

  // The counters agree with the disk.
  uint64_t bytes_on_disk = 0, files_on_disk = 0;
  for (const auto& entry : fs::recursive_directory_iterator(data_dir_ + "/shards")) {
    if (entry.is_regular_file()) {
      bytes_on_disk += entry.file_size();
      ++files_on_disk;
    }
  }
  StoreUsage usage = store_->Usage();
  EXPECT_EQ(usage.used_bytes, bytes_on_disk);
  EXPECT_EQ(usage.shard_count, files_on_disk);
  std::vector<ShardInfo> listed = *store_->List(std::nullopt, 1000);
  for (const ShardInfo& info : listed) {
    EXPECT_TRUE(store_->Verify(info.key).ok()) << info.key.ToString();
  }
}

// A store on a real, small file system (tmpfs of 2 MiB) that runs full.
// Needs root (mount); skipped otherwise.
class FullDiskTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "shard_store_full.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    mount_point_ = tmpl;
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs (" << std::strerror(errno) << "); needs root";
    }
    mounted_ = true;
  }

  void TearDown() override {
    store_.reset();
    if (mounted_) ::umount2(mount_point_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(mount_point_, ec);
  }

  std::string mount_point_;
  bool mounted_ = false;
  std::unique_ptr<ShardStore> store_;
};

TEST_P(FullDiskTest, FullDiskIsCleanNoSpace) {
  ShardStore::Options options;
  options.dir = mount_point_ + "/data";
  // Far above the disk, so the disk itself runs out, not the accounting.
  options.capacity_bytes = 1ull << 30;
  options.preallocate = GetParam();
  auto opened = ShardStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(opened).value();

  const uint64_t length = 300 * 1000;
  std::vector<std::vector<uint8_t>> stored;
  Status status;
  for (uint32_t i = 0; i < 20; ++i) {
    std::vector<uint8_t> data = Pattern(length, i);
    status = store_->Put({1, i, 1}, data, true, ShardChecksum(data));
    if (!status.ok()) break;
    stored.push_back(std::move(data));
  }
  ASSERT_FALSE(status.ok()) << "2 MiB never filled up";
  EXPECT_EQ(status.code(), ErrorCode::kNoSpace) << status.ToString();
  EXPECT_GE(stored.size(), 3u);
  EXPECT_EQ(CountEntries(options.dir + "/tmp"), 0u) << "partial temporary file left behind";

  // A patched copy fails the same clean way.
  EXPECT_EQ(store_->PutPatched({2, 0, 1}, {1, 0, 1}, length, {}, false).code(),
            ErrorCode::kNoSpace);
  EXPECT_EQ(CountEntries(options.dir + "/tmp"), 0u);
  EXPECT_EQ(store_->Stat({2, 0, 1}).status().code(), ErrorCode::kNotFound);

  // Nothing stored before was harmed.
  EXPECT_EQ(store_->Usage().shard_count, stored.size());
  for (uint32_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(store_->Stat({1, i, 1})->checksum, ShardChecksum(stored[i]));
    EXPECT_TRUE(store_->Verify({1, i, 1}).ok());
    std::string got;
    ASSERT_TRUE(store_->Read({1, i, 1}, 0, UINT64_MAX, &got).ok());
    EXPECT_EQ(got, AsString(stored[i]));
  }

  // Freeing space makes room again.
  ASSERT_TRUE(store_->Delete({1, 0, 1}).ok());
  std::vector<uint8_t> data = Pattern(length, 99);
  EXPECT_TRUE(store_->Put({3, 0, 1}, data, true, ShardChecksum(data)).ok());

  // And the store reopens cleanly from the full disk.
  store_.reset();
  opened = ShardStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(opened).value();
  EXPECT_EQ(store_->Usage().shard_count, stored.size());
  EXPECT_EQ(CountEntries(options.dir + "/quarantine"), 0u);
}

INSTANTIATE_TEST_SUITE_P(Preallocate, FullDiskTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? "Preallocated" : "WriteTimeEnospc";
});

std::string RangeString(const ShardRange& range) {
  auto bytes = range.bytes();
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Drops the file's pages from the page cache (they are clean after a synced
// put). False if the kernel kept any: mincore() tells.
bool EvictFromPageCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  struct stat st;
  bool evicted = ::fstat(fd, &st) == 0 && ::fdatasync(fd) == 0 &&
                 ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  if (evicted && st.st_size > 0) {
    void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      evicted = false;
    } else {
      const size_t pages = (st.st_size + 4095) / 4096;
      std::vector<unsigned char> resident(pages);
      evicted =
          ::mincore(map, st.st_size, resident.data()) == 0 &&
          std::none_of(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; });
      ::munmap(map, st.st_size);
    }
  }
  ::close(fd);
  return evicted;
}

// ReadRange and TryReadRangeCached give the same bytes as Read for every
// shape of range, with the length of the object they read.
TEST_F(ShardStoreTest, RangeReadsMatchRead) {
  OpenStore();
  const ShardKey key{6, 0, 1};
  std::vector<uint8_t> data = Pattern(3 * kBlock + 1000, 4);
  const uint64_t len = data.size();
  PutOk(key, data);
  for (auto [offset, length] : RangeShapes(len)) {
    const std::string want = Slice(data, offset, length);
    auto range = store_->ReadRange(key, offset, length);
    ASSERT_TRUE(range.ok()) << range.status().ToString();
    EXPECT_EQ(RangeString(*range), want) << "[" << offset << ", +" << length << ")";
    EXPECT_EQ(range->shard_length, len);
    // Just written, so in the page cache: the cached read answers.
    auto cached = store_->TryReadRangeCached(key, offset, length, UINT64_MAX);
    ASSERT_TRUE(cached.ok()) << cached.status().ToString();
    ASSERT_TRUE(cached->has_value()) << "[" << offset << ", +" << length << ") not served";
    EXPECT_EQ(RangeString(**cached), want) << "[" << offset << ", +" << length << ")";
    EXPECT_EQ((*cached)->shard_length, len);
  }
}

// The cached read never waits for the disk: pages not in the page cache
// make it decline (nullopt), and a blocking read then brings them in.
TEST_F(ShardStoreTest, CachedReadDeclinesWhatIsNotInThePageCache) {
  OpenStore();
  const ShardKey key{7, 0, 1};
  std::vector<uint8_t> data = Pattern(4 * kBlock, 5);
  PutOk(key, data, /*sync=*/true);
  if (!EvictFromPageCache(store_->ShardPath(key))) {
    GTEST_SKIP() << "the kernel kept the file's pages; cannot test an uncached read here";
  }
  auto cached = store_->TryReadRangeCached(key, kBlock, 4096, UINT64_MAX);
  ASSERT_TRUE(cached.ok()) << cached.status().ToString();
  EXPECT_FALSE(cached->has_value()) << "served bytes that were not in the page cache";
  auto range = store_->ReadRange(key, kBlock, 4096);
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_EQ(RangeString(*range), Slice(data, kBlock, 4096));
  cached = store_->TryReadRangeCached(key, kBlock, 4096, UINT64_MAX);
  ASSERT_TRUE(cached.ok()) << cached.status().ToString();
  ASSERT_TRUE(cached->has_value()) << "the blocking read should have cached them";
  EXPECT_EQ(RangeString(**cached), Slice(data, kBlock, 4096));
}

// max_block_bytes bounds the blocks read, not the bytes asked for: a 20-byte
// read across a block edge needs two blocks.
TEST_F(ShardStoreTest, CachedReadIsBoundedByTheBlocksItTouches) {
  OpenStore();
  const ShardKey key{8, 0, 1};
  std::vector<uint8_t> data = Pattern(4 * kBlock, 6);
  PutOk(key, data);
  auto one_block = store_->TryReadRangeCached(key, kBlock - 10, 20, kBlock);
  ASSERT_TRUE(one_block.ok());
  EXPECT_FALSE(one_block->has_value());
  auto two_blocks = store_->TryReadRangeCached(key, kBlock - 10, 20, 2 * kBlock);
  ASSERT_TRUE(two_blocks.ok());
  ASSERT_TRUE(two_blocks->has_value());
  EXPECT_EQ(RangeString(**two_blocks), Slice(data, kBlock - 10, 20));
  EXPECT_EQ((*two_blocks)->buffer_bytes, 2 * kBlock);
}

// A flipped byte is kCorrupt on the cached path as on the blocking one, for
// exactly the reads touching its block; a flipped header byte for every read.
TEST_F(ShardStoreTest, CachedReadOfAFlippedByteIsCorrupt) {
  OpenStore();
  const ShardKey key{9, 0, 1};
  std::vector<uint8_t> data = Pattern(3 * kBlock, 7);
  PutOk(key, data);
  FlipByte(store_->ShardPath(key), ShardDataOffset(data.size(), kBlock) + kBlock + 123);
  auto bad = store_->TryReadRangeCached(key, kBlock + 4096, 4096, UINT64_MAX);
  EXPECT_EQ(bad.status().code(), ErrorCode::kCorrupt) << bad.status().ToString();
  EXPECT_EQ(store_->ReadRange(key, kBlock + 4096, 4096).status().code(), ErrorCode::kCorrupt);
  auto good = store_->TryReadRangeCached(key, 2 * kBlock, 4096, UINT64_MAX);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ASSERT_TRUE(good->has_value());
  EXPECT_EQ(RangeString(**good), Slice(data, 2 * kBlock, 4096));

  FlipByte(store_->ShardPath(key), 20);  // the data length
  EXPECT_EQ(store_->TryReadRangeCached(key, 0, 4096, UINT64_MAX).status().code(),
            ErrorCode::kCorrupt);
  EXPECT_EQ(store_->ReadRange(key, 0, 4096).status().code(), ErrorCode::kCorrupt);
}

// After a replacement a cached read gives the new object, after a delete
// not found (or declines): never the old bytes.
TEST_F(ShardStoreTest, CachedReadAfterReplaceOrDeleteNeverGivesOldBytes) {
  OpenStore();
  const ShardKey key{10, 0, 1};
  std::vector<uint8_t> old_data = Pattern(2 * kBlock, 8);
  std::vector<uint8_t> new_data = Pattern(kBlock + 100, 9);
  PutOk(key, old_data);
  auto first = store_->TryReadRangeCached(key, 0, 4096, UINT64_MAX);
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ(RangeString(**first), Slice(old_data, 0, 4096));

  PutOk(key, new_data);
  auto second = store_->TryReadRangeCached(key, 0, 4096, UINT64_MAX);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  if (second->has_value()) {
    EXPECT_EQ(RangeString(**second), Slice(new_data, 0, 4096));
    EXPECT_EQ((*second)->shard_length, new_data.size());
  }
  auto blocking = store_->ReadRange(key, 0, 4096);
  ASSERT_TRUE(blocking.ok());
  EXPECT_EQ(RangeString(*blocking), Slice(new_data, 0, 4096));

  ASSERT_TRUE(store_->Delete(key).ok());
  auto gone = store_->TryReadRangeCached(key, 0, 4096, UINT64_MAX);
  if (gone.ok()) {
    EXPECT_FALSE(gone->has_value()) << "bytes of a deleted shard";
  } else {
    EXPECT_EQ(gone.status().code(), ErrorCode::kNotFound) << gone.status().ToString();
  }
  EXPECT_EQ(store_->ReadRange(key, 0, 4096).status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace shardfs
