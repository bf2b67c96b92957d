// repair_bench: how long shardfs takes to restore full redundancy after
// losing a node, next to how long `cp` takes to copy the same bytes on the
// same disk in the same run.
//
// Starts a registry and 4 nodes (R=3, --repair-delay 1, --repair-rate 0 so
// the copy is not throttled) and a mount, writes --mib MiB in 64 MiB files
// through the mount, kills -9 the node holding the most, and polls
// `shardfs fsck` until every shard has 3 copies again. Reports:
//   - the bytes the lost node held,
//   - detection: kill until fsck first says degraded,
//   - restore: kill until fsck says healthy, and the copy phase alone
//     (restore minus the repair delay),
//   - cp -r of the lost node's data directory on the same disk, with a sync,
//     which is what copying those bytes costs without shardfs.
//
//   repair_bench [--mib N]        (default 1024)
//
// Not a test: prints a table, exits 0 unless something fails.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "tests/integration/test_cluster.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int FsckExit(TestCluster& cluster, json* out) {
  std::string text;
  int rc = Sh(cluster.Cli("--json fsck") + " 2>/dev/null", &text);
  *out = json::parse(text, nullptr, false);
  return rc;
}

bool WriteFile(const std::string& path, size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream out(path, std::ios::binary);
  std::string chunk(1 << 20, '\0');
  for (size_t done = 0; done < bytes; done += chunk.size()) {
    for (size_t i = 0; i < chunk.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(&chunk[i], &v, 8);
    }
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  out.close();
  return out.good();
}

int Run(size_t mib) {
  TestCluster::Options options;
  options.nodes = 4;
  options.replicas = 3;
  options.down_after = 1.0;
  options.registry_args = {"--repair-delay", "1", "--repair-rate", "0"};
  TestCluster cluster(options);
  if (Status st = cluster.Start(); !st.ok()) {
    fmt::print(stderr, "cluster: {}\n{}", st.ToString(), cluster.Logs());
    return 1;
  }
  TestMount mount(cluster, cluster.dir() + "/mnt");
  if (Status st = mount.Mount(); !st.ok()) {
    fmt::print(stderr, "mount: {}\n", st.ToString());
    return 1;
  }
  const auto write_start = Clock::now();
  for (size_t i = 0; i * 64 < mib; ++i) {
    const size_t bytes = std::min<size_t>(64, mib - i * 64) << 20;
    if (!WriteFile(mount.path() + "/f" + std::to_string(i), bytes, i)) {
      fmt::print(stderr, "writing through the mount failed\n");
      return 1;
    }
  }
  const double write_s = Seconds(Clock::now() - write_start);

  // The node holding the most bytes is the one to lose.
  json f;
  FsckExit(cluster, &f);
  std::string victim_id;
  uint64_t victim_bytes = 0;
  for (const auto& n : f["nodes"]) {
    if (n["bytes"].get<uint64_t>() > victim_bytes) {
      victim_bytes = n["bytes"].get<uint64_t>();
      victim_id = n["node_id"].get<std::string>();
    }
  }
  int victim = -1;
  for (int i = 0; i < options.nodes; ++i) {
    std::ifstream in(cluster.NodeDir(i) + "/node.id");
    std::string id;
    in >> id;
    if (id == victim_id) victim = i;
  }
  if (victim < 0) {
    fmt::print(stderr, "cannot find the fullest node\n");
    return 1;
  }

  const auto killed = Clock::now();
  cluster.node(victim).Kill();
  std::optional<double> degraded_s, healthy_s;
  while (Seconds(Clock::now() - killed) < 3600) {
    int rc = FsckExit(cluster, &f);
    if (rc == 1 && !degraded_s) degraded_s = Seconds(Clock::now() - killed);
    if (rc == 0 && degraded_s) {
      healthy_s = Seconds(Clock::now() - killed);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!healthy_s) {
    fmt::print(stderr, "redundancy was not restored within an hour\n{}", cluster.Logs());
    return 1;
  }

  // The same bytes copied by cp on the same disk.
  const std::string copy = cluster.dir() + "/cp-copy";
  const auto cp_start = Clock::now();
  if (Sh("cp -r " + cluster.NodeDir(victim) + " " + copy + " && sync") != 0) return 1;
  const double cp_s = Seconds(Clock::now() - cp_start);

  const double mib_held = victim_bytes / 1048576.0;
  const double copy_s = *healthy_s - 1.0;  // minus the repair delay
  fmt::print("repair_bench: {} MiB written through the mount in {:.1f} s (R=3, 4 nodes)\n", mib,
             write_s);
  fmt::print("{:<44} {:>10}\n", "lost node held", fmt::format("{:.0f} MiB", mib_held));
  fmt::print("{:<44} {:>10}\n", "kill -9 -> fsck degraded", fmt::format("{:.1f} s", *degraded_s));
  fmt::print("{:<44} {:>10}\n", "kill -9 -> fsck healthy (3 copies of all)",
             fmt::format("{:.1f} s", *healthy_s));
  fmt::print("{:<44} {:>10}\n", "  of which copying (after the 1 s delay)",
             fmt::format("{:.1f} s", copy_s));
  fmt::print("{:<44} {:>10}\n", "  copy rate", fmt::format("{:.0f} MiB/s", mib_held / copy_s));
  fmt::print("{:<44} {:>10}\n", "cp -r of its data dir + sync, same disk",
             fmt::format("{:.1f} s", cp_s));
  fmt::print("{:<44} {:>10}\n", "  cp rate", fmt::format("{:.0f} MiB/s", mib_held / cp_s));
  return 0;
}

}  // namespace
}  // namespace shardfs

int main(int argc, char** argv) {
  CLI::App app{"repair_bench: time to restore redundancy after losing a node, next to cp"};
  size_t mib = 1024;
  app.add_option("--mib", mib, "MiB to write before the node is lost")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return shardfs::Run(mib);
}
