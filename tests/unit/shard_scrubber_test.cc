// ShardScrubber over a real ShardStore in a temporary directory: it finds
// exactly the shard whose file was corrupted on disk, passes again after the
// period, keeps to its rate, skips shards deleted during the walk, and stops
// promptly however slow its rate is.
#include "nodeserver/shard_scrubber.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

#include "src/block_checksum.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_data.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// XORs a bit into the byte at `offset` of `path`, as a disk would corrupt it.
void FlipByte(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(offset)), 1);
  byte ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

// What on_bad was called with; written on the scrubber's thread.
class BadShards {
 public:
  ShardScrubber::BadShardFn Callback() {
    return [this](const ShardKey& key, const Status& status) {
      std::lock_guard<std::mutex> lock(mu_);
      keys_.push_back(key);
      codes_.push_back(status.code());
    };
  }
  std::vector<ShardKey> keys() const {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_;
  }
  std::vector<ErrorCode> codes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return codes_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<ShardKey> keys_;
  std::vector<ErrorCode> codes_;
};

class ShardScrubberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ShardStore::Options options;
    options.dir = dir_.Sub("data");
    options.capacity_bytes = 1ull << 30;
    auto opened = ShardStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  // `count` shards of `size` random bytes, keys (1, i, 1).
  void PutShards(size_t count, size_t size) {
    std::mt19937_64 rng(7);
    for (size_t i = 0; i < count; ++i) {
      const std::string data = RandomBytes(rng, size);
      const ShardKey key{1, static_cast<uint32_t>(i), 1};
      Status st = store_->Put(key, {reinterpret_cast<const uint8_t*>(data.data()), data.size()},
                              false, Hash(data));
      ASSERT_TRUE(st.ok()) << st.ToString();
      keys_.push_back(key);
    }
  }

  TempDir dir_{"shard-scrubber-test"};
  std::unique_ptr<ShardStore> store_;
  std::vector<ShardKey> keys_;
};

TEST_F(ShardScrubberTest, FindsExactlyTheCorruptShardEveryPass) {
  constexpr size_t kSize = 200 * 1000;  // four blocks, the last one short
  ASSERT_NO_FATAL_FAILURE(PutShards(20, kSize));
  const ShardKey bad = keys_[7];
  ASSERT_NO_FATAL_FAILURE(
      FlipByte(store_->ShardPath(bad), ShardDataOffset(kSize, kDefaultBlockSize) + 150 * 1000));

  BadShards found;
  ShardScrubber::Options options;
  options.bytes_per_second = 1ull << 30;
  options.period = 1s;
  ShardScrubber scrubber(store_.get(), options, found.Callback());
  const auto start = Clock::now();
  scrubber.Start();
  ASSERT_TRUE(WaitUntil([&] { return scrubber.passes() >= 2; }, 20s, 10ms));
  const auto elapsed = Clock::now() - start;
  scrubber.Stop();

  // The second pass waited for the period since the first began.
  EXPECT_GE(elapsed, 900ms);
  const auto keys = found.keys();
  ASSERT_GE(keys.size(), 2u);
  for (const auto& key : keys) EXPECT_EQ(key, bad) << key.ToString();
  for (ErrorCode code : found.codes()) EXPECT_EQ(code, ErrorCode::kCorrupt);
  EXPECT_EQ(scrubber.bad_found(), keys.size());
  EXPECT_GE(scrubber.shards_checked(), 40u);
  EXPECT_GE(scrubber.bytes_checked(), 40u * kSize);
  EXPECT_EQ(scrubber.shards_checked() * kSize, scrubber.bytes_checked());
}

TEST_F(ShardScrubberTest, StopIsPromptAtASlowRate) {
  ASSERT_NO_FATAL_FAILURE(PutShards(20, 64 * 1024));
  ShardScrubber::Options options;
  options.bytes_per_second = 1;  // the first shard alone "needs" 18 hours
  options.period = 1s;
  BadShards found;
  ShardScrubber scrubber(store_.get(), options, found.Callback());
  scrubber.Start();
  ASSERT_TRUE(WaitUntil([&] { return scrubber.shards_checked() >= 1; }, 10s, 10ms));
  std::this_thread::sleep_for(100ms);
  const auto start = Clock::now();
  scrubber.Stop();
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_EQ(scrubber.shards_checked(), 1u);
  EXPECT_EQ(scrubber.passes(), 0u);
  EXPECT_TRUE(found.keys().empty());
}

TEST_F(ShardScrubberTest, KeepsToItsRate) {
  constexpr size_t kSize = 256 * 1024;
  ASSERT_NO_FATAL_FAILURE(PutShards(10, kSize));  // 2.5 MiB
  ShardScrubber::Options options;
  options.bytes_per_second = 5ull << 20;  // so a pass takes at least 0.5 s
  options.period = 3600s;
  BadShards found;
  ShardScrubber scrubber(store_.get(), options, found.Callback());
  const auto start = Clock::now();
  scrubber.Start();
  ASSERT_TRUE(WaitUntil([&] { return scrubber.passes() >= 1; }, 30s, 5ms));
  const auto elapsed = Clock::now() - start;
  scrubber.Stop();
  // Only a lower bound: a busy machine may make the pass slower, never faster.
  EXPECT_GE(elapsed, 450ms);
  EXPECT_EQ(scrubber.shards_checked(), 10u);
  EXPECT_EQ(scrubber.bytes_checked(), 10u * kSize);
  EXPECT_TRUE(found.keys().empty());
}

TEST_F(ShardScrubberTest, ShardsDeletedDuringTheWalkAreNotErrors) {
  constexpr size_t kSize = 64 * 1024;
  ASSERT_NO_FATAL_FAILURE(PutShards(10, kSize));
  ShardScrubber::Options options;
  options.bytes_per_second = 4 * kSize;  // a quarter second per shard
  options.period = 3600s;
  BadShards found;
  ShardScrubber scrubber(store_.get(), options, found.Callback());
  scrubber.Start();
  ASSERT_TRUE(WaitUntil([&] { return scrubber.shards_checked() >= 1; }, 10s, 5ms));
  // The walk listed them already; it meets them again only as missing.
  for (size_t i = 5; i < keys_.size(); ++i) ASSERT_TRUE(store_->Delete(keys_[i]).ok());
  ASSERT_TRUE(WaitUntil([&] { return scrubber.passes() >= 1; }, 30s, 10ms));
  scrubber.Stop();
  EXPECT_EQ(scrubber.shards_checked(), 5u);
  EXPECT_EQ(scrubber.bad_found(), 0u);
  EXPECT_TRUE(found.keys().empty());
}

TEST_F(ShardScrubberTest, RateZeroStartsNothing) {
  ASSERT_NO_FATAL_FAILURE(PutShards(2, 1000));
  ShardScrubber::Options options;
  options.bytes_per_second = 0;
  BadShards found;
  ShardScrubber scrubber(store_.get(), options, found.Callback());
  scrubber.Start();
  std::this_thread::sleep_for(200ms);
  scrubber.Stop();
  EXPECT_EQ(scrubber.shards_checked(), 0u);
  EXPECT_EQ(scrubber.passes(), 0u);
}

}  // namespace
}  // namespace shardfs
