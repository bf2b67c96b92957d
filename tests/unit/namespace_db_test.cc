#include "src/namespace_db.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "src/meta_snapshot.h"

namespace shardfs {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "shardfs-nsdb-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::vector<std::string> Files(const std::string& dir, std::string_view prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.starts_with(prefix)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Copies the meta dir as it is on disk right now: what a kill -9 would leave
// (every acknowledged record has been written and fdatasync'd).
void CopyDir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) {
    if (e.path().filename() == "LOCK") continue;
    fs::copy_file(e.path(), fs::path(to) / e.path().filename());
  }
}

NamespaceDbOptions Options(uint64_t snapshot_every = 0) {
  NamespaceDbOptions o;
  o.snapshot_every_records = snapshot_every;
  auto t = std::make_shared<std::atomic<int64_t>>(1'000'000);
  o.clock = [t] { return t->fetch_add(1) + 1; };
  return o;
}

std::unique_ptr<NamespaceDb> OpenOrDie(const std::string& dir, NamespaceDbOptions o = Options()) {
  auto db = NamespaceDb::Open(dir, std::move(o));
  EXPECT_TRUE(db.ok()) << db.status().ToString();
  return db.ok() ? std::move(*db) : nullptr;
}

ShardEntry Shard(uint32_t index, uint64_t gen, uint64_t length) {
  return ShardEntry{.index = index,
                    .generation = gen,
                    .length = length,
                    .checksum = gen,
                    .replicas = {"a", "b"},
                    .data_bytes = std::nullopt};
}

// Random namespace traffic through a db; returns how many ops succeeded.
int RunRandomOps(NamespaceDb& db, uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> dirs{kRootIno};
  int ok = 0;
  for (int i = 0; i < count; ++i) {
    uint64_t dir = dirs[rng() % dirs.size()];
    std::string name(1, static_cast<char>('a' + rng() % 8));
    uint64_t ino = 1 + rng() % db.store().Stats().next_ino;
    NamespaceOp op;
    switch (rng() % 9) {
      case 0:
        op = MknodOp{.parent = dir, .name = name, .mode = 0644, .shard_size = 4096};
        break;
      case 1:
        op = MkdirOp{.parent = dir, .name = name, .mode = 0755};
        break;
      case 2:
        op = UnlinkOp{.parent = dir, .name = name};
        break;
      case 3:
        op = RmdirOp{.parent = dir, .name = name};
        break;
      case 4:
        op = RenameOp{.parent = dir,
                      .name = name,
                      .new_parent = dirs[rng() % dirs.size()],
                      .new_name = std::string(1, static_cast<char>('a' + rng() % 8))};
        break;
      case 5:
        op = SetxattrOp{.ino = ino, .name = "user." + name, .value = std::to_string(i)};
        break;
      case 6:
        op = LinkOp{.ino = ino, .parent = dir, .name = name};
        break;
      case 7: {
        uint64_t size = rng() % 20000;
        std::vector<ShardEntry> shards;
        if (size > 0) shards.push_back(Shard(0, 1 + i, std::min<uint64_t>(size, 4096)));
        op = CommitShardsOp{.ino = ino, .shards = shards, .size = size};
        break;
      }
      default:
        op = SetattrOp{
            .ino = ino, .mask = kSetAttrSize | kSetAttrMode, .mode = 0600, .size = rng() % 9000};
    }
    auto r = db.Mutate(op);
    if (r.ok()) {
      ++ok;
      if (std::holds_alternative<MkdirOp>(op)) dirs.push_back(r->ino);
    }
  }
  return ok;
}

TEST(NamespaceDbTest, FreshDirHasRootAndOneLog) {
  TempDir dir;
  auto db = OpenOrDie(dir.Sub("meta"));
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->store().GetAttr(kRootIno)->type, FileType::kDirectory);
  EXPECT_EQ(Files(dir.Sub("meta"), "log."), std::vector<std::string>{"log.000001"});
  EXPECT_EQ(db->stats().last_seq, 0u);
}

TEST(NamespaceDbTest, SecondOpenOfTheSameDirIsBusy) {
  TempDir dir;
  auto db = OpenOrDie(dir.path());
  auto again = NamespaceDb::Open(dir.path());
  EXPECT_EQ(again.status().code(), ErrorCode::kBusy);
}

TEST(NamespaceDbTest, MutateStampsTimeAndAssignsIds) {
  TempDir dir;
  auto db = OpenOrDie(dir.path());
  auto a = db->Mutate(MknodOp{.parent = kRootIno, .name = "a"});
  auto b = db->Mutate(MkdirOp{.parent = kRootIno, .name = "b"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->ino, 2u);
  EXPECT_EQ(b->ino, 3u);
  EXPECT_GT(a->attrs->ctime_ns, 1'000'000);
  EXPECT_GT(b->attrs->ctime_ns, a->attrs->ctime_ns);
  // A failed op is not logged.
  EXPECT_EQ(db->Mutate(MknodOp{.parent = kRootIno, .name = "a"}).status().code(),
            ErrorCode::kExists);
  EXPECT_EQ(db->stats().last_seq, 2u);
}

TEST(NamespaceDbTest, ReopenAfterCleanCloseAndAfterCrash) {
  TempDir dir;
  const std::string meta = dir.Sub("meta");
  std::string live;
  {
    auto db = OpenOrDie(meta);
    EXPECT_GT(RunRandomOps(*db, 11, 1000), 300);
    live = db->store().DumpCanonical();
    CopyDir(meta, dir.Sub("crash"));  // the db is still open: as after kill -9
  }
  for (const char* which : {"meta", "crash"}) {
    SCOPED_TRACE(which);
    auto db = OpenOrDie(dir.Sub(which));
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(db->store().DumpCanonical(), live);
    EXPECT_TRUE(db->store().CheckInvariants().ok());
    EXPECT_GT(db->stats().replayed_records, 300u);
  }
}

TEST(NamespaceDbTest, SnapshotPlusLogEqualsLiveStore) {
  TempDir dir;
  const std::string meta = dir.Sub("meta");
  std::string live;
  {
    auto db = OpenOrDie(meta, Options(/*snapshot_every=*/250));
    EXPECT_GT(RunRandomOps(*db, 5, 1500), 300);
    // Let the background snapshotter catch up, then add a log tail after it.
    ASSERT_TRUE(db->Snapshot().ok());
    ASSERT_GT(db->stats().snapshot_seq, 0u);
    RunRandomOps(*db, 6, 100);
    live = db->store().DumpCanonical();
    CopyDir(meta, dir.Sub("crash"));
    EXPECT_LT(db->stats().records_since_snapshot, 250u);
  }
  // Old logs and snapshots were removed: one snapshot, one log file after it.
  EXPECT_EQ(Files(meta, "snap.").size(), 1u);
  EXPECT_EQ(Files(meta, "log.").size(), 1u);
  for (const char* which : {"meta", "crash"}) {
    SCOPED_TRACE(which);
    auto db = OpenOrDie(dir.Sub(which));
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(db->store().DumpCanonical(), live);
    EXPECT_LT(db->stats().replayed_records, 250u);
  }
}

TEST(NamespaceDbTest, CrashesInsideSnapshotLeaveAReplayableDir) {
  // Snapshot() switches to log.000002, writes snap.<seq>, then deletes
  // log.000001. Rebuild the directory as a crash at each step leaves it.
  TempDir dir;
  const std::string meta = dir.Sub("meta");
  std::string live;
  {
    auto db = OpenOrDie(meta);
    RunRandomOps(*db, 8, 300);
    fs::copy_file(fs::path(meta) / "log.000001", dir.Sub("old-log"));
    ASSERT_TRUE(db->Snapshot().ok());
    RunRandomOps(*db, 9, 300);
    live = db->store().DumpCanonical();
  }
  ASSERT_EQ(Files(meta, "log."), std::vector<std::string>{"log.000002"});
  const std::string snap = Files(meta, "snap.").at(0);

  // Crash after the switch, before the snapshot was renamed into place.
  CopyDir(meta, dir.Sub("no-snap"));
  fs::remove(fs::path(dir.Sub("no-snap")) / snap);
  fs::copy_file(dir.Sub("old-log"), fs::path(dir.Sub("no-snap")) / "log.000001");
  std::ofstream(fs::path(dir.Sub("no-snap")) / "snap.tmp") << "half a snapshot";
  // Crash after the rename, before the old log was deleted.
  CopyDir(meta, dir.Sub("old-log-left"));
  fs::copy_file(dir.Sub("old-log"), fs::path(dir.Sub("old-log-left")) / "log.000001");

  for (const char* which : {"no-snap", "old-log-left"}) {
    SCOPED_TRACE(which);
    auto db = OpenOrDie(dir.Sub(which));
    ASSERT_NE(db, nullptr);
    EXPECT_EQ(db->store().DumpCanonical(), live);
  }
}

TEST(NamespaceDbTest, TornLogTailIsDropped) {
  TempDir dir;
  std::string live;
  {
    auto db = OpenOrDie(dir.path());
    RunRandomOps(*db, 3, 200);
    live = db->store().DumpCanonical();
  }
  const std::string log = dir.Sub("log.000001");
  const std::string torn =
      EncodeLogRecord(100000, EncodeOp(MkdirOp{.parent = 1, .name = "x", .ino = 5000}));
  {
    std::ofstream out(log, std::ios::binary | std::ios::app);
    out << torn.substr(0, torn.size() / 2);
  }
  auto size_with_tail = fs::file_size(log);
  auto db = OpenOrDie(dir.path());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->store().DumpCanonical(), live);
  EXPECT_EQ(fs::file_size(log), size_with_tail - torn.size() / 2);
  EXPECT_TRUE(db->Mutate(MkdirOp{.parent = kRootIno, .name = "after"}).ok());
}

TEST(NamespaceDbTest, GapInHistoryIsRefused) {
  TempDir dir;
  {
    auto db = OpenOrDie(dir.path());
    RunRandomOps(*db, 4, 100);
    ASSERT_TRUE(db->Snapshot().ok());
    ASSERT_TRUE(db->Mutate(MkdirOp{.parent = kRootIno, .name = "late"}).ok());
  }
  // Without the snapshot the remaining log starts in the middle of history.
  for (const std::string& s : Files(dir.path(), "snap.")) fs::remove(dir.Sub(s));
  auto db = NamespaceDb::Open(dir.path(), Options());
  EXPECT_EQ(db.status().code(), ErrorCode::kCorrupt) << db.status().ToString();
}

TEST(NamespaceDbTest, DamagedSnapshotIsRefused) {
  TempDir dir;
  {
    auto db = OpenOrDie(dir.path());
    RunRandomOps(*db, 4, 100);
    ASSERT_TRUE(db->Snapshot().ok());
  }
  const std::string snap = dir.Sub(Files(dir.path(), "snap.").at(0));
  {
    std::fstream f(snap, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(60);
    f.put('\x7f');
  }
  EXPECT_EQ(ReadSnapshotFile(snap).status().code(), ErrorCode::kCorrupt);
  auto db = NamespaceDb::Open(dir.path(), Options());
  EXPECT_EQ(db.status().code(), ErrorCode::kCorrupt);
}

TEST(NamespaceDbTest, OrphanDroppedOnLastCloseDurably) {
  TempDir dir;
  uint64_t f = 0;
  {
    auto db = OpenOrDie(dir.path());
    f = db->Mutate(MknodOp{.parent = kRootIno, .name = "f"})->ino;
    ASSERT_TRUE(db->Mutate(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10)}, .size = 10}).ok());
    ASSERT_TRUE(db->OpenFile(f).ok());
    auto unlinked = db->Mutate(UnlinkOp{.parent = kRootIno, .name = "f"});
    ASSERT_TRUE(unlinked.ok());
    EXPECT_EQ(unlinked->orphaned_inodes, std::vector<uint64_t>{f});
    EXPECT_TRUE(db->store().GetAttr(f).ok());
    auto closed = db->CloseFile(f);
    ASSERT_TRUE(closed.ok());
    ASSERT_TRUE(closed->has_value());
    EXPECT_EQ((*closed)->removed_inodes, std::vector<uint64_t>{f});
    EXPECT_EQ((*closed)->garbage.size(), 1u);
    auto again = db->CloseFile(f);
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(again->has_value());
  }
  auto db = OpenOrDie(dir.path());
  EXPECT_EQ(db->store().GetAttr(f).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(db->store().ListGarbage(INT64_MAX, 10).size(), 1u);
}

TEST(NamespaceDbTest, OrphansLeftByACrashAreDroppedAtOpen) {
  TempDir dir;
  uint64_t f = 0;
  {
    auto db = OpenOrDie(dir.Sub("meta"));
    f = db->Mutate(MknodOp{.parent = kRootIno, .name = "f"})->ino;
    ASSERT_TRUE(db->Mutate(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10)}, .size = 10}).ok());
    ASSERT_TRUE(db->OpenFile(f).ok());
    ASSERT_TRUE(db->Mutate(UnlinkOp{.parent = kRootIno, .name = "f"}).ok());
    CopyDir(dir.Sub("meta"), dir.Sub("crash"));  // the file is still open here
  }
  auto db = OpenOrDie(dir.Sub("crash"));
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->store().GetAttr(f).status().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(db->store().Orphans().empty());
  EXPECT_EQ(db->store().ListGarbage(INT64_MAX, 10).size(), 1u);
  EXPECT_TRUE(db->store().CheckInvariants().ok());
  // The drop was logged: a second restart replays it instead of redoing it.
  const uint64_t seq = db->stats().last_seq;
  db.reset();
  db = OpenOrDie(dir.Sub("crash"));
  EXPECT_EQ(db->stats().last_seq, seq);
}

TEST(NamespaceDbTest, GroupCommitUsesFewerSyncsThanMutations) {
  TempDir dir;
  auto db = OpenOrDie(dir.path());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1000;
  std::vector<uint64_t> dirs;
  for (int t = 0; t < kThreads; ++t) {
    dirs.push_back(db->Mutate(MkdirOp{.parent = kRootIno, .name = "t" + std::to_string(t)})->ino);
  }
  const uint64_t syncs_before = db->stats().log_syncs;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!db->Mutate(MknodOp{.parent = dirs[t], .name = std::to_string(i)}).ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const uint64_t syncs = db->stats().log_syncs - syncs_before;
  std::printf("8 x 1000 Mutate calls: %llu fdatasync calls\n",
              static_cast<unsigned long long>(syncs));
  EXPECT_LT(syncs, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(db->store().Stats().inodes, 1u + kThreads + kThreads * kPerThread);
  db.reset();
  db = OpenOrDie(dir.path());
  EXPECT_EQ(db->store().Stats().inodes, 1u + kThreads + kThreads * kPerThread);
}

TEST(NamespaceDbTest, ReadsRunDuringMutations) {
  TempDir dir;
  auto db = OpenOrDie(dir.path());
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      auto page = db->store().ReadDir(kRootIno, "", 50, true);
      ASSERT_TRUE(page.ok());
      for (const DirEntry& e : page->entries) ASSERT_TRUE(e.attrs.has_value());
    }
  });
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(db->Mutate(MknodOp{.parent = kRootIno, .name = "f" + std::to_string(i)}).ok());
    if (i % 3 == 0) {
      ASSERT_TRUE(db->Mutate(UnlinkOp{.parent = kRootIno, .name = "f" + std::to_string(i)}).ok());
    }
  }
  done = true;
  reader.join();
}

// Restart time with a large namespace: a snapshot of N files in 1,000
// directories, each with one shard, loaded by Open. N is 1,000,000 when
// SHARDFS_BIG_TESTS is set, else 200,000 to keep the unit suite quick.
TEST(NamespaceDbTest, RestartWithManyInodesIsFast) {
  const bool big = std::getenv("SHARDFS_BIG_TESTS") != nullptr;
  const int files = big ? 1'000'000 : 200'000;
  TempDir dir;
  size_t snapshot_bytes = 0;
  {
    NamespaceStore store;
    std::vector<uint64_t> dirs;
    for (int d = 0; d < 1000; ++d) {
      NamespaceOp op = MkdirOp{.parent = kRootIno, .name = "d" + std::to_string(d), .time_ns = 1};
      store.Prepare(&op);
      dirs.push_back(store.Apply(op)->ino);
    }
    const std::vector<std::string> nodes = {"0123456789abcdef0123456789abcdef",
                                            "fedcba9876543210fedcba9876543210",
                                            "00112233445566778899aabbccddeeff"};
    for (int i = 0; i < files; ++i) {
      NamespaceOp op = MknodOp{.parent = dirs[i % 1000],
                               .name = "file-" + std::to_string(i),
                               .mode = 0644,
                               .time_ns = 1'700'000'000'000'000'000 + i};
      store.Prepare(&op);
      auto r = store.Apply(op);
      ASSERT_TRUE(r.ok());
      ShardEntry e{.index = 0,
                   .generation = 1,
                   .length = 4096,
                   .checksum = uint64_t(i) * 2654435761u,
                   .replicas = {nodes[i % 3], nodes[(i + 1) % 3]},
                   .data_bytes = std::nullopt};
      ASSERT_TRUE(
          store.Apply(CommitShardsOp{.ino = r->ino, .shards = {e}, .size = 4096, .time_ns = 2})
              .ok());
    }
    std::string payload = store.EncodeSnapshot();
    snapshot_bytes = payload.size();
    ASSERT_TRUE(WriteSnapshotFile(dir.path(), 5, payload).ok());
  }
  auto start = std::chrono::steady_clock::now();
  auto db = OpenOrDie(dir.path());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  ASSERT_NE(db, nullptr);
  std::printf("open with %d files: %lld ms, snapshot %zu bytes (%.1f bytes/inode)\n", files,
              static_cast<long long>(ms), snapshot_bytes, double(snapshot_bytes) / files);
  auto check_start = std::chrono::steady_clock::now();
  EXPECT_TRUE(db->store().CheckInvariants().ok());
  std::printf("  of which the invariant check: %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - check_start)
                                         .count()));
  EXPECT_EQ(db->store().Stats().inodes, 1u + 1000 + files);
  EXPECT_EQ(db->stats().snapshot_seq, 5u);
  EXPECT_EQ(db->Mutate(MkdirOp{.parent = kRootIno, .name = "new"}).ok(), true);
  EXPECT_EQ(db->stats().last_seq, 6u);
  // Generous bound for a loaded 2-core CI machine; the print shows the real figure.
  EXPECT_LT(ms, big ? 30'000 : 10'000);
}

}  // namespace
}  // namespace shardfs
