// The node's read path, with a NodeServer in this process so its counters
// tell which thread answered: small gets whose bytes are cached are answered
// on the RpcServer socket thread, and that path still verifies every block
// (a flipped byte is kCorrupt), never gives bytes of a replaced or deleted
// shard, and hands large or uncached reads to a worker.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "nodeserver/node_server.h"
#include "src/node_client.h"
#include "tests/temp_dir.h"
#include "tests/test_data.h"

namespace shardfs {
namespace {

constexpr uint64_t kBlock = kDefaultBlockSize;

class NodeReadPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NodeServer::Options o;
    o.data_dir = dir_.Sub("node");
    o.listen = "tcp://127.0.0.1:0";
    o.capacity_bytes = 1ull << 30;
    o.workers = 2;
    auto node = NodeServer::Start(context_, o);
    ASSERT_TRUE(node.ok()) << node.status().ToString();
    node_ = std::move(node).value();
    ep_ = node_->endpoint();
  }
  void TearDown() override {
    client_.reset();
    if (node_) node_->Stop();
  }

  void PutOk(const ShardKey& key, const std::string& data, bool sync = false) {
    Status st = client_->Put(ep_, key, data, sync, Hash(data));
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  TempDir dir_{"node-read-path-test"};
  zmq::context_t context_;
  std::unique_ptr<NodeServer> node_;
  std::unique_ptr<NodeClient> client_ = std::make_unique<NodeClient>(context_);
  std::string ep_;
  std::mt19937_64 rng_{11};
};

TEST_F(NodeReadPathTest, SmallCachedGetsAreAnsweredOnTheSocketThread) {
  const ShardKey key{1, 0, 1};
  const std::string data = RandomBytes(rng_, 5 * kBlock - 1000);
  ASSERT_NO_FATAL_FAILURE(PutOk(key, data));
  const NodeServer::ReadCounts before = node_->read_counts();
  for (uint64_t offset = 0; offset < data.size(); offset += 4096) {
    auto r = client_->Get(ep_, key, offset, 4096);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->bytes, data.substr(offset, 4096)) << "offset " << offset;
    EXPECT_EQ(r->shard_length, data.size());
  }
  const NodeServer::ReadCounts after = node_->read_counts();
  const uint64_t reads = (data.size() + 4095) / 4096;
  // Just written, so cached: every one answered without a worker.
  EXPECT_EQ(after.inline_gets - before.inline_gets, reads);
  EXPECT_EQ(after.worker_gets, before.worker_gets);
}

TEST_F(NodeReadPathTest, InlineGetOfAFlippedByteIsCorrupt) {
  const ShardKey key{2, 0, 1};
  const std::string data = RandomBytes(rng_, 3 * kBlock);
  ASSERT_NO_FATAL_FAILURE(PutOk(key, data));
  {
    // Through the page cache, as a bad disk read would be seen.
    int fd = ::open(node_->store().ShardPath(key).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const off_t at = static_cast<off_t>(ShardDataOffset(data.size(), kBlock) + kBlock + 500);
    char byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
    byte ^= 0x10;
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }
  const NodeServer::ReadCounts before = node_->read_counts();
  auto bad = client_->Get(ep_, key, kBlock + 8192, 4096);  // same block, other page
  ASSERT_FALSE(bad.ok()) << "the inline read hid the corruption";
  EXPECT_EQ(bad.status().code(), ErrorCode::kCorrupt) << bad.status().ToString();
  auto good = client_->Get(ep_, key, 2 * kBlock, 4096);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->bytes, data.substr(2 * kBlock, 4096));
  const NodeServer::ReadCounts after = node_->read_counts();
  EXPECT_EQ(after.inline_gets - before.inline_gets, 2u) << "not answered on the socket thread";
  EXPECT_EQ(after.worker_gets, before.worker_gets);
}

TEST_F(NodeReadPathTest, LargeGetsGoToAWorker) {
  const ShardKey key{3, 0, 1};
  const std::string data = RandomBytes(rng_, 4 << 20);
  ASSERT_NO_FATAL_FAILURE(PutOk(key, data));
  const NodeServer::ReadCounts before = node_->read_counts();
  auto whole = client_->Get(ep_, key, 0, data.size());
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->bytes.size(), data.size());
  EXPECT_EQ(Hash(whole->bytes), Hash(data));
  // Past the 256 KiB limit by one block (and asked for more than there is).
  auto large = client_->Get(ep_, key, 1 << 20, 256 * 1024 + 1);
  ASSERT_TRUE(large.ok()) << large.status().ToString();
  EXPECT_EQ(large->bytes, data.substr(1 << 20, 256 * 1024 + 1));
  auto tail = client_->Get(ep_, key, data.size() - 300 * 1024, kMaxShardBytes);
  ASSERT_TRUE(tail.ok()) << tail.status().ToString();
  EXPECT_EQ(tail->bytes, data.substr(data.size() - 300 * 1024));
  const NodeServer::ReadCounts after = node_->read_counts();
  EXPECT_EQ(after.worker_gets - before.worker_gets, 3u);
  EXPECT_EQ(after.inline_gets, before.inline_gets);
}

TEST_F(NodeReadPathTest, UncachedGetsGoToAWorker) {
  const ShardKey key{4, 0, 1};
  const std::string data = RandomBytes(rng_, 2 * kBlock);
  ASSERT_NO_FATAL_FAILURE(PutOk(key, data, /*sync=*/true));
  const std::string path = node_->store().ShardPath(key);
  {
    int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    struct stat st;
    ASSERT_EQ(::fstat(fd, &st), 0);
    void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT_NE(map, MAP_FAILED);
    std::vector<unsigned char> resident((st.st_size + 4095) / 4096);
    ASSERT_EQ(::mincore(map, st.st_size, resident.data()), 0);
    ::munmap(map, st.st_size);
    ::close(fd);
    if (std::any_of(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; })) {
      GTEST_SKIP() << "the kernel kept the file's pages";
    }
  }
  const NodeServer::ReadCounts before = node_->read_counts();
  auto r = client_->Get(ep_, key, kBlock, 4096);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bytes, data.substr(kBlock, 4096));
  const NodeServer::ReadCounts after = node_->read_counts();
  EXPECT_EQ(after.worker_gets - before.worker_gets, 1u);
  EXPECT_EQ(after.inline_gets, before.inline_gets);
}

// Reads between replacements and after a delete: the newest bytes, or not
// found; never bytes of an object that is gone.
TEST_F(NodeReadPathTest, ReplacedOrDeletedShardsNeverGiveOldBytes) {
  const ShardKey key{5, 0, 1};
  for (int round = 0; round < 5; ++round) {
    const std::string data = RandomBytes(rng_, kBlock + 100 * round);
    ASSERT_NO_FATAL_FAILURE(PutOk(key, data));
    for (uint64_t offset : {uint64_t{0}, kBlock - 2048}) {
      auto r = client_->Get(ep_, key, offset, 4096);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->bytes, data.substr(offset, 4096)) << "round " << round;
      EXPECT_EQ(r->shard_length, data.size());
    }
  }
  ASSERT_TRUE(client_->Delete(ep_, key).ok());
  auto gone = client_->Get(ep_, key, 0, 4096);
  EXPECT_EQ(gone.status().code(), ErrorCode::kNotFound) << gone.status().ToString();
  EXPECT_GT(node_->read_counts().inline_gets, 0u);
}

}  // namespace
}  // namespace shardfs
