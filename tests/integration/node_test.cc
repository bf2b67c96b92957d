// shardfs-node end to end: real node processes on loopback, real clients.
//
// Each test starts the built `shardfs-node` binary on a free loopback port
// over a fresh data directory and talks to it with NodeClient, the same code
// mounts and the registry use. What is checked here is what only the whole
// program can show: many concurrent clients, corruption found on disk,
// shutdown on SIGTERM, a stable identity across restarts, and hedged reads
// over two nodes when one of them hangs or dies. Crashes, full disks and
// hostile input are in tests/fault/node_fault_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "protocol/node_messages.h"
#include "src/block_checksum.h"
#include "src/node_client.h"
#include "src/shard_store.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_data.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The on-disk file of `key` under a node's data dir. The fan-out directory
// is a private hash of the key, so it is found by looking, not computed.
std::string FindShardFile(const std::string& data_dir, const ShardKey& key) {
  std::error_code ec;
  for (const auto& fan_out : std::filesystem::directory_iterator(data_dir + "/shards", ec)) {
    std::string candidate = fan_out.path().string() + "/" + key.ToString();
    if (std::filesystem::exists(candidate)) return candidate;
  }
  return "";
}

class NodeTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Logs of every node this test started, to see why it failed.
    if (!HasFailure()) return;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path(), ec)) {
      if (entry.path().extension() != ".log") continue;
      std::string log = ReadFile(entry.path().string());
      if (log.size() > 8000) log = "...\n" + log.substr(log.size() - 8000);
      std::cerr << "---- " << entry.path().filename().string() << " ----\n" << log << "\n";
    }
  }

  // Starts shardfs-node on `port` over `data_dir` and waits until it answers
  // a ping.
  void StartNode(DaemonProcess* out, const std::string& data_dir, uint16_t port,
                 const std::string& log_name) {
    unsetenv("SHARDFS_REGISTRY");  // would point the node at a registry
    DaemonProcess::Options o;
    // A cluster of its own and an unused beacon port: the node must not join
    // a registry that another test runs on this machine.
    o.argv = {BuildPath("nodeserver/shardfs-node"),
              "--data",
              data_dir,
              "--listen",
              Endpoint(port),
              "--log-level",
              "debug",
              "--cluster",
              "node-test-" + std::to_string(getpid()),
              "--beacon-port",
              std::to_string(FreeUdpPort()),
              "--key",
              key_.path()};
    o.log_path = dir_.Sub(log_name);
    auto p = DaemonProcess::Start(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    *out = std::move(p).value();
    // Long enough for a connection's CURVE handshake on a loaded machine: a
    // shorter wait gave up on each new connection before it was made, for
    // the whole 15 s (seen once while the suites ran side by side).
    NodeClient::Options quick;
    quick.attempt_timeout = 2s;
    quick.attempts = 1;
    NodeClient probe(context_, quick);
    bool up = WaitUntil([&] { return !out->Running() || probe.Ping(Endpoint(port)).ok(); }, 15s);
    ASSERT_TRUE(out->Running()) << "shardfs-node exited at start:\n" << out->ReadLog();
    ASSERT_TRUE(up) << "shardfs-node does not answer pings:\n" << out->ReadLog();
  }

  TempDir dir_{"node-test"};
  TestKey key_{dir_.Sub("cluster.key")};  // the nodes' and this process's
  zmq::context_t context_;
};

// Collects failures from worker threads, which must not use ASSERT_*.
class ErrorLog {
 public:
  void Add(std::string message) {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    if (messages_.size() < 20) messages_.push_back(std::move(message));
  }
  size_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::string Summary() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = std::to_string(count_) + " failures:";
    for (const auto& m : messages_) out += "\n  " + m;
    return out;
  }

 private:
  mutable std::mutex mu_;
  size_t count_ = 0;
  std::vector<std::string> messages_;
};

// 10,000 shards from 8 concurrent clients (half of them sharing one
// NodeClient, as a mount's threads do), each read back by another thread and
// checked against the hash of what was put; then the inventory and the
// node's counters must agree with what was written.
TEST_F(NodeTest, TenThousandShardsFromEightClients) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  DaemonProcess node;
  ASSERT_NO_FATAL_FAILURE(StartNode(&node, dir_.Sub("data"), port, "node.log"));
  const std::string ep = Endpoint(port);

  constexpr size_t kShards = 10000;
  constexpr size_t kThreads = 8;
  constexpr size_t kBigShard = 4u << 20;
  auto key_of = [](size_t i) {
    return ShardKey{1000 + i / 100, static_cast<uint32_t>(i % 100), 7 + i % 3};
  };
  std::vector<uint64_t> hashes(kShards);
  std::vector<uint64_t> lengths(kShards);
  ErrorLog errors;
  std::atomic<size_t> big_shards{0};

  NodeClient shared(context_);
  auto run = [&](auto&& body) {
    std::vector<std::thread> threads;
    for (size_t t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Odd threads have a client of their own; even ones share one.
        NodeClient own(context_);
        body(t, t % 2 == 1 ? own : shared);
      });
    }
    for (auto& th : threads) th.join();
  };

  const auto put_start = Clock::now();
  run([&](size_t t, NodeClient& client) {
    std::mt19937_64 rng(t);
    for (size_t i = t; i < kShards; i += kThreads) {
      // Every 1250th shard is a full-size 4 MiB one; the rest 1..64 KiB.
      size_t size = i % 1250 == 3 ? kBigShard : 1 + rng() % (64 * 1024);
      if (size == kBigShard) ++big_shards;
      std::string data = RandomBytes(rng, size);
      hashes[i] = Hash(data);
      lengths[i] = size;
      Status st = client.Put(ep, key_of(i), data, /*sync=*/false, hashes[i]);
      if (!st.ok()) errors.Add("put " + key_of(i).ToString() + ": " + st.ToString());
    }
  });
  const auto put_time = Clock::now() - put_start;
  ASSERT_EQ(errors.count(), 0u) << errors.Summary();
  ASSERT_EQ(big_shards.load(), 8u);

  // Each thread reads what another one wrote, whole and as a random range
  // that must equal the same slice of the whole read.
  const auto get_start = Clock::now();
  run([&](size_t t, NodeClient& client) {
    std::mt19937_64 rng(100 + t);
    for (size_t i = (t + 3) % kThreads; i < kShards; i += kThreads) {
      auto whole = client.Get(ep, key_of(i), 0, kMaxShardBytes);
      if (!whole.ok()) {
        errors.Add("get " + key_of(i).ToString() + ": " + whole.status().ToString());
        continue;
      }
      if (whole->bytes.size() != lengths[i] || whole->shard_length != lengths[i] ||
          Hash(whole->bytes) != hashes[i]) {
        errors.Add("get " + key_of(i).ToString() + ": wrong bytes");
        continue;
      }
      uint64_t offset = rng() % lengths[i];
      uint64_t length = 1 + rng() % 8192;
      auto part = client.Get(ep, key_of(i), offset, length);
      if (!part.ok() || part->bytes != whole->bytes.view().substr(offset, length)) {
        errors.Add("range read of " + key_of(i).ToString() + " is wrong");
      }
    }
  });
  const auto get_time = Clock::now() - get_start;
  EXPECT_EQ(errors.count(), 0u) << errors.Summary();

  // The inventory, paged, lists exactly the shards put, with their hashes.
  std::map<ShardKey, size_t> expected;
  for (size_t i = 0; i < kShards; ++i) expected[key_of(i)] = i;
  std::optional<ShardKey> after;
  size_t listed = 0;
  for (int page = 0; page < 100; ++page) {
    auto inv = shared.Inventory(ep, after, 1000);
    ASSERT_TRUE(inv.ok()) << inv.status().ToString();
    for (const auto& e : inv->entries) {
      auto it = expected.find(e.key);
      ASSERT_NE(it, expected.end()) << "unexpected shard " << e.key.ToString();
      EXPECT_EQ(e.length, lengths[it->second]);
      EXPECT_EQ(e.checksum, hashes[it->second]);
      ++listed;
      after = e.key;
    }
    if (!inv->more) break;
  }
  EXPECT_EQ(listed, kShards);
  auto info = shared.Info(ep);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->shard_count, kShards);
  uint64_t data_bytes = 0;
  for (uint64_t l : lengths) data_bytes += l;
  EXPECT_GE(info->used, data_bytes);
  std::cout << "put " << kShards << " shards (" << data_bytes / (1 << 20) << " MiB) in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(put_time).count()
            << " ms, read them back in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(get_time).count() << " ms\n";

  int status = node.Stop(SIGTERM, 10s);
  EXPECT_TRUE(DaemonProcess::ExitedWith(status, 0)) << "wait status " << status;
}

// A byte flipped on disk fails exactly the 64 KiB block that holds it: every
// read touching that block is kCorrupt, every other read returns the right
// bytes. A flipped header byte fails every read of its shard.
TEST_F(NodeTest, FlippedByteFailsOnlyItsBlock) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  const std::string data_dir = dir_.Sub("data");
  DaemonProcess node;
  ASSERT_NO_FATAL_FAILURE(StartNode(&node, data_dir, port, "node.log"));
  const std::string ep = Endpoint(port);
  NodeClient client(context_);

  constexpr uint64_t kBlock = kDefaultBlockSize;
  constexpr uint64_t kLength = 5 * kBlock - 1000;  // blocks 0..4, the last one short
  constexpr uint64_t kBadBlock = 2;
  std::mt19937_64 rng(42);
  const std::string data = RandomBytes(rng, kLength);
  const ShardKey key{77, 3, 9};
  const ShardKey other{77, 4, 9};
  ASSERT_TRUE(client.Put(ep, key, data, /*sync=*/true, Hash(data)).ok());
  ASSERT_TRUE(client.Put(ep, other, data, /*sync=*/true, Hash(data)).ok());

  const std::string path = FindShardFile(data_dir, key);
  ASSERT_FALSE(path.empty()) << "no file for " << key.ToString();
  const uint64_t data_offset = ShardDataOffset(kLength, kDefaultBlockSize);
  ASSERT_EQ(data_offset % 4096, 0u);
  ASSERT_EQ(std::filesystem::file_size(path), data_offset + kLength);
  {
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const uint64_t at = data_offset + kBadBlock * kBlock + 777;
    char byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(at)), 1);
    ASSERT_EQ(byte, data[kBadBlock * kBlock + 777]);  // the layout is as documented
    byte ^= 0x5a;
    ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(at)), 1);
    ::close(fd);
  }

  auto expect_read = [&](uint64_t offset, uint64_t length, bool touches_bad_block) {
    auto r = client.Get(ep, key, offset, length);
    if (touches_bad_block) {
      ASSERT_FALSE(r.ok()) << "read [" << offset << ", +" << length << ") hid the corruption";
      EXPECT_EQ(r.status().code(), ErrorCode::kCorrupt) << r.status().ToString();
    } else {
      ASSERT_TRUE(r.ok()) << "read [" << offset << ", +" << length
                          << "): " << r.status().ToString();
      EXPECT_EQ(r->bytes, data.substr(offset, length))
          << "read [" << offset << ", +" << length << ")";
    }
  };
  auto touches = [&](uint64_t offset, uint64_t length) {
    uint64_t end = std::min(offset + length, kLength);
    return offset < (kBadBlock + 1) * kBlock && end > kBadBlock * kBlock;
  };

  // Every 4 KiB page of the shard: only the sixteen inside block 2 fail,
  // including those far from the flipped byte.
  for (uint64_t offset = 0; offset < kLength; offset += 4096) {
    ASSERT_NO_FATAL_FAILURE(expect_read(offset, 4096, touches(offset, 4096)));
  }
  // Whole blocks, ranges across block edges, and the whole shard.
  for (uint64_t b = 0; b < 5; ++b) {
    ASSERT_NO_FATAL_FAILURE(expect_read(b * kBlock, kBlock, b == kBadBlock));
  }
  ASSERT_NO_FATAL_FAILURE(expect_read(kBadBlock * kBlock - 10, 20, true));
  ASSERT_NO_FATAL_FAILURE(expect_read((kBadBlock + 1) * kBlock - 10, 20, true));
  ASSERT_NO_FATAL_FAILURE(expect_read(kBadBlock * kBlock - 4096, 4096, false));
  ASSERT_NO_FATAL_FAILURE(expect_read((kBadBlock + 1) * kBlock, 4096, false));
  ASSERT_NO_FATAL_FAILURE(expect_read(0, kLength, true));
  ASSERT_NO_FATAL_FAILURE(expect_read(0, 2 * kBlock, false));
  ASSERT_NO_FATAL_FAILURE(expect_read(3 * kBlock, kLength, false));

  // The hedged read reports the bad replica for repair.
  std::vector<std::pair<size_t, Status>> failures;
  auto hedged = client.GetFromAny({ep}, key, 0, kLength, 100ms, &failures);
  EXPECT_FALSE(hedged.ok());
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].second.code(), ErrorCode::kCorrupt);

  // A flipped byte in the header (here the data length) fails every read.
  const std::string other_path = FindShardFile(data_dir, other);
  ASSERT_FALSE(other_path.empty());
  {
    int fd = ::open(other_path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, 16), 1);
    byte ^= 0x01;
    ASSERT_EQ(::pwrite(fd, &byte, 1, 16), 1);
    ::close(fd);
  }
  for (uint64_t offset : {uint64_t{0}, 4 * kBlock}) {
    auto r = client.Get(ep, other, offset, 4096);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kCorrupt) << r.status().ToString();
  }
  // The node itself is unharmed.
  EXPECT_TRUE(client.Ping(ep).ok());
  EXPECT_TRUE(node.Running());
}

// SIGTERM, even in the middle of a stream of writes, ends the node with exit
// code 0 within a few seconds; after a restart on the same directory it has
// the same id (DIR/node.id) and every shard it acknowledged with sync.
// A real node says where a shard it stores holds data, after checking the
// blocks around its holes, and says so for the shards it has only.
TEST_F(NodeTest, ShardExtentsLeaveOutTheHoles) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  DaemonProcess node;
  ASSERT_NO_FATAL_FAILURE(StartNode(&node, dir_.Sub("data"), port, "node.log"));
  const std::string ep = Endpoint(port);
  NodeClient client(context_);

  std::string data(4 << 20, '\0');
  data.replace(5, 5, "start");
  data.replace((3 << 20) + 1, 3, "end");
  const ShardKey key{78, 0, 1};
  ASSERT_TRUE(client.Put(ep, key, data, /*sync=*/false, Hash(data)).ok());
  auto extents = client.Extents(ep, key);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  EXPECT_EQ(extents->length, data.size());
  EXPECT_EQ(extents->extents, (std::vector<Extent>{{0, 4096}, {3 << 20, 4096}}));
  EXPECT_EQ(client.Extents(ep, ShardKey{78, 1, 1}).status().code(), ErrorCode::kNotFound);
}

TEST_F(NodeTest, SigtermExitsCleanlyAndIdSurvivesRestart) {
  const uint16_t port = FreeTcpPort();
  ASSERT_NE(port, 0);
  const std::string data_dir = dir_.Sub("data");
  const std::string ep = Endpoint(port);
  DaemonProcess node;
  ASSERT_NO_FATAL_FAILURE(StartNode(&node, data_dir, port, "node-1.log"));

  NodeClient::Options options;
  options.attempt_timeout = 2s;
  options.attempts = 1;
  NodeClient client(context_, options);
  auto info = client.Info(ep);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  const std::string id = info->node_id;
  EXPECT_EQ(id.size(), 32u);
  std::string id_file = ReadFile(data_dir + "/node.id");
  while (!id_file.empty() && std::isspace(static_cast<unsigned char>(id_file.back()))) {
    id_file.pop_back();
  }
  EXPECT_EQ(id_file, id);

  // A writer keeps putting 1 MiB shards (synced) while SIGTERM arrives.
  std::mutex mu;
  std::map<ShardKey, uint64_t> acked;
  std::atomic<bool> stop{false};
  std::atomic<size_t> puts{0};
  std::thread writer([&] {
    NodeClient own(context_, options);
    std::mt19937_64 rng(5);
    for (uint32_t i = 0; !stop; ++i) {
      std::string data = RandomBytes(rng, 1 << 20);
      ShardKey key{5, i, 1};
      if (!own.Put(ep, key, data, /*sync=*/true, Hash(data)).ok()) break;
      std::lock_guard<std::mutex> lock(mu);
      acked[key] = Hash(data);
      ++puts;
    }
  });
  ASSERT_TRUE(WaitUntil([&] { return puts >= 5; }, 20s)) << "the writer made no progress";

  const auto term_at = Clock::now();
  ASSERT_TRUE(node.Signal(SIGTERM).ok());
  auto status = node.WaitForExit(5s);
  const auto took = Clock::now() - term_at;
  stop = true;
  writer.join();
  ASSERT_TRUE(status.has_value()) << "shardfs-node still running 5 s after SIGTERM";
  EXPECT_TRUE(DaemonProcess::ExitedWith(*status, 0)) << "wait status " << *status;
  EXPECT_LT(took, 5s);
  EXPECT_NE(node.ReadLog().find("shutting down"), std::string::npos);

  ASSERT_NO_FATAL_FAILURE(StartNode(&node, data_dir, port, "node-2.log"));
  auto again = client.Info(ep);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->node_id, id);
  EXPECT_EQ(ReadFile(data_dir + "/node.id").substr(0, id.size()), id);
  ASSERT_GE(acked.size(), 5u);
  for (const auto& [key, hash] : acked) {
    auto r = client.Get(ep, key, 0, kMaxShardBytes);
    ASSERT_TRUE(r.ok()) << key.ToString() << ": " << r.status().ToString();
    EXPECT_EQ(Hash(r->bytes), hash) << key.ToString();
  }
  EXPECT_TRUE(std::filesystem::is_empty(data_dir + "/tmp"));

  // And an idle node stops cleanly too.
  int idle_status = node.Stop(SIGTERM, 5s);
  EXPECT_TRUE(DaemonProcess::ExitedWith(idle_status, 0)) << "wait status " << idle_status;
}

// Two nodes: a shard put to both is read from the first; when the first is
// frozen (SIGSTOP) the hedged read gets it from the second well within 2 s;
// when the first is killed, likewise, and a put to both reports the dead one.
TEST_F(NodeTest, HedgedReadAroundAFrozenOrDeadNode) {
  const uint16_t port_a = FreeTcpPort();
  const uint16_t port_b = FreeTcpPort();
  ASSERT_NE(port_a, 0);
  ASSERT_NE(port_b, 0);
  ASSERT_NE(port_a, port_b);
  DaemonProcess a;
  DaemonProcess b;
  ASSERT_NO_FATAL_FAILURE(StartNode(&a, dir_.Sub("a"), port_a, "node-a.log"));
  ASSERT_NO_FATAL_FAILURE(StartNode(&b, dir_.Sub("b"), port_b, "node-b.log"));
  const std::vector<std::string> both = {Endpoint(port_a), Endpoint(port_b)};

  NodeClient::Options options;
  options.attempt_timeout = 1500ms;
  options.attempts = 1;
  NodeClient client(context_, options);
  std::mt19937_64 rng(9);
  const std::string data = RandomBytes(rng, 3 << 20);
  const uint64_t hash = Hash(data);
  const ShardKey key{12, 0, 1};
  auto puts = client.PutToAll(both, key, data, /*sync=*/false, hash);
  ASSERT_EQ(puts.size(), 2u);
  ASSERT_TRUE(puts[0].ok()) << puts[0].ToString();
  ASSERT_TRUE(puts[1].ok()) << puts[1].ToString();
  for (const auto& ep : both) {
    auto stat = client.Stat(ep, key);
    ASSERT_TRUE(stat.ok()) << ep << ": " << stat.status().ToString();
    EXPECT_EQ(stat->checksum, hash);
  }

  constexpr auto kHedge = 100ms;
  auto timed_read = [&](size_t expect_replica) {
    const auto start = Clock::now();
    auto r = client.GetFromAny(both, key, 0, kMaxShardBytes, kHedge);
    const auto took = Clock::now() - start;
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->replica_index, expect_replica);
    EXPECT_EQ(Hash(r->bytes), hash);
    EXPECT_LT(took, 2s) << "hedged read took "
                        << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                        << " ms";
  };
  ASSERT_NO_FATAL_FAILURE(timed_read(0));

  // Frozen: connected, accepting bytes, never answering.
  ASSERT_TRUE(a.Signal(SIGSTOP).ok());
  for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(timed_read(1));
  ASSERT_TRUE(a.Signal(SIGCONT).ok());
  ASSERT_TRUE(WaitUntil([&] { return client.Ping(both[0]).ok(); }, 10s));
  ASSERT_NO_FATAL_FAILURE(timed_read(0));

  // Dead: the connection is gone.
  a.Kill();
  for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(timed_read(1));
  const ShardKey key2{12, 1, 1};
  auto after_death = client.PutToAll(both, key2, data, /*sync=*/false, hash);
  ASSERT_EQ(after_death.size(), 2u);
  EXPECT_FALSE(after_death[0].ok());
  EXPECT_TRUE(after_death[1].ok()) << after_death[1].ToString();
  EXPECT_TRUE(b.Running());
}

// Flips one data byte of `key`'s file under `data_dir`, as a disk would.
void CorruptShardFile(const std::string& data_dir, const ShardKey& key, uint64_t length,
                      uint64_t at) {
  const std::string path = FindShardFile(data_dir, key);
  ASSERT_FALSE(path.empty()) << "no file for " << key.ToString() << " under " << data_dir;
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const off_t offset = static_cast<off_t>(ShardDataOffset(length, kDefaultBlockSize) + at);
  char byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, offset), 1);
  byte ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &byte, 1, offset), 1);
  ::close(fd);
}

// Repair copies between real nodes: the target fetches the shard from the
// first source that has good bytes (skipping one that lacks it and one whose
// copy is corrupt on disk), stores an identical object, and answers a
// repeated copy at once from what it holds; a corrupt local copy is
// replaced.
TEST_F(NodeTest, CopyShardFromFallsBackToAGoodSource) {
  const uint16_t port_a = FreeTcpPort();
  const uint16_t port_b = FreeTcpPort();
  const uint16_t port_t = FreeTcpPort();
  ASSERT_TRUE(port_a != 0 && port_b != 0 && port_t != 0);
  ASSERT_TRUE(port_a != port_b && port_b != port_t && port_a != port_t);
  DaemonProcess a;
  DaemonProcess b;
  DaemonProcess t;
  ASSERT_NO_FATAL_FAILURE(StartNode(&a, dir_.Sub("a"), port_a, "node-a.log"));
  ASSERT_NO_FATAL_FAILURE(StartNode(&b, dir_.Sub("b"), port_b, "node-b.log"));
  ASSERT_NO_FATAL_FAILURE(StartNode(&t, dir_.Sub("t"), port_t, "node-t.log"));
  const std::string ep_a = Endpoint(port_a);
  const std::string ep_b = Endpoint(port_b);
  const std::string ep_t = Endpoint(port_t);
  NodeClient client(context_);

  std::mt19937_64 rng(21);
  const std::string data = RandomBytes(rng, (4 << 20) - 123);
  const uint64_t hash = Hash(data);
  auto copy_request = [&](const ShardKey& key, std::vector<std::string> sources) {
    CopyShardFromRequest req;
    req.key = key;
    req.length = data.size();
    req.checksum = hash;
    req.sources = std::move(sources);
    req.sync = true;
    return req;
  };
  auto expect_identical_on_target = [&](const ShardKey& key) {
    auto stat = client.Stat(ep_t, key);
    ASSERT_TRUE(stat.ok()) << key.ToString() << ": " << stat.status().ToString();
    EXPECT_EQ(stat->length, data.size());
    EXPECT_EQ(stat->checksum, hash);
    auto r = client.Get(ep_t, key, 0, kMaxShardBytes);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(Hash(r->bytes), hash) << key.ToString();
  };

  // Plain copy from the one source.
  const ShardKey plain{30, 0, 1};
  ASSERT_TRUE(client.Put(ep_a, plain, data, false, hash).ok());
  auto copied = client.CopyFrom(ep_t, copy_request(plain, {ep_a}));
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(copied->length, data.size());
  EXPECT_EQ(copied->checksum, hash);
  ASSERT_NO_FATAL_FAILURE(expect_identical_on_target(plain));

  // Asked again, the target answers from what it holds, without its sources.
  auto again = client.CopyFrom(ep_t, copy_request(plain, {Endpoint(FreeTcpPort())}));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->checksum, hash);

  // The first source lacks the shard.
  const ShardKey lacking{30, 1, 1};
  ASSERT_TRUE(client.Put(ep_a, lacking, data, false, hash).ok());
  copied = client.CopyFrom(ep_t, copy_request(lacking, {ep_b, ep_a}));
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  ASSERT_NO_FATAL_FAILURE(expect_identical_on_target(lacking));

  // The first source's copy is corrupt on disk.
  const ShardKey rotten{30, 2, 1};
  ASSERT_TRUE(client.Put(ep_a, rotten, data, false, hash).ok());
  ASSERT_TRUE(client.Put(ep_b, rotten, data, false, hash).ok());
  ASSERT_NO_FATAL_FAILURE(CorruptShardFile(dir_.Sub("b"), rotten, data.size(), 3 << 20));
  ASSERT_EQ(client.Get(ep_b, rotten, 0, kMaxShardBytes).status().code(), ErrorCode::kCorrupt);
  copied = client.CopyFrom(ep_t, copy_request(rotten, {ep_b, ep_a}));
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  ASSERT_NO_FATAL_FAILURE(expect_identical_on_target(rotten));

  // The target's own copy went bad: a copy request replaces it, even though
  // its index still shows the right length and checksum.
  ASSERT_NO_FATAL_FAILURE(CorruptShardFile(dir_.Sub("t"), plain, data.size(), 10));
  ASSERT_EQ(client.Get(ep_t, plain, 0, 4096).status().code(), ErrorCode::kCorrupt);
  copied = client.CopyFrom(ep_t, copy_request(plain, {ep_a}));
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  ASSERT_NO_FATAL_FAILURE(expect_identical_on_target(plain));

  // A frozen first source costs one attempt; the next one still answers,
  // inside the copy's deadline.
  const ShardKey behind_frozen{30, 3, 1};
  ASSERT_TRUE(client.Put(ep_a, behind_frozen, data, false, hash).ok());
  ASSERT_TRUE(client.Put(ep_b, behind_frozen, data, false, hash).ok());
  ASSERT_TRUE(b.Signal(SIGSTOP).ok());
  const auto start = Clock::now();
  copied = client.CopyFrom(ep_t, copy_request(behind_frozen, {ep_b, ep_a}));
  const auto took = Clock::now() - start;
  ASSERT_TRUE(b.Signal(SIGCONT).ok());
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_LT(took, 20s);
  ASSERT_NO_FATAL_FAILURE(expect_identical_on_target(behind_frozen));
  EXPECT_TRUE(t.Running());
}

// Copies that must fail, and fail cleanly: a checksum no source matches
// (nothing is stored), every source down (an error well within the
// deadline), and no sources at all (refused as malformed).
TEST_F(NodeTest, CopyShardFromFailsCleanly) {
  const uint16_t port_a = FreeTcpPort();
  const uint16_t port_t = FreeTcpPort();
  ASSERT_TRUE(port_a != 0 && port_t != 0 && port_a != port_t);
  DaemonProcess a;
  DaemonProcess t;
  ASSERT_NO_FATAL_FAILURE(StartNode(&a, dir_.Sub("a"), port_a, "node-a.log"));
  ASSERT_NO_FATAL_FAILURE(StartNode(&t, dir_.Sub("t"), port_t, "node-t.log"));
  const std::string ep_a = Endpoint(port_a);
  const std::string ep_t = Endpoint(port_t);
  NodeClient client(context_);

  std::mt19937_64 rng(22);
  const std::string data = RandomBytes(rng, 1 << 20);
  const ShardKey key{31, 0, 1};
  ASSERT_TRUE(client.Put(ep_a, key, data, false, Hash(data)).ok());

  CopyShardFromRequest req;
  req.key = key;
  req.length = data.size();
  req.checksum = Hash(data) ^ 1;
  req.sources = {ep_a};
  auto wrong = client.CopyFrom(ep_t, req);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), ErrorCode::kCorrupt) << wrong.status().ToString();
  EXPECT_EQ(client.Stat(ep_t, key).status().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(FindShardFile(dir_.Sub("t"), key).empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Sub("t") + "/tmp"));

  // A wrong length is as bad as a wrong checksum.
  req.checksum = Hash(data);
  req.length = data.size() - 1;
  wrong = client.CopyFrom(ep_t, req);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), ErrorCode::kCorrupt) << wrong.status().ToString();
  EXPECT_EQ(client.Stat(ep_t, key).status().code(), ErrorCode::kNotFound);

  // Every source down: one never started, one killed.
  req.length = data.size();
  a.Kill();
  req.sources = {Endpoint(FreeTcpPort()), ep_a};
  const auto start = Clock::now();
  auto down = client.CopyFrom(ep_t, req);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), ErrorCode::kUnavailable) << down.status().ToString();
  EXPECT_LT(took, 25s);
  EXPECT_EQ(client.Stat(ep_t, key).status().code(), ErrorCode::kNotFound);

  // No sources: malformed, refused before anything is tried.
  req.sources.clear();
  auto none = client.CopyFrom(ep_t, req);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), ErrorCode::kBadMessage) << none.status().ToString();
  EXPECT_TRUE(client.Ping(ep_t).ok());
  EXPECT_TRUE(t.Running());
}

}  // namespace
}  // namespace shardfs
