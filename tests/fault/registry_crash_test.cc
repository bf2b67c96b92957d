// shardfs-registry under kill -9: nothing it acknowledged is lost.
//
// Eight clients, each in a directory of its own, stream 10,000 namespace
// operations between them (creates, small-file writes as AllocateShards +
// CommitShards, hard links, renames that move or replace, unlinks) at a real
// registry process, while the test's main thread sends it SIGKILL at seeded random
// moments and starts it again on the same --meta. Each client keeps a model
// of what the registry acknowledged. A call that fails because the registry
// went away is retried once it is back; since its reply was lost it may or
// may not have happened, so the retry may see its own earlier effect (a
// create answered EEXIST, an unlink ENOENT): that is accepted, after checking
// that the state is the one the first attempt would have left, and only for
// calls that were never acknowledged. Names are never reused, so a late
// duplicate can never hit a newer file of the same name.
//
// At the end (after one more kill -9) every acknowledged operation must be
// there: each directory lists exactly the model's names, each name leads to
// a live inode with the model's link count, size and shard table (entry for
// entry, generation, length, checksum, replicas), each removed inode is
// gone; and after a clean stop the metadata directory opened in-process
// passes the store's own invariant check.
//
// Node servers are in-process RegistryLinks with made-up node ids: the
// registry needs live nodes to place shards, never talks to them (the
// garbage grace is long), and they re-register by themselves after every
// restart, as real nodes do.
//
// SHARDFS_CRASH_SEED=N reruns with another seed; the seed is printed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "src/namespace_client.h"
#include "src/namespace_db.h"
#include "src/registry_link.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kClients = 8;
constexpr int kOpsPerClient = 1250;  // 10,000 mutations in all
constexpr int kTotalOps = kClients * kOpsPerClient;
constexpr int kKills = 4;  // during the stream; one more before the final check
constexpr uint32_t kShardSize = 4096;
constexpr uint32_t kMaxIndex = 8;  // files of up to 8 shards: 32 KiB
// No single call may take longer than this, registry restarts included.
constexpr auto kCallDeadline = 60s;
const std::vector<std::string> kFakeNodeIds = {"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb01",
                                               "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb02"};

template <typename T>
ErrorCode CodeOf(const Result<T>& r) {
  return r.ok() ? ErrorCode::kOk : r.status().code();
}
ErrorCode CodeOf(const Status& s) {
  return s.code();
}
template <typename T>
std::string Describe(const Result<T>& r) {
  return r.ok() ? std::string("OK") : r.status().ToString();
}
std::string Describe(const Status& s) {
  return s.ToString();
}

// The registry being down or restarting: the call may or may not have been
// applied, and may be tried again.
bool Transient(ErrorCode code) {
  return code == ErrorCode::kTimeout || code == ErrorCode::kUnavailable || code == ErrorCode::kBusy;
}

uint64_t SeedFromEnv() {
  const char* s = std::getenv("SHARDFS_CRASH_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : 0x5eedf00d;
}

// The registry process, restartable on the same port and --meta.
class Registry {
 public:
  Registry(std::string meta, std::string log, uint16_t port, uint16_t beacon_port)
      : meta_(std::move(meta)), log_(std::move(log)), port_(port), beacon_port_(beacon_port) {}

  Status Start() {
    DaemonProcess::Options o;
    o.argv = {BuildPath("nodeserver/shardfs-registry"),
              "--meta",
              meta_,
              "--listen",
              endpoint(),
              "--beacon",
              "off",
              "--beacon-port",
              std::to_string(beacon_port_),
              "--cluster",
              "crash-" + std::to_string(getpid()),
              "--replicas",
              "2",
              "--gc-grace",
              "3600",
              "--log-level",
              "warn"};
    // No --key: the registry makes META/cluster.key on its first start and
    // keeps it across the restarts; Key() loads it for the test's clients.
    o.log_path = log_;
    auto p = DaemonProcess::Start(o);
    if (!p.ok()) return p.status();
    process_ = std::move(p).value();
    return Status::Ok();
  }

  void Kill() { process_.Kill(); }
  int Stop() { return process_.Stop(SIGTERM, 30s); }
  bool Running() { return process_.Running(); }
  std::string ReadLog() const { return process_.ReadLog(); }
  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  const std::string meta_;
  const std::string log_;
  const uint16_t port_;
  const uint16_t beacon_port_;
  DaemonProcess process_;
};

NamespaceClient::Options ClientOptions() {
  NamespaceClient::Options o;
  // Short, so a call caught by a kill is given up quickly and retried.
  o.attempt_timeout = 1000ms;
  o.budget = 2000ms;
  return o;
}

std::unique_ptr<RegistryLink> FakeNode(zmq::context_t& ctx, const std::string& registry, int n) {
  RegistryLink::Options o;
  o.registry_endpoint = registry;
  o.heartbeat_interval = 100ms;
  o.rpc_timeout = 500ms;
  o.failures_before_reset = 2;
  const std::string id = kFakeNodeIds[n];
  return std::make_unique<RegistryLink>(ctx, o, [id, n] {
    RegistryLink::NodeReport r;
    r.node_id = id;
    r.endpoint = "tcp://127.0.0.1:" + std::to_string(9 + n);  // nothing listens there
    r.host = "crash-host-" + std::to_string(n);
    r.capacity = 100ull << 30;
    return r;
  });
}

// What the registry acknowledged about one file.
struct FileModel {
  uint32_t nlink = 1;
  uint64_t size = 0;
  std::map<uint32_t, ShardEntry> shards;
};

struct WorkerStats {
  int acked = 0;
  int ambiguous = 0;        // calls whose outcome had to be resolved after a retry
  int seen_own_effect = 0;  // retries that found the lost attempt had happened
};

// One client: its own NamespaceClient, directory and model. Runs on its own
// thread; after Run() returns, the main thread reads the model.
class Worker {
 public:
  // `abort` set: stop retrying (the registry will not come back).
  Worker(int id, zmq::context_t& ctx, const std::string& endpoint, uint64_t seed,
         std::atomic<int>* progress, const std::atomic<bool>* abort)
      : id_(id),
        client_(ctx, endpoint, ClientOptions()),
        rng_(seed),
        progress_(progress),
        abort_(abort) {}

  // Empty when everything matched; else the first thing that did not.
  const std::string& failure() const { return failure_; }
  const WorkerStats& stats() const { return stats_; }

  // Makes the worker's directories, then `ops` acknowledged mutations.
  void Run(int ops) {
    if (!MakeDir(kRootIno, Home(), &home_)) return;
    for (int s = 0; s < 2; ++s) {
      if (!MakeDir(home_, SubName(s), &dirs_[s])) return;
    }
    counting_ = true;
    while (mutations_ < ops && failure_.empty()) Step();
  }

  // Compares the registry's tree under this worker's directory with the
  // model, through `c` (a fresh client after the last restart).
  void Verify(NamespaceClient& c, std::vector<std::string>* problems) const {
    auto problem = [&](const std::string& what) {
      problems->push_back("client " + std::to_string(id_) + ": " + what);
    };
    auto home = c.Lookup(kRootIno, Home());
    if (!home.ok() || home->ino != home_) return problem("home lookup: " + Describe(home));
    if (home->nlink != 4) problem("home nlink " + std::to_string(home->nlink));
    for (int s = 0; s < 2; ++s) {
      auto sub = c.Lookup(home_, SubName(s));
      if (!sub.ok() || sub->ino != dirs_[s]) return problem("subdir lookup: " + Describe(sub));
      if (sub->nlink != 2) problem("subdir nlink " + std::to_string(sub->nlink));
      std::set<std::string> listed;
      ReadDirRequest req{dirs_[s], "", 1000, true};
      while (true) {
        auto page = c.ReadDir(req);
        if (!page.ok()) return problem("readdir: " + Describe(page));
        for (const auto& e : page->entries) listed.insert(SubName(s) + "/" + e.name);
        if (!page->more || page->entries.empty()) break;
        req.after = page->entries.back().name;
      }
      std::set<std::string> expected;
      for (const auto& [key, ino] : names_) {
        if (key.starts_with(SubName(s) + "/")) expected.insert(key);
      }
      for (const auto& n : expected) {
        if (!listed.contains(n)) problem("acknowledged name missing: " + n);
      }
      for (const auto& n : listed) {
        if (!expected.contains(n)) problem("name that should not exist: " + n);
      }
    }
    for (const auto& [key, ino] : names_) {
      auto found = c.Lookup(dirs_[SubOf(key)], LeafOf(key));
      if (!found.ok()) {
        problem(key + ": lookup " + Describe(found));
        continue;
      }
      if (found->ino != ino) {
        problem(key + ": ino " + std::to_string(found->ino) + ", expected " + std::to_string(ino));
        continue;
      }
      const FileModel& m = files_.at(ino);
      auto table = c.GetShardTable(ino, 0, kMaxShardsPerMessage);
      if (!table.ok()) {
        problem(key + ": shard table " + Describe(table));
        continue;
      }
      const InodeAttrs& a = table->attrs;
      if (a.type != FileType::kRegular) problem(key + ": not a regular file");
      if (a.nlink != m.nlink) {
        problem(key + ": nlink " + std::to_string(a.nlink) + ", expected " +
                std::to_string(m.nlink));
      }
      if (a.size != m.size) {
        problem(key + ": size " + std::to_string(a.size) + ", expected " + std::to_string(m.size));
      }
      std::vector<ShardEntry> expected;
      for (const auto& [index, entry] : m.shards) expected.push_back(entry);
      if (table->shards != expected) {
        problem(key + ": shard table " + Table(table->shards) + ", expected " + Table(expected));
      }
    }
    for (uint64_t ino : removed_) {
      auto gone = c.GetAttr(ino);
      if (CodeOf(gone) != ErrorCode::kNotFound) {
        problem("removed inode " + std::to_string(ino) + " still answers " + Describe(gone));
      }
    }
  }

  size_t file_count() const { return files_.size(); }
  std::string Home() const { return "c" + std::to_string(id_); }

 private:
  static std::string SubName(int s) { return s == 0 ? "a" : "b"; }
  static int SubOf(const std::string& key) { return key[0] == 'a' ? 0 : 1; }
  static std::string LeafOf(const std::string& key) { return key.substr(2); }

  static std::string Table(const std::vector<ShardEntry>& shards) {
    std::ostringstream out;
    out << "[";
    for (const auto& e : shards) {
      out << " {" << e.index << " gen " << e.generation << " len " << e.length << " sum "
          << e.checksum << " on " << e.replicas.size() << "}";
    }
    out << " ]";
    return out.str();
  }

  void Fail(const std::string& what) {
    if (failure_.empty()) failure_ = "client " + std::to_string(id_) + ": " + what;
  }

  // Calls `call` until it gives an answer that is not "registry away".
  // `*ambiguous` becomes true if an attempt may have been applied without
  // us hearing of it.
  template <typename F>
  auto Retry(F call, bool* ambiguous) -> decltype(call()) {
    const auto deadline = Clock::now() + kCallDeadline;
    while (true) {
      auto r = call();
      if (!Transient(CodeOf(r)) || Clock::now() > deadline || abort_->load()) return r;
      *ambiguous = true;
      std::this_thread::sleep_for(20ms);
    }
  }

  template <typename F>
  auto Read(F call) -> decltype(call()) {
    bool ignored = false;
    return Retry(call, &ignored);
  }

  void Acked(bool ambiguous) {
    ++stats_.acked;
    if (ambiguous) ++stats_.ambiguous;
    if (counting_) {
      ++mutations_;
      progress_->fetch_add(1);
    }
  }

  bool MakeDir(uint64_t parent, const std::string& name, uint64_t* ino) {
    MknodRequest r;
    r.parent = parent;
    r.name = name;
    r.type = FileType::kDirectory;
    r.mode = 0755;
    bool ambiguous = false;
    auto made = Retry([&] { return client_.Mkdir(r); }, &ambiguous);
    if (made.ok()) {
      *ino = made->ino;
    } else if (ambiguous && CodeOf(made) == ErrorCode::kExists) {
      auto found = Read([&] { return client_.Lookup(parent, name); });
      if (!found.ok() || found->type != FileType::kDirectory) {
        Fail("mkdir " + name + " answered EEXIST but lookup gives " + Describe(found));
        return false;
      }
      *ino = found->ino;
      ++stats_.seen_own_effect;
    } else {
      Fail("mkdir " + name + ": " + Describe(made));
      return false;
    }
    Acked(ambiguous);
    return true;
  }

  std::string FreshName(int sub) { return SubName(sub) + "/" + "n" + std::to_string(next_name_++); }

  std::string RandomKey() {
    auto it = names_.begin();
    std::advance(it, rng_() % names_.size());
    return it->first;
  }

  void Step() {
    const int roll = static_cast<int>(rng_() % 100);
    const size_t n = names_.size();
    if (n < 5 || roll < 22) return Create();
    if (n > 120 && roll < 50) return Unlink();  // keep the directories small
    if (roll < 55) return Write();
    if (roll < 62) return Link();
    if (roll < 82) return Rename();
    if (roll < 97) return Unlink();
    // A read in the middle of the stream: what was acknowledged is visible.
    const std::string key = RandomKey();
    auto found = Read([&] { return client_.Lookup(dirs_[SubOf(key)], LeafOf(key)); });
    if (!found.ok() || found->ino != names_[key] || found->nlink != files_[names_[key]].nlink ||
        found->size != files_[names_[key]].size) {
      Fail("read of " + key + " does not match the model: " + Describe(found));
    }
  }

  void Create() {
    const std::string key = FreshName(static_cast<int>(rng_() % 2));
    MknodRequest r;
    r.parent = dirs_[SubOf(key)];
    r.name = LeafOf(key);
    r.type = FileType::kRegular;
    r.mode = 0644;
    r.shard_size = kShardSize;
    bool ambiguous = false;
    auto made = Retry([&] { return client_.Mknod(r); }, &ambiguous);
    uint64_t ino = 0;
    if (made.ok()) {
      ino = made->ino;
      if (made->nlink != 1 || made->size != 0) Fail("create " + key + ": odd attributes");
    } else if (ambiguous && CodeOf(made) == ErrorCode::kExists) {
      // The lost attempt created it: it must be exactly that new file.
      auto found = Read([&] { return client_.Lookup(r.parent, r.name); });
      if (!found.ok() || found->type != FileType::kRegular || found->nlink != 1 ||
          found->size != 0 || files_.contains(found->ino)) {
        return Fail("create " + key + " answered EEXIST, but lookup gives " + Describe(found));
      }
      ino = found->ino;
      ++stats_.seen_own_effect;
    } else {
      return Fail("create " + key + ": " + Describe(made));
    }
    Acked(ambiguous);
    names_[key] = ino;
    files_[ino] = FileModel{};
  }

  void Write() {
    const std::string key = RandomKey();
    const uint64_t ino = names_[key];
    FileModel& m = files_[ino];
    std::set<uint32_t> wanted;
    const int count = 1 + static_cast<int>(rng_() % 3);
    for (int i = 0; i < count; ++i) wanted.insert(static_cast<uint32_t>(rng_() % kMaxIndex));
    AllocateShardsRequest alloc_req{ino, std::vector<uint32_t>(wanted.begin(), wanted.end())};
    // Allocation may be repeated freely: generations that were handed out
    // and never committed are simply never used.
    bool alloc_ambiguous = false;
    auto alloc = Retry([&] { return client_.AllocateShards(alloc_req); }, &alloc_ambiguous);
    if (!alloc.ok()) return Fail("allocate for " + key + ": " + Describe(alloc));
    if (alloc->placements.size() != wanted.size()) return Fail("allocate: wrong placement count");

    CommitShardsRequest commit;
    commit.ino = ino;
    uint64_t end = 0;
    for (const auto& p : alloc->placements) {
      auto cur = m.shards.find(p.index);
      if (cur != m.shards.end() && p.generation <= cur->second.generation) {
        return Fail("allocate handed out generation " + std::to_string(p.generation) +
                    ", not newer than committed " + std::to_string(cur->second.generation));
      }
      if (p.replicas.size() != kFakeNodeIds.size()) return Fail("allocate: wrong replica count");
      ShardEntry e;
      e.index = p.index;
      e.generation = p.generation;
      e.length = rng_() % 4 == 0 ? 1 + rng_() % kShardSize : kShardSize;
      e.checksum = rng_();
      e.replicas = p.replicas;
      end = std::max<uint64_t>(end, uint64_t{e.index} * kShardSize + e.length);
      commit.shards.push_back(std::move(e));
    }
    // Mostly the file grows or keeps its size; sometimes the write ends it
    // (a truncate to the end of what was written, cutting later shards).
    commit.size = rng_() % 6 == 0 ? end : std::max(end, m.size);
    bool ambiguous = false;
    // A lost commit is simply sent again: committing the same generation
    // with the same replicas twice changes nothing.
    auto committed = Retry([&] { return client_.CommitShards(commit); }, &ambiguous);
    if (!committed.ok()) return Fail("commit to " + key + ": " + Describe(committed));
    if (committed->size != commit.size) return Fail("commit to " + key + ": wrong size in reply");
    Acked(ambiguous);
    if (commit.size != m.size) Truncate(m, commit.size);
    for (const auto& e : commit.shards) m.shards[e.index] = e;
    m.size = commit.size;
  }

  // What the registry does to the shard table when a commit changes the size.
  static void Truncate(FileModel& m, uint64_t size) {
    const uint64_t first_dropped = (size + kShardSize - 1) / kShardSize;
    for (auto it = m.shards.lower_bound(static_cast<uint32_t>(first_dropped));
         it != m.shards.end();) {
      it = m.shards.erase(it);
    }
    if (size > 0) {
      const uint64_t last = (size - 1) / kShardSize;
      auto it = m.shards.find(static_cast<uint32_t>(last));
      if (it != m.shards.end())
        it->second.length = std::min(it->second.length, size - last * kShardSize);
    }
  }

  void DropLink(uint64_t ino) {
    FileModel& m = files_[ino];
    if (--m.nlink == 0) {
      files_.erase(ino);
      removed_.insert(ino);
    }
  }

  void Link() {
    const std::string from = RandomKey();
    const uint64_t ino = names_[from];
    const std::string key = FreshName(static_cast<int>(rng_() % 2));
    bool ambiguous = false;
    auto linked =
        Retry([&] { return client_.Link(ino, dirs_[SubOf(key)], LeafOf(key)); }, &ambiguous);
    if (linked.ok()) {
      if (linked->nlink != files_[ino].nlink + 1) return Fail("link " + key + ": wrong nlink");
    } else if (ambiguous && CodeOf(linked) == ErrorCode::kExists) {
      auto found = Read([&] { return client_.Lookup(dirs_[SubOf(key)], LeafOf(key)); });
      if (!found.ok() || found->ino != ino) {
        return Fail("link " + key + " answered EEXIST, but lookup gives " + Describe(found));
      }
      ++stats_.seen_own_effect;
    } else {
      return Fail("link " + key + ": " + Describe(linked));
    }
    Acked(ambiguous);
    names_[key] = ino;
    files_[ino].nlink++;
  }

  void Rename() {
    const std::string from = RandomKey();
    // Half of the renames replace another existing name.
    std::string to = FreshName(static_cast<int>(rng_() % 2));
    if (rng_() % 2 == 0 && names_.size() >= 2) {
      to = RandomKey();
      if (to == from) return;
    }
    const uint64_t src = names_[from];
    const uint64_t dst = names_.contains(to) ? names_[to] : 0;
    RenameRequest r{dirs_[SubOf(from)], LeafOf(from), dirs_[SubOf(to)], LeafOf(to), 0};
    bool ambiguous = false;
    auto renamed = Retry([&] { return client_.Rename(r); }, &ambiguous);
    if (!renamed.ok()) {
      if (!ambiguous || CodeOf(renamed) != ErrorCode::kNotFound) {
        return Fail("rename " + from + " -> " + to + ": " + Describe(renamed));
      }
      // The lost attempt moved it: the source is gone and the target is it.
      auto target = Read([&] { return client_.Lookup(r.new_parent, r.new_name); });
      auto source = Read([&] { return client_.Lookup(r.parent, r.name); });
      if (!target.ok() || target->ino != src || CodeOf(source) != ErrorCode::kNotFound) {
        return Fail("rename " + from + " -> " + to + " answered ENOENT, but target is " +
                    Describe(target) + " and source " + Describe(source));
      }
      ++stats_.seen_own_effect;
    }
    Acked(ambiguous);
    if (dst == src) return;  // two names of one file: POSIX rename does nothing
    names_.erase(from);
    names_[to] = src;
    if (dst != 0) DropLink(dst);
  }

  void Unlink() {
    const std::string key = RandomKey();
    const uint64_t ino = names_[key];
    bool ambiguous = false;
    auto gone = Retry([&] { return client_.Unlink(dirs_[SubOf(key)], LeafOf(key)); }, &ambiguous);
    if (!gone.ok()) {
      if (!ambiguous || CodeOf(gone) != ErrorCode::kNotFound) {
        return Fail("unlink " + key + ": " + Describe(gone));
      }
      ++stats_.seen_own_effect;
    }
    Acked(ambiguous);
    names_.erase(key);
    DropLink(ino);
  }

  const int id_;
  NamespaceClient client_;
  std::mt19937_64 rng_;
  std::atomic<int>* progress_;
  const std::atomic<bool>* abort_;
  std::string failure_;
  WorkerStats stats_;
  bool counting_ = false;  // past the setup: acknowledgements count as the stream's
  int mutations_ = 0;

  uint64_t home_ = 0;
  uint64_t dirs_[2] = {0, 0};
  uint64_t next_name_ = 0;
  std::map<std::string, uint64_t> names_;  // "a/n12" -> ino
  std::map<uint64_t, FileModel> files_;    // live inodes
  std::set<uint64_t> removed_;             // inodes whose last link went
};

bool WaitForAnswer(zmq::context_t& ctx, const std::string& endpoint,
                   std::chrono::milliseconds timeout) {
  NamespaceClient::Options o;
  o.attempt_timeout = 500ms;
  o.budget = 500ms;
  NamespaceClient c(ctx, endpoint, o);
  return WaitUntil([&] { return c.GetAttr(kRootIno).ok(); }, timeout, 10ms);
}

TEST(RegistryCrashTest, KillNineDuringTenThousandOperationsLosesNothingAcknowledged) {
  const uint64_t seed = SeedFromEnv();
  std::cerr << "seed " << seed << " (set SHARDFS_CRASH_SEED to change)\n";
  const auto test_start = Clock::now();
  TempDir dir("registry-crash");
  const uint16_t port = FreeTcpPortPair();
  const uint16_t beacon_port = FreeUdpPort();
  ASSERT_NE(port, 0);
  ASSERT_NE(beacon_port, 0);
  const std::string meta = dir.Sub("meta");
  Registry registry(meta, dir.Sub("registry.log"), port, beacon_port);
  ASSERT_TRUE(registry.Start().ok());
  std::optional<ClusterKey> key;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto k = LoadClusterKey(meta + "/cluster.key");
        if (k.ok()) key = *k;
        return k.ok();
      },
      20s))
      << registry.ReadLog();
  SetProcessClusterKey(key);
  zmq::context_t ctx;
  ASSERT_TRUE(WaitForAnswer(ctx, registry.endpoint(), 20s)) << registry.ReadLog();

  std::vector<std::unique_ptr<RegistryLink>> nodes;
  for (int i = 0; i < static_cast<int>(kFakeNodeIds.size()); ++i) {
    nodes.push_back(FakeNode(ctx, registry.endpoint(), i));
    ASSERT_TRUE(nodes.back()->Start().ok());
  }
  ASSERT_TRUE(WaitUntil([&] { return nodes[0]->registered() && nodes[1]->registered(); }, 10s));

  std::atomic<int> progress{0};
  std::atomic<bool> abort{false};
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < kClients; ++i) {
    workers.push_back(
        std::make_unique<Worker>(i, ctx, registry.endpoint(), seed * 1000 + i, &progress, &abort));
  }

  // The killer: kill -9 when the stream reaches each seeded point, plus a
  // random few milliseconds so the kill lands in the middle of calls.
  std::mt19937_64 kill_rng(seed);
  std::vector<int> kill_at;
  for (int k = 0; k < kKills; ++k) {
    const int span = kTotalOps / (kKills + 1);
    kill_at.push_back(span * (k + 1) - span / 3 + static_cast<int>(kill_rng() % (2 * span / 3)));
  }
  std::atomic<bool> workers_done{false};
  std::vector<double> restart_ms;
  std::string killer_failure;
  auto kill_and_restart = [&](std::mt19937_64& rng) -> bool {
    registry.Kill();
    // Sometimes come back at once, sometimes after clients gave up a call.
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    const auto start = Clock::now();
    if (Status st = registry.Start(); !st.ok()) {
      killer_failure = "restart failed: " + st.ToString();
      return false;
    }
    if (!WaitForAnswer(ctx, registry.endpoint(), 30s)) {
      killer_failure = "registry did not answer after restart";
      return false;
    }
    restart_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    return true;
  };
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->Run(kOpsPerClient); });
  // This thread is the killer: a daemon started by a thread dies when that
  // thread ends (DaemonProcess sets PR_SET_PDEATHSIG, which is per thread),
  // so every start happens here, on the thread that outlives them all.
  std::thread watcher([&] {
    for (auto& t : threads) t.join();
    workers_done = true;
  });
  for (int at : kill_at) {
    while (progress.load() < at && !workers_done.load()) std::this_thread::sleep_for(1ms);
    if (workers_done.load()) break;
    std::this_thread::sleep_for(std::chrono::microseconds(kill_rng() % 5000));
    if (!kill_and_restart(kill_rng)) {
      abort = true;
      break;
    }
  }
  watcher.join();
  const auto stream_end = Clock::now();
  ASSERT_TRUE(killer_failure.empty()) << killer_failure << "\n" << registry.ReadLog();

  WorkerStats total;
  for (const auto& w : workers) {
    EXPECT_TRUE(w->failure().empty()) << w->failure();
    total.acked += w->stats().acked;
    total.ambiguous += w->stats().ambiguous;
    total.seen_own_effect += w->stats().seen_own_effect;
  }
  std::cerr << total.acked << " operations acknowledged in "
            << std::chrono::duration<double>(stream_end - test_start).count() << " s; "
            << restart_ms.size() << " kills; " << total.ambiguous
            << " calls lost a reply and were retried, " << total.seen_own_effect
            << " of those found their first attempt had been applied\n";
  std::cerr << "restart until the registry answered (ms):";
  for (double ms : restart_ms) std::cerr << " " << static_cast<int>(ms);
  std::cerr << "\n";
  ASSERT_EQ(restart_ms.size(), static_cast<size_t>(kKills)) << "the stream ended too early";
  if (HasFailure()) {
    std::cerr << "registry running: " << registry.Running() << "\n--- registry log ---\n"
              << registry.ReadLog();
    return;
  }
  EXPECT_EQ(total.acked, kTotalOps + 3 * kClients);  // the stream and the directories

  // One more crash, right after the last acknowledgement.
  std::mt19937_64 last_rng(seed + 1);
  ASSERT_TRUE(kill_and_restart(last_rng)) << killer_failure << "\n" << registry.ReadLog();

  NamespaceClient::Options verify_options;
  verify_options.attempt_timeout = 5000ms;
  verify_options.budget = 20000ms;
  NamespaceClient verifier(ctx, registry.endpoint(), verify_options);
  std::vector<std::string> problems;
  size_t files = 0;
  for (const auto& w : workers) {
    w->Verify(verifier, &problems);
    files += w->file_count();
  }
  std::set<std::string> homes;
  ReadDirRequest req{kRootIno, "", 1000, false};
  auto root_page = verifier.ReadDir(req);
  ASSERT_TRUE(root_page.ok()) << root_page.status().ToString();
  for (const auto& e : root_page->entries) homes.insert(e.name);
  std::set<std::string> expected_homes;
  for (const auto& w : workers) expected_homes.insert(w->Home());
  EXPECT_EQ(homes, expected_homes);
  auto root = verifier.GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->nlink, 2u + kClients);
  auto fs = verifier.StatFs();
  ASSERT_TRUE(fs.ok());
  const uint64_t expected_inodes = 1 + 3 * kClients + files;
  EXPECT_EQ(fs->inodes, expected_inodes);

  for (size_t i = 0; i < problems.size() && i < 30; ++i) ADD_FAILURE() << problems[i];
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems";

  // The store's own structural check on what is on disk: every entry names
  // a live inode, link counts match, shard tables fit their files.
  for (auto& node : nodes) node->Stop();
  const int status = registry.Stop();
  EXPECT_TRUE(DaemonProcess::ExitedWith(status, 0)) << "status " << status;
  NamespaceDbOptions db_options;
  db_options.snapshot_every_records = 0;
  auto db = NamespaceDb::Open(meta, db_options);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  Status invariants = (*db)->store().CheckInvariants();
  EXPECT_TRUE(invariants.ok()) << invariants.ToString();
  EXPECT_EQ((*db)->store().Stats().inodes, expected_inodes);
  EXPECT_EQ((*db)->store().Stats().orphans, 0u);

  const auto elapsed = Clock::now() - test_start;
  std::cerr << "total " << std::chrono::duration<double>(elapsed).count() << " s\n";
  EXPECT_LT(elapsed, 110s) << "the crash test must stay well under two minutes";
  if (HasFailure()) std::cerr << "--- registry log ---\n" << registry.ReadLog();
}

}  // namespace
}  // namespace shardfs
