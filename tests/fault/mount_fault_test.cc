// The mount when machines fail: nodes killed or frozen under a reader, too
// few nodes for a write, the registry killed under a workload.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <fstream>
#include <random>
#include <thread>

#include "tests/integration/test_cluster.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class MountFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
      if (std::getenv("CI") != nullptr) FAIL() << "/dev/fuse is not usable";
      GTEST_SKIP() << "/dev/fuse is not usable";
    }
    cluster_ = std::make_unique<TestCluster>(ClusterOptions());
    Status st = cluster_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString() << cluster_->Logs();
    mount_ = std::make_unique<TestMount>(*cluster_, cluster_->dir() + "/mnt");
    st = mount_->Mount();
    ASSERT_TRUE(st.ok()) << st.ToString();
    m_ = mount_->path();
  }
  virtual TestCluster::Options ClusterOptions() {
    TestCluster::Options options;
    options.nodes = 3;
    options.replicas = 3;
    options.down_after = 2.0;
    return options;
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      std::printf("%s\n--- mount\n%s\n", cluster_->Logs().c_str(),
                  mount_ ? mount_->Log().c_str() : "");
    }
    mount_.reset();
    cluster_.reset();
  }

  // Writes `size` bytes of seeded random data; returns their hash.
  uint64_t WriteRandomFile(const std::string& path, size_t size, uint32_t seed) {
    std::mt19937_64 rng(seed);
    std::string data(size, '\0');
    for (size_t i = 0; i + 8 <= size; i += 8) {
      uint64_t v = rng();
      std::memcpy(&data[i], &v, 8);
    }
    std::ofstream out(path, std::ios::binary);
    out << data;
    out.close();
    EXPECT_TRUE(out.good());
    return XXH3_64bits(data.data(), data.size());
  }

  struct ReadResult {
    uint64_t hash = 0;
    bool ok = false;
    std::chrono::milliseconds slowest{0};
  };

  // Streams a file in 1 MiB reads, calling `midway` once a third is read.
  ReadResult StreamRead(const std::string& path, const std::function<void()>& midway) {
    ReadResult r;
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return r;
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    std::string buf(1 << 20, '\0');
    off_t size = lseek(fd, 0, SEEK_END);
    off_t off = 0;
    bool fired = false;
    r.ok = true;
    while (off < size) {
      if (!fired && off >= size / 3) {
        midway();
        fired = true;
      }
      auto start = Clock::now();
      ssize_t n = pread(fd, buf.data(), buf.size(), off);
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      r.slowest = std::max(r.slowest, took);
      if (n <= 0) {
        r.ok = false;
        break;
      }
      XXH3_64bits_update(state, buf.data(), static_cast<size_t>(n));
      off += n;
    }
    r.hash = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    close(fd);
    return r;
  }

  std::unique_ptr<TestCluster> cluster_;
  std::unique_ptr<TestMount> mount_;
  std::string m_;
};

TEST_F(MountFaultTest, NodeKilledUnderAReaderThenASecond) {
  const std::string path = m_ + "/large";
  uint64_t want = WriteRandomFile(path, 40 << 20, 1);
  ReadResult r = StreamRead(path, [&] { cluster_->node(0).Kill(); });
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.hash, want);

  // Two of three nodes live: writes still succeed, with two copies.
  uint64_t want2 = WriteRandomFile(m_ + "/after-one", 9 << 20, 2);
  EXPECT_EQ(StreamRead(m_ + "/after-one", [] {}).hash, want2);

  // One live node is fewer than min(2, R): writes fail with EIO, never
  // silently with a single copy; reads of what exists still work.
  cluster_->node(1).Kill();
  int fd = open((m_ + "/after-two").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  std::string chunk(1 << 20, 'z');
  bool failed = false;
  for (int i = 0; i < 8 && !failed; ++i) failed = write(fd, chunk.data(), chunk.size()) < 0;
  if (!failed) failed = fsync(fd) != 0;
  int err = errno;
  if (close(fd) != 0) {
    failed = true;
    err = errno;
  }
  EXPECT_TRUE(failed);
  EXPECT_EQ(err, EIO);
  EXPECT_EQ(StreamRead(path, [] {}).hash, want);
}

// Four nodes, two copies of each shard: two nodes can die and every shard
// still has two live places to go.
class TwoCopyMountFaultTest : public MountFaultTest {
 protected:
  TestCluster::Options ClusterOptions() override {
    TestCluster::Options options = MountFaultTest::ClusterOptions();
    options.nodes = 4;
    options.replicas = 2;
    return options;
  }
};

// A create places the file's first shard at once (one round trip less per
// small file). Nodes may die between the create and the first store: the
// store must then go to live nodes, not fail.
TEST_F(TwoCopyMountFaultTest, FilesCreatedBeforeNodesDiedAreStoredOnLiveOnes) {
  constexpr int kFiles = 12;
  std::vector<int> fds;
  for (int i = 0; i < kFiles; ++i) {
    int fd = open((m_ + "/early-" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    fds.push_back(fd);
  }
  // Each file's first shard is on 2 of the 4 nodes; with two of them dead,
  // nearly every file has lost at least one place ((1/6)^12 that none has).
  cluster_->node(0).Kill();
  cluster_->node(1).Kill();
  std::this_thread::sleep_for(3s);  // past down_after: the registry places elsewhere
  std::vector<std::thread> writers;
  std::vector<int> errors(kFiles, 0);
  std::vector<uint64_t> hashes(kFiles, 0);
  for (int i = 0; i < kFiles; ++i) {
    writers.emplace_back([&, i] {
      std::string data(100000 + i, static_cast<char>('a' + i));
      hashes[i] = XXH3_64bits(data.data(), data.size());
      if (write(fds[i], data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
          close(fds[i]) != 0) {
        errors[i] = errno;
      }
    });
  }
  for (auto& t : writers) t.join();
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_EQ(errors[i], 0) << "file " << i << ": " << strerror(errors[i]);
    EXPECT_EQ(StreamRead(m_ + "/early-" + std::to_string(i), [] {}).hash, hashes[i]) << i;
  }
  EXPECT_NE(mount_->Log().find("placing it again"), std::string::npos)
      << "no file was placed on a dead node at create, so this tested nothing";
}

TEST_F(MountFaultTest, FrozenNodeDoesNotStallReaders) {
  const std::string path = m_ + "/large";
  uint64_t want = WriteRandomFile(path, 40 << 20, 3);
  // The usual latency of a 1 MiB read, with every node healthy.
  ReadResult baseline = StreamRead(path, [] {});
  ASSERT_TRUE(baseline.ok);
  ReadResult r = StreamRead(path, [&] { ASSERT_TRUE(cluster_->node(0).Signal(SIGSTOP).ok()); });
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.hash, want);
  // A hedged read asks another replica: no single read waits much longer
  // than usual (the issue allows 2 s more).
  EXPECT_LT(r.slowest, baseline.slowest + 2000ms);
  // Writes go on with the two live nodes.
  uint64_t want2 = WriteRandomFile(m_ + "/during-freeze", 5 << 20, 4);
  EXPECT_EQ(StreamRead(m_ + "/during-freeze", [] {}).hash, want2);
  ASSERT_TRUE(cluster_->node(0).Signal(SIGCONT).ok());
}

// With the registry gone every call fails within the bound instead of
// hanging, and the same mount works again once it is back.
TEST_F(MountFaultTest, RegistryKilledUnderAWorkloadAndRestarted) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> slowest_ms{0};
  std::atomic<int> ok_ops{0}, failed_ops{0};
  // Times one system call and keeps the slowest.
  auto timed = [&](auto call) {
    auto start = Clock::now();
    auto result = call();
    int64_t took =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    int64_t prev = slowest_ms.load();
    while (took > prev && !slowest_ms.compare_exchange_weak(prev, took)) {
    }
    return result;
  };
  std::thread workload([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      std::string p = m_ + "/w" + std::to_string(i % 50);
      int fd = timed([&] { return open(p.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644); });
      bool good = fd >= 0 && timed([&] { return write(fd, "x", 1); }) == 1;
      if (fd >= 0) good = timed([&] { return close(fd); }) == 0 && good;
      struct stat st;
      good = timed([&] { return stat(p.c_str(), &st); }) == 0 && good;
      (good ? ok_ops : failed_ops)++;
      std::this_thread::sleep_for(10ms);
    }
  });
  std::this_thread::sleep_for(1500ms);
  cluster_->registry().Kill();
  // Longer than a call's budget, so calls fail rather than wait it out.
  std::this_thread::sleep_for(14s);
  ASSERT_TRUE(cluster_->StartRegistry().ok());
  // Nodes re-register on their next heartbeat.
  EXPECT_TRUE(WaitUntil([&] { return cluster_->NodesUp() == 3; }, 20s));
  int before = ok_ops.load();
  EXPECT_TRUE(WaitUntil([&] { return ok_ops.load() > before + 5; }, 30s));
  stop = true;
  workload.join();
  EXPECT_GT(failed_ops.load(), 0);
  // No single call waited past the mount's bound of 15 s.
  EXPECT_LT(slowest_ms.load(), 15000);
  // And a plain new file works on the same mount, without remounting.
  uint64_t want = WriteRandomFile(m_ + "/after-restart", 1 << 20, 5);
  EXPECT_EQ(StreamRead(m_ + "/after-restart", [] {}).hash, want);
}

// SIGTERM to the mount with a file open and unflushed: the data is stored
// and committed before the process exits, and the mount goes away.
TEST_F(MountFaultTest, SigtermFlushesDirtyDataAndUnmounts) {
  const std::string path = m_ + "/dirty";
  std::string data((5u << 20) + 123, '\0');
  std::mt19937_64 rng(11);
  for (char& c : data) c = static_cast<char>(rng());
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_TRUE(mount_->process().Signal(SIGTERM).ok());
  close(fd);  // may fail once the session is gone; the data must not
  auto status = mount_->process().WaitForExit(30s);
  ASSERT_TRUE(status.has_value()) << "the mount did not exit on SIGTERM";
  EXPECT_TRUE(DaemonProcess::ExitedWith(*status, 0)) << *status << "\n" << mount_->Log();
  EXPECT_TRUE(WaitUntil([&] { return !IsMounted(m_); }, 10s)) << "still mounted after SIGTERM";

  TestMount again(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(again.Mount().ok());
  std::ifstream in(again.path() + "/dirty", std::ios::binary);
  std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data) << "content differs after SIGTERM";
}

// Files a mount holds open are held under its session, which the registry
// releases when the mount stops renewing it: short leases and garbage grace
// here, so the test waits seconds, not minutes.
class OrphanLeaseTest : public MountFaultTest {
 protected:
  TestCluster::Options ClusterOptions() override {
    TestCluster::Options options = MountFaultTest::ClusterOptions();
    options.gc_grace = 1.0;
    options.registry_args = {"--session-lease", std::to_string(kLeaseSeconds)};
    return options;
  }
  // Shard files on all nodes' disks.
  int ShardFiles() {
    int total = 0;
    for (int i = 0; i < 3; ++i) {
      std::string out;
      Sh("find " + cluster_->NodeDir(i) + "/shards -type f 2>/dev/null | wc -l", &out);
      total += std::atoi(out.c_str());
    }
    return total;
  }
  static constexpr int kLeaseSeconds = 6;
};

std::string ReadAll(int fd, size_t size) {
  std::string out(size, '\0');
  ssize_t n = pread(fd, out.data(), size, 0);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// An unlinked file held open by a mount killed with -9 is deleted, shards
// and all, once the mount's lease lapses, with the registry running on; an
// unlinked file held open by a live but idle mount stays.
TEST_F(OrphanLeaseTest, OrphansOfAKilledMountGoAndThoseOfAnIdleMountStay) {
  TestMount a(*cluster_, cluster_->dir() + "/mnt-a");
  ASSERT_TRUE(a.Mount().ok());
  std::string data((8u << 20), '\0');
  std::mt19937_64 rng(12);
  for (char& c : data) c = static_cast<char>(rng());
  for (const char* name : {"/held-by-a", "/held-by-b"}) {
    std::ofstream out(m_ + name, std::ios::binary);
    out << data;
  }
  // Two files of two shards on three nodes.
  ASSERT_TRUE(WaitUntil([&] { return ShardFiles() == 12; }, 20s)) << ShardFiles();
  const int held_by_a = open((a.path() + "/held-by-a").c_str(), O_RDONLY);
  const int held_by_b = open((m_ + "/held-by-b").c_str(), O_RDONLY);
  ASSERT_GE(held_by_a, 0);
  ASSERT_GE(held_by_b, 0);
  ASSERT_EQ(unlink((m_ + "/held-by-a").c_str()), 0);
  ASSERT_EQ(unlink((m_ + "/held-by-b").c_str()), 0);

  // Idle for two leases: both mounts renew, both orphans stay.
  std::this_thread::sleep_for(std::chrono::seconds(2 * kLeaseSeconds));
  EXPECT_EQ(ShardFiles(), 12);
  EXPECT_TRUE(ReadAll(held_by_a, data.size()) == data);

  const pid_t registry = cluster_->registry().pid();
  a.process().Kill();
  // A's orphan goes within a lease, a collector pass and the grace.
  EXPECT_TRUE(WaitUntil([&] { return ShardFiles() == 6; }, 60s)) << ShardFiles();
  EXPECT_TRUE(ReadAll(held_by_b, data.size()) == data) << "the live mount's orphan is damaged";
  EXPECT_TRUE(cluster_->registry().Running());
  EXPECT_EQ(cluster_->registry().pid(), registry);
  close(held_by_a);  // on a dead mount: fails, and must not matter
  a.Unmount();

  // The live mount's last close drops its orphan.
  close(held_by_b);
  EXPECT_TRUE(WaitUntil([&] { return ShardFiles() == 0; }, 60s)) << ShardFiles();
}

}  // namespace
}  // namespace shardfs
