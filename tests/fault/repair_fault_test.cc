// Self-healing with real daemons: nodes killed (one, then another) and their
// copies made again; a node returning with stale data; a reported bad
// replica; replication goals raised and lowered; a node drained under a
// workload; the registry killed in the middle of a repair. Every check of
// content is by hash, through a real mount; every check of health is what
// `shardfs fsck --json` says.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "tests/integration/test_cluster.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using namespace std::chrono_literals;

// MiB written by the node-loss test (1 GiB, about 50 s here);
// SHARDFS_REPAIR_TEST_MIB makes it smaller for a quick run.
size_t NodeLossMiB() {
  const char* v = std::getenv("SHARDFS_REPAIR_TEST_MIB");
  return v != nullptr ? std::strtoul(v, nullptr, 10) : 1024;
}

class RepairFaultTest : public ::testing::Test {
 protected:
  void StartCluster(int nodes, int replicas, std::vector<std::string> registry_args = {},
                    std::vector<std::string> node_args = {},
                    const std::function<void(TestCluster&)>& before_start = {}) {
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
      if (std::getenv("CI") != nullptr) FAIL() << "/dev/fuse is not usable";
      GTEST_SKIP() << "/dev/fuse is not usable";
    }
    TestCluster::Options options;
    options.nodes = nodes;
    options.replicas = replicas;
    options.down_after = 1.0;
    options.gc_grace = 1.0;
    options.registry_args = {"--repair-delay", "2"};
    options.registry_args.insert(options.registry_args.end(), registry_args.begin(),
                                 registry_args.end());
    options.node_args = std::move(node_args);
    cluster_ = std::make_unique<TestCluster>(options);
    if (before_start) before_start(*cluster_);
    Status st = cluster_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString() << cluster_->Logs();
    mount_ = std::make_unique<TestMount>(*cluster_, cluster_->dir() + "/mnt");
    st = mount_->Mount();
    ASSERT_TRUE(st.ok()) << st.ToString();
    m_ = mount_->path();
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      std::printf("%s\n--- mount\n%s\n", cluster_->Logs().c_str(),
                  mount_ ? mount_->Log().c_str() : "");
    }
    mount_.reset();
    if (!small_disk_.empty()) {
      // The node must let go of its disk before it can be unmounted.
      cluster_->node(0).Stop();
      Sh("umount " + small_disk_);
    }
    cluster_.reset();
  }

  // Writes `size` bytes of seeded random data at `path`; returns their hash.
  static uint64_t WriteRandomFile(const std::string& path, size_t size, uint64_t seed) {
    std::mt19937_64 rng(seed);
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    std::ofstream out(path, std::ios::binary);
    std::string chunk;
    for (size_t done = 0; done < size;) {
      const size_t n = std::min<size_t>(size - done, 1 << 20);
      chunk.resize(n);
      for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng();
        std::memcpy(&chunk[i], &v, std::min<size_t>(8, n - i));
      }
      out.write(chunk.data(), static_cast<std::streamsize>(n));
      XXH3_64bits_update(state, chunk.data(), n);
      done += n;
    }
    out.close();
    EXPECT_TRUE(out.good()) << path;
    uint64_t h = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return h;
  }

  static std::optional<uint64_t> HashFile(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) {
      std::printf("open %s: %s\n", path.c_str(), strerror(errno));
      return std::nullopt;
    }
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    std::string buf(1 << 20, '\0');
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) {
      XXH3_64bits_update(state, buf.data(), static_cast<size_t>(n));
    }
    if (n < 0) std::printf("read %s: %s\n", path.c_str(), strerror(errno));
    close(fd);
    uint64_t h = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    if (n < 0) return std::nullopt;
    return h;
  }

  // Files of mixed sizes totalling about `mib` MiB; path -> hash.
  std::map<std::string, uint64_t> WriteDataSet(const std::string& dir, size_t mib) {
    std::filesystem::create_directories(m_ + "/" + dir);
    std::map<std::string, uint64_t> hashes;
    size_t left = mib << 20;
    for (uint64_t i = 0; left > 0; ++i) {
      // 1 KiB .. 24 MiB, so files end inside shards and span several.
      size_t size = std::min<size_t>(left, i % 4 == 3 ? 1024 * (i + 1) : (24u << 20) - i * 4096);
      const std::string path = m_ + "/" + dir + "/f" + std::to_string(i);
      hashes[path] = WriteRandomFile(path, size, i * 7919 + mib);
      left -= size;
    }
    return hashes;
  }

  void ExpectHashes(const std::map<std::string, uint64_t>& hashes) {
    // Fresh reads, not the kernel's page cache.
    Sh("sync; echo 3 > /proc/sys/vm/drop_caches");
    for (const auto& [path, want] : hashes) {
      auto got = HashFile(path);
      ASSERT_TRUE(got.has_value()) << "cannot read " << path;
      EXPECT_EQ(*got, want) << path;
    }
  }

  json Fsck(int* exit_code = nullptr) {
    std::string out;
    int rc = Sh(cluster_->Cli("--json fsck") + " 2>/dev/null", &out);
    if (exit_code != nullptr) *exit_code = rc;
    return json::parse(out, nullptr, false);
  }

  uint64_t ListedOn(const json& fsck, const std::string& node_id) {
    for (const auto& n : fsck["nodes"]) {
      if (n["node_id"] == node_id) return n["replicas"].get<uint64_t>();
    }
    return 0;
  }

  std::string NodeId(int i) {
    std::ifstream in(cluster_->NodeDir(i) + "/node.id");
    std::string id;
    in >> id;
    return id;
  }

  // Polls fsck until it exits `code`; records every exit code seen.
  bool WaitForFsck(int code, std::chrono::seconds timeout, std::set<int>* seen = nullptr,
                   json* last = nullptr) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int rc = -1;
      json f = Fsck(&rc);
      if (seen != nullptr) seen->insert(rc);
      if (last != nullptr) *last = f;
      if (rc == code) return true;
      std::this_thread::sleep_for(300ms);
    }
    return false;
  }

  std::unique_ptr<TestCluster> cluster_;
  std::unique_ptr<TestMount> mount_;
  std::string m_;
  std::string small_disk_;  // a tmpfs mounted as node 0's data dir, if any
};

// 5 nodes, R=3: kill -9 one node, then another; each time fsck reports
// degraded, then healthy with 3 copies of every shard and nothing listed on
// the dead node; every byte still reads back right.
TEST_F(RepairFaultTest, LostNodesAreReplacedAndNothingIsLost) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(5, 3));
  auto hashes = WriteDataSet("data", NodeLossMiB());
  ASSERT_TRUE(WaitForFsck(0, 30s)) << Fsck().dump();

  for (int victim : {0, 1}) {
    const std::string id = NodeId(victim);
    ASSERT_FALSE(id.empty());
    const auto killed = Clock::now();
    cluster_->node(victim).Kill();
    std::set<int> seen;
    json last;
    ASSERT_TRUE(WaitForFsck(1, 30s, &seen, &last)) << "never degraded: " << last.dump();
    ASSERT_TRUE(WaitForFsck(0, 300s, &seen, &last)) << "never healthy again: " << last.dump();
    std::printf("node %d: healthy again after %.1f s\n", victim,
                std::chrono::duration<double>(Clock::now() - killed).count());
    EXPECT_EQ(seen.count(2), 0u) << "fsck claimed data loss";
    EXPECT_EQ(last["shards"], last["healthy"]);
    EXPECT_EQ(ListedOn(last, id), 0u) << last.dump();
    EXPECT_GT(last["repair"]["copied_copies"].get<uint64_t>(), 0u);
  }
  ExpectHashes(hashes);
}

// A node that comes back with a data dir from before overwrites and deletes
// serves nothing stale, and its stale shards are removed.
TEST_F(RepairFaultTest, ReturningNodeLosesItsStaleShards) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, 3));
  const std::string keep = m_ + "/keep", rewrite = m_ + "/rewrite", doomed = m_ + "/doomed";
  const uint64_t keep_hash = WriteRandomFile(keep, 9u << 20, 1);
  WriteRandomFile(rewrite, 9u << 20, 2);
  WriteRandomFile(doomed, 9u << 20, 3);
  ASSERT_TRUE(WaitForFsck(0, 30s));
  auto count_shards = [&](int node) {
    std::string out;
    Sh("find " + cluster_->NodeDir(node) + "/shards -type f | wc -l", &out);
    return std::stoul(out);
  };
  const size_t before = count_shards(0);
  ASSERT_GT(before, 0u);

  cluster_->node(0).Kill();
  const uint64_t new_hash = WriteRandomFile(rewrite, 9u << 20, 22);
  ASSERT_EQ(Sh("rm " + doomed), 0);
  // Repair replaces node 0's copies; then it comes back with its old disk.
  ASSERT_TRUE(WaitForFsck(0, 120s)) << Fsck().dump();
  ASSERT_TRUE(cluster_->StartNode(0).ok());
  ASSERT_TRUE(WaitUntil([&] { return cluster_->NodesUp() == 4; }, 20s));

  // Everything it held was superseded, deleted or replaced: it ends empty.
  EXPECT_TRUE(WaitUntil([&] { return count_shards(0) == 0; }, 60s))
      << count_shards(0) << " of " << before << " shards left\n"
      << cluster_->registry().ReadLog();
  ExpectHashes({{keep, keep_hash}, {rewrite, new_hash}});
  int rc = -1;
  Fsck(&rc);
  EXPECT_EQ(rc, 0);
}

// A replica with a flipped byte, found by a reader: the reader gets the right
// bytes from another replica and reports the bad one, which is replaced.
TEST_F(RepairFaultTest, BadReplicaFoundByAReaderIsReplaced) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, 3));
  const std::string file = m_ + "/file";
  const uint64_t hash = WriteRandomFile(file, 6u << 20, 5);
  ASSERT_TRUE(WaitForFsck(0, 30s));

  // Flip a byte in every copy on the node that readers try first.
  std::string info_out;
  ASSERT_EQ(Sh(cluster_->Cli("--json info /file") + " 2>/dev/null", &info_out), 0);
  json info = json::parse(info_out, nullptr, false);
  ASSERT_FALSE(info.is_discarded()) << info_out;
  const std::string first = info["shards"][0]["replicas"][0]["node"].get<std::string>();
  int victim = -1;
  for (int i = 0; i < 4; ++i) {
    if (NodeId(i) == first) victim = i;
  }
  ASSERT_GE(victim, 0);
  std::string files;
  Sh("find " + cluster_->NodeDir(victim) + "/shards -type f", &files);
  std::istringstream lines(files);
  std::string shard_file;
  int flipped = 0;
  while (std::getline(lines, shard_file)) {
    int fd = open(shard_file.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char c;
    const off_t at = 8192 + 100;  // inside the data, past the header
    ASSERT_EQ(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    ASSERT_EQ(pwrite(fd, &c, 1, at), 1);
    close(fd);
    ++flipped;
  }
  ASSERT_GT(flipped, 0);

  ExpectHashes({{file, hash}});
  EXPECT_TRUE(WaitUntil(
      [&] {
        return cluster_->registry().ReadLog().find("dropped bad replica") != std::string::npos;
      },
      20s))
      << cluster_->registry().ReadLog();
  json last;
  ASSERT_TRUE(WaitForFsck(0, 60s, nullptr, &last)) << last.dump();
  ExpectHashes({{file, hash}});
}

// `shardfs replicas` lowers and raises a goal; repair trims and adds copies.
TEST_F(RepairFaultTest, ReplicationGoalChangesAreCarriedOut) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, 2));
  const std::string file = m_ + "/file";
  const uint64_t hash = WriteRandomFile(file, 10u << 20, 9);
  auto copies = [&] {
    std::string out;
    Sh(cluster_->Cli("--json info /file") + " 2>/dev/null", &out);
    json j = json::parse(out, nullptr, false);
    std::set<size_t> counts;
    if (j.is_discarded()) return counts;
    for (const auto& s : j["shards"]) counts.insert(s["replicas"].size());
    return counts;
  };
  ASSERT_EQ(Sh(cluster_->Cli("replicas /file 4")), 0);
  EXPECT_TRUE(WaitUntil([&] { return copies() == std::set<size_t>{4}; }, 60s));
  ASSERT_EQ(Sh(cluster_->Cli("replicas /file 1")), 0);
  EXPECT_TRUE(WaitUntil([&] { return copies() == std::set<size_t>{1}; }, 60s));
  int rc = -1;
  Fsck(&rc);
  EXPECT_EQ(rc, 0);
  ExpectHashes({{file, hash}});
}

// Drain a node while files are being written: afterwards it holds nothing
// the cluster needs, and stopping it loses nothing.
TEST_F(RepairFaultTest, DrainedNodeCanBeStoppedWithoutLoss) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, 3));
  auto hashes = WriteDataSet("before", 40);
  const std::string id = NodeId(0);

  std::atomic<bool> stop{false};
  std::map<std::string, uint64_t> during;
  std::thread writer([&] {
    for (int i = 0; i < 40 && !stop; ++i) {  // bounded
      const std::string path = m_ + "/during" + std::to_string(i);
      during[path] = WriteRandomFile(path, 3u << 20, 100 + i);
    }
  });
  std::string out;
  const int rc = Sh("timeout 240 " + cluster_->Cli("drain --wait " + id.substr(0, 8)), &out);
  stop = true;
  writer.join();
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("safe to stop"), std::string::npos) << out;
  // Files written while it drained must not land on it either.
  json f;
  ASSERT_TRUE(WaitForFsck(0, 60s, nullptr, &f));
  EXPECT_EQ(ListedOn(f, id), 0u) << f.dump();

  cluster_->node(0).Kill();
  hashes.insert(during.begin(), during.end());
  ExpectHashes(hashes);
}

// A node whose disk fills up: writes go to the other nodes, nothing that
// could succeed elsewhere fails, and every shard ends at its goal.
TEST_F(RepairFaultTest, FullNodeTakesNoMoreShards) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(4, 3, {}, {}, [&](TestCluster& c) {
    std::filesystem::create_directories(c.NodeDir(0));
    ASSERT_EQ(Sh("mount -t tmpfs -o size=20m shardfs-test-full " + c.NodeDir(0)), 0);
    small_disk_ = c.NodeDir(0);
  }));
  // Far more than node 0 can hold.
  auto hashes = WriteDataSet("data", 96);
  json f;
  ASSERT_TRUE(WaitForFsck(0, 120s, nullptr, &f)) << f.dump();
  EXPECT_EQ(f["shards"], f["healthy"]);
  std::string df;
  Sh("df -k --output=used " + small_disk_ + " | tail -1", &df);
  EXPECT_LE(std::stoul(df), 20u * 1024);
  ExpectHashes(hashes);
  // Still writable with the full node in the cluster.
  const uint64_t after = WriteRandomFile(m_ + "/after", 8u << 20, 4242);
  ExpectHashes({{m_ + "/after", after}});
}

// A node added to a full-ish cluster gets a fair share: new data at once,
// and (after `shardfs rebalance`) replicas moved from the others.
TEST_F(RepairFaultTest, AddedNodeIsFilledByRebalancing) {
  // Small capacities, so 60 MiB makes a difference in the nodes' shares.
  ASSERT_NO_FATAL_FAILURE(StartCluster(3, 2, {}, {"--capacity", "150M"}));
  auto hashes = WriteDataSet("data", 60);
  ASSERT_TRUE(WaitForFsck(0, 30s));
  auto added = cluster_->AddNode();
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  ASSERT_TRUE(WaitUntil([&] { return cluster_->NodesUp() == 4; }, 20s));
  const std::string id = NodeId(*added);
  auto share = [&] {
    json f = Fsck();
    uint64_t mine = 0, total = 0;
    if (f.is_discarded()) return 0.0;
    for (const auto& n : f["nodes"]) {
      total += n["bytes"].get<uint64_t>();
      if (n["node_id"] == id) mine = n["bytes"].get<uint64_t>();
    }
    return total == 0 ? 0.0 : static_cast<double>(mine) / total;
  };
  std::string out;
  ASSERT_EQ(Sh(cluster_->Cli("rebalance"), &out), 0) << out;
  // Four equal nodes: a quarter each; rebalancing stops once the shares are
  // within 10 points, which leaves the new node at least about an eighth.
  EXPECT_TRUE(WaitUntil([&] { return share() > 0.12; }, 120s)) << share() << "\n" << Fsck().dump();
  json f;
  ASSERT_TRUE(WaitForFsck(0, 60s, nullptr, &f)) << f.dump();
  ExpectHashes(hashes);
  // New data lands on the new node at once.
  ASSERT_EQ(Sh(cluster_->Cli("rebalance --json"), &out), 0) << out;
  EXPECT_NE(out.find("spread_percent"), std::string::npos);
}

// The registry killed -9 in the middle of a repair: after the restart the
// repair finishes.
TEST_F(RepairFaultTest, RepairSurvivesARegistryCrash) {
  // A slow repair, so the crash lands in the middle of it.
  ASSERT_NO_FATAL_FAILURE(StartCluster(5, 3, {"--repair-rate", "8"}));
  auto hashes = WriteDataSet("data", 96);
  ASSERT_TRUE(WaitForFsck(0, 30s));
  cluster_->node(0).Kill();
  json f;
  ASSERT_TRUE(WaitUntil(
      [&] {
        f = Fsck();
        return !f.is_discarded() && f["repair"]["copied_copies"].get<uint64_t>() > 0;
      },
      60s))
      << f.dump();
  ASSERT_GT(f["repair"]["pending_copies"].get<uint64_t>(), 0u) << "repair finished too soon";
  cluster_->registry().Kill();
  ASSERT_TRUE(cluster_->StartRegistry().ok());
  ASSERT_TRUE(WaitForFsck(0, 300s, nullptr, &f)) << f.dump();
  EXPECT_EQ(f["shards"], f["healthy"]);
  ExpectHashes(hashes);
}

}  // namespace
}  // namespace shardfs
