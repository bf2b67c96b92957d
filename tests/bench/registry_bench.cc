// registry_bench: the registry's metadata throughput and restart time.
//
// Part 1 starts a real shardfs-registry on a free loopback port and measures,
// with 1 and 8 concurrent clients (threads, each with its own
// NamespaceClient), the rate and latency of
//   create    Mknod of a new file          (logged: waits for fdatasync)
//   lookup    Lookup of an existing name   (memory only)
//   getattr   GetAttr of an existing inode (memory only)
//   rename    Rename within a directory    (logged)
//   unlink    Unlink                       (logged)
//   readdir   a full listing of a 10,000-entry directory, the way a mount
//             does it (readdirplus, pages of 1,000) and by names only in the
//             largest pages the protocol allows (10,000)
// Logged operations from several clients share fdatasyncs (group commit), so
// their rate grows with the clients until the log's disk is the limit.
//
// Part 2 measures restart time with 1,000,000 inodes (1,000 directories and
// the rest small files with a one-shard table each). The records are written
// straight into a log file with MetaLog, exactly as NamespaceDb would log
// them, but with one fdatasync at the end instead of one per group (that is
// only how the test data is made fast; it is not a rate of the registry).
// Then, in-process: NamespaceDb::Open replaying the whole log, Snapshot(),
// and Open again from the snapshot; and for a real shardfs-registry process
// on the same data (log only, then snapshot): the time from exec until it
// answers a GetAttr.
//
//   registry_bench [--registry PATH] [--dir DIR] [--ops N] [--reads N]
//                  [--inodes N] [--skip-throughput] [--skip-restart] [--keep DIR]
//
// Not a test: it prints a table and exits 0 unless something fails.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/meta_log.h"
#include "src/namespace_client.h"
#include "src/namespace_db.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int kReadDirEntries = 10'000;

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "registry_bench: " << message << "\n";
  std::exit(1);
}

void Check(const Status& st, const std::string& what) {
  if (!st.ok()) Die(what + ": " + st.ToString());
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what + ": " + r.status().ToString());
  return std::move(r).value();
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

NamespaceClient::Options BenchClientOptions() {
  NamespaceClient::Options o;
  o.attempt_timeout = 30s;  // a slow disk is a result here, not an error
  o.budget = 60s;
  return o;
}

class RegistryProcess {
 public:
  RegistryProcess(std::string binary, std::string meta, std::string log)
      : binary_(std::move(binary)), meta_(std::move(meta)), log_(std::move(log)) {}

  // Starts the registry and waits until it answers; returns the time that took.
  Clock::duration StartAndWait(zmq::context_t& ctx) {
    port_ = FreeTcpPortPair();
    const uint16_t beacon_port = FreeUdpPort();
    if (port_ == 0 || beacon_port == 0) Die("no free port");
    DaemonProcess::Options o;
    o.argv = {binary_,       "--meta",        meta_,
              "--listen",    endpoint(),      "--beacon",
              "off",         "--beacon-port", std::to_string(beacon_port),
              "--log-level", "warn"};
    o.log_path = log_;
    const auto start = Clock::now();
    process_ = Must(DaemonProcess::Start(o), "start " + binary_);
    NamespaceClient::Options quick;
    quick.attempt_timeout = 200ms;
    quick.budget = 200ms;
    NamespaceClient probe(ctx, endpoint(), quick);
    if (!WaitUntil([&] { return probe.GetAttr(kRootIno).ok() || !process_.Running(); }, 600s,
                   2ms) ||
        !process_.Running()) {
      Die("registry did not come up:\n" + process_.ReadLog());
    }
    return Clock::now() - start;
  }

  // SIGTERM; returns how long the clean shutdown took.
  Clock::duration Stop() {
    const auto start = Clock::now();
    const int status = process_.Stop(SIGTERM, 600s);
    if (!DaemonProcess::ExitedWith(status, 0)) {
      Die("registry did not exit cleanly:\n" + process_.ReadLog());
    }
    return Clock::now() - start;
  }

  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  const std::string binary_;
  const std::string meta_;
  const std::string log_;
  uint16_t port_ = 0;
  DaemonProcess process_;
};

// ---------------------------------------------------------------------------
// Part 1: throughput.

struct Row {
  std::string op;
  int clients = 0;
  uint64_t ops = 0;
  double seconds = 0;
  double p50_us = 0;
  double p99_us = 0;
  std::string note;
};

// Runs `op(thread, i)` for i in [0, per_thread) on `clients` threads at once
// and returns the rate and latency percentiles.
Row Measure(const std::string& name, int clients, uint64_t per_thread,
            const std::function<void(int, uint64_t)>& op) {
  std::vector<std::vector<double>> latencies(clients);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      latencies[t].reserve(per_thread);
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (uint64_t i = 0; i < per_thread; ++i) {
        const auto s = Clock::now();
        op(t, i);
        latencies[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
      }
    });
  }
  while (ready.load() < clients) std::this_thread::yield();
  const auto start = Clock::now();
  go = true;
  for (auto& th : threads) th.join();
  const auto took = Clock::now() - start;
  std::vector<double> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  Row row;
  row.op = name;
  row.clients = clients;
  row.ops = all.size();
  row.seconds = Seconds(took);
  if (!all.empty()) {
    row.p50_us = all[all.size() / 2];
    row.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return row;
}

MknodRequest FileRequest(uint64_t parent, std::string name) {
  MknodRequest r;
  r.parent = parent;
  r.name = std::move(name);
  r.type = FileType::kRegular;
  r.mode = 0644;
  return r;
}

std::vector<Row> RunThroughput(zmq::context_t& ctx, const std::string& endpoint, uint64_t ops,
                               uint64_t reads) {
  std::vector<Row> rows;
  NamespaceClient setup(ctx, endpoint, BenchClientOptions());

  // The 10,000-entry directory, filled by many clients at once (untimed).
  MknodRequest big_req = FileRequest(kRootIno, "big");
  big_req.type = FileType::kDirectory;
  big_req.mode = 0755;
  const uint64_t big = Must(setup.Mkdir(big_req), "mkdir big").ino;
  {
    std::vector<std::thread> fill;
    for (int t = 0; t < 16; ++t) {
      fill.emplace_back([&, t] {
        NamespaceClient c(ctx, endpoint, BenchClientOptions());
        for (int i = t; i < kReadDirEntries; i += 16) {
          Must(c.Mknod(FileRequest(big, fmt::format("entry-{:05}", i))), "fill big");
        }
      });
    }
    for (auto& th : fill) th.join();
  }

  for (int clients : {1, 8}) {
    std::vector<std::unique_ptr<NamespaceClient>> c;
    std::vector<uint64_t> dirs;
    std::vector<std::vector<uint64_t>> inos(clients);
    for (int t = 0; t < clients; ++t) {
      c.push_back(std::make_unique<NamespaceClient>(ctx, endpoint, BenchClientOptions()));
      MknodRequest d = FileRequest(kRootIno, fmt::format("c{}-t{}", clients, t));
      d.type = FileType::kDirectory;
      d.mode = 0755;
      dirs.push_back(Must(setup.Mkdir(d), "mkdir").ino);
    }
    const uint64_t per_thread = std::max<uint64_t>(1, ops / clients);
    const uint64_t reads_per_thread = std::max<uint64_t>(1, reads / clients);

    rows.push_back(Measure("create", clients, per_thread, [&](int t, uint64_t i) {
      inos[t].push_back(
          Must(c[t]->Mknod(FileRequest(dirs[t], fmt::format("f{}", i))), "create").ino);
    }));
    rows.push_back(Measure("lookup", clients, reads_per_thread, [&](int t, uint64_t i) {
      Must(c[t]->Lookup(dirs[t], fmt::format("f{}", (i * 7919) % per_thread)), "lookup");
    }));
    rows.push_back(Measure("getattr", clients, reads_per_thread, [&](int t, uint64_t i) {
      Must(c[t]->GetAttr(inos[t][(i * 7919) % per_thread]), "getattr");
    }));
    const uint64_t listings = std::max<uint64_t>(2, 40 / clients);
    uint64_t listed = 0;
    Row plus = Measure("readdir", clients, listings, [&](int t, uint64_t) {
      ReadDirRequest r{big, "", 1000, true};
      uint64_t n = 0;
      while (true) {
        auto page = Must(c[t]->ReadDir(r), "readdir");
        n += page.entries.size();
        if (!page.more || page.entries.empty()) break;
        r.after = page.entries.back().name;
      }
      if (n != kReadDirEntries) Die("readdir listed " + std::to_string(n) + " entries");
      if (t == 0) listed = n;
    });
    plus.note = fmt::format("full listings of {}, readdirplus, pages of 1000", listed);
    rows.push_back(plus);
    Row names = Measure("readdir", clients, listings, [&](int t, uint64_t) {
      ReadDirRequest r{big, "", kMaxReadDirPage, false};
      while (true) {
        auto page = Must(c[t]->ReadDir(r), "readdir");
        if (!page.more || page.entries.empty()) break;
        r.after = page.entries.back().name;
      }
    });
    names.note =
        fmt::format("full listings of {}, names, pages of {}", kReadDirEntries, kMaxReadDirPage);
    rows.push_back(names);
    rows.push_back(Measure("rename", clients, per_thread, [&](int t, uint64_t i) {
      Check(c[t]->Rename(
                RenameRequest{dirs[t], fmt::format("f{}", i), dirs[t], fmt::format("g{}", i), 0}),
            "rename");
    }));
    rows.push_back(Measure("unlink", clients, per_thread, [&](int t, uint64_t i) {
      Check(c[t]->Unlink(dirs[t], fmt::format("g{}", i)), "unlink");
    }));
  }
  return rows;
}

void PrintThroughput(const std::vector<Row>& rows) {
  fmt::print("\nMetadata operations over loopback (one registry, N clients)\n");
  fmt::print("{:<9} {:>7} {:>8} {:>9} {:>11} {:>10} {:>10}  {}\n", "op", "clients", "ops",
             "seconds", "ops/s", "p50 us", "p99 us", "");
  for (const auto& r : rows) {
    fmt::print("{:<9} {:>7} {:>8} {:>9.3f} {:>11.0f} {:>10.0f} {:>10.0f}  {}\n", r.op, r.clients,
               r.ops, r.seconds, r.ops / r.seconds, r.p50_us, r.p99_us, r.note);
  }
}

// ---------------------------------------------------------------------------
// Part 2: restart with many inodes.

struct MadeLog {
  uint64_t records = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Writes the log of `inodes` creates (1,000 directories, then files spread
// over them, each with one committed 4 KiB shard) into `meta`.
MadeLog MakeLog(const std::string& meta, uint64_t inodes) {
  const auto start = Clock::now();
  fs::create_directories(meta);
  const std::string path = meta + "/log.000001";
  auto log = Must(MetaLog::Open(path, 1, [](uint64_t, std::string_view) { return Status::Ok(); }),
                  "open log");
  // A store alongside, so every record is one the registry would accept
  // (ids picked by Prepare, every op applied).
  NamespaceStore store;
  MadeLog made;
  int64_t now = 1'700'000'000'000'000'000;
  auto append = [&](NamespaceOp op) {
    if (int64_t* t = OpTime(&op); t != nullptr) *t = ++now;
    store.Prepare(&op);
    auto applied = store.Apply(op);
    if (!applied.ok()) Die("generated op does not apply: " + applied.status().ToString());
    const std::string bytes = EncodeOp(op);
    Must(log->Append(bytes), "append");
    made.records++;
    made.bytes += bytes.size() + kLogRecordHeaderSize;
    return std::move(applied).value();
  };
  const uint64_t dir_count = std::min<uint64_t>(1000, inodes > 1 ? inodes - 1 : 0);
  std::vector<uint64_t> dirs;
  for (uint64_t d = 0; d < dir_count; ++d) {
    MkdirOp op;
    op.parent = kRootIno;
    op.name = fmt::format("d{:04}", d);
    op.mode = 0755;
    dirs.push_back(append(op).ino);
  }
  const std::vector<std::string> replicas = {"0123456789abcdef0123456789abcd01",
                                             "0123456789abcdef0123456789abcd02"};
  const uint64_t files = inodes > 1 + dir_count ? inodes - 1 - dir_count : 0;
  for (uint64_t f = 0; f < files; ++f) {
    MknodOp op;
    op.parent = dirs[f % dirs.size()];
    op.name = fmt::format("file-{:07}", f);
    op.mode = 0644;
    op.shard_size = kDefaultShardSize;
    const uint64_t ino = append(op).ino;
    CommitShardsOp commit;
    commit.ino = ino;
    commit.size = 4096;
    commit.shards = {ShardEntry{0, ino, 4096, ino * 2654435761u, replicas, std::nullopt}};
    append(commit);
    // Flushes now and then keep the pending buffer small.
    if (f % 65536 == 0) Check(log->Sync(), "sync");
  }
  Check(log->Sync(), "sync");
  if (store.Stats().inodes != inodes) Die("generated the wrong number of inodes");
  made.seconds = Seconds(Clock::now() - start);
  return made;
}

uint64_t DirBytes(const std::string& dir, const std::string& prefix) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().starts_with(prefix)) total += e.file_size();
  }
  return total;
}

void RunRestart(zmq::context_t& ctx, const std::string& registry, const std::string& base,
                uint64_t inodes) {
  const std::string meta = base + "/meta";
  const std::string log_only = base + "/meta-log-only";
  fmt::print("\nRestart with {} inodes (generating...)\n", inodes);
  std::cout.flush();
  MadeLog made = MakeLog(meta, inodes);
  fs::copy(meta, log_only);

  NamespaceDbOptions no_auto;
  no_auto.snapshot_every_records = 0;  // measure Open alone
  struct Line {
    std::string what;
    double seconds;
    std::string note;
  };
  std::vector<Line> lines;
  lines.push_back(
      {"write the log (test data)", made.seconds,
       fmt::format("{} records, {:.0f} MiB, one fdatasync", made.records, made.bytes / 1048576.0)});
  {
    auto start = Clock::now();
    auto db = Must(NamespaceDb::Open(meta, no_auto), "open from log");
    lines.push_back({"NamespaceDb::Open, log replay", Seconds(Clock::now() - start),
                     fmt::format("{} records replayed, {} inodes", db->stats().replayed_records,
                                 db->store().Stats().inodes)});
    start = Clock::now();
    Check(db->Snapshot(), "snapshot");
    lines.push_back({"NamespaceDb::Snapshot", Seconds(Clock::now() - start),
                     fmt::format("{:.0f} MiB snapshot", DirBytes(meta, "snap.") / 1048576.0)});
    start = Clock::now();
    db.reset();
    lines.push_back({"NamespaceDb close", Seconds(Clock::now() - start), ""});
  }
  {
    const auto start = Clock::now();
    auto db = Must(NamespaceDb::Open(meta, no_auto), "open from snapshot");
    lines.push_back({"NamespaceDb::Open, snapshot", Seconds(Clock::now() - start),
                     fmt::format("{} records replayed, {} inodes", db->stats().replayed_records,
                                 db->store().Stats().inodes)});
  }
  {
    RegistryProcess p(registry, log_only, base + "/registry-log-only.log");
    const auto up = p.StartAndWait(ctx);
    lines.push_back({"shardfs-registry start, log", Seconds(up), "exec until GetAttr answers"});
    const auto down = p.Stop();
    lines.push_back({"shardfs-registry SIGTERM", Seconds(down),
                     "includes the snapshot it starts after a long replay"});
  }
  {
    RegistryProcess p(registry, meta, base + "/registry-snapshot.log");
    const auto up = p.StartAndWait(ctx);
    lines.push_back(
        {"shardfs-registry start, snapshot", Seconds(up), "exec until GetAttr answers"});
    lines.push_back({"shardfs-registry SIGTERM", Seconds(p.Stop()), ""});
  }
  fmt::print("{:<34} {:>9}  {}\n", "step", "seconds", "");
  for (const auto& l : lines) fmt::print("{:<34} {:>9.3f}  {}\n", l.what, l.seconds, l.note);
}

}  // namespace
}  // namespace shardfs

int main(int argc, char** argv) {
  using namespace shardfs;
  std::string registry = BuildPath("nodeserver/shardfs-registry");
  std::string base_dir;
  uint64_t ops = 1000;
  uint64_t reads = 20000;
  uint64_t inodes = 1'000'000;
  bool skip_throughput = false;
  bool skip_restart = false;
  std::string keep;
  CLI::App app{"registry_bench: shardfs-registry metadata throughput and restart time"};
  app.add_option("--registry", registry, "the shardfs-registry binary")->capture_default_str();
  app.add_option("--dir", base_dir, "directory on the disk to measure (default: $TMPDIR)");
  app.add_option("--ops", ops, "logged operations (create, rename, unlink) per run, all clients")
      ->capture_default_str();
  app.add_option("--reads", reads, "lookups and getattrs per run, all clients")
      ->capture_default_str();
  app.add_option("--inodes", inodes, "inodes for the restart measurement")->capture_default_str();
  app.add_flag("--skip-throughput", skip_throughput, "only measure restarts");
  app.add_flag("--skip-restart", skip_restart, "only measure throughput");
  app.add_option("--keep", keep,
                 "make the restart data in this new directory and leave it there, to look at");
  CLI11_PARSE(app, argc, argv);

  if (!base_dir.empty()) setenv("TMPDIR", base_dir.c_str(), 1);
  TempDir dir("registry-bench");
  // Measured as run in production, with CURVE: this process's clients and,
  // through $SHARDFS_KEY (set before any thread exists), every registry.
  TestKey key(dir.Sub("cluster.key"));
  setenv("SHARDFS_KEY", key.path().c_str(), 1);
  zmq::context_t ctx;
  if (!skip_throughput) {
    RegistryProcess p(registry, dir.Sub("meta-throughput"), dir.Sub("registry.log"));
    p.StartAndWait(ctx);
    auto rows = RunThroughput(ctx, p.endpoint(), ops, reads);
    p.Stop();
    PrintThroughput(rows);
  }
  if (!skip_restart) {
    if (!keep.empty() && !std::filesystem::create_directory(keep)) Die(keep + " exists");
    RunRestart(ctx, registry, keep.empty() ? dir.path() : keep, inodes);
  }
  return 0;
}
