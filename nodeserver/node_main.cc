// shardfs-node: stores shards on this machine's disk and serves them.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "nodeserver/node_server.h"
#include "nodeserver/shard_scrubber.h"
#include "src/byte_size.h"
#include "src/cluster_key.h"
#include "src/registry_link.h"
#include "src/socket_security.h"
#include "src/termination_signal.h"

namespace {

struct Flags {
  std::string data_dir;
  std::string listen = "tcp://0.0.0.0:7410";
  std::string registry;
  std::string capacity = "0";
  std::string cluster = "shardfs";
  std::string log_level = "info";
  std::string key;
  bool insecure = false;
  int beacon_port = 7400;
  int workers = 8;
  uint64_t inline_read_kib = 256;
  double scrub_rate_mib = 8;
  uint64_t scrub_period_s = 7 * 24 * 3600;
};

void ParseFlags(int argc, char** argv, Flags* flags) {
  CLI::App app{"shardfs-node: stores shards under --data and serves them to the cluster"};
  app.add_option("--data", flags->data_dir, "directory holding this node's shards")->required();
  app.add_option("--listen", flags->listen, "ZeroMQ endpoint to serve on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--registry", flags->registry,
                 "registry endpoint (default: $SHARDFS_REGISTRY, else listen for the beacon)")
      ->envname("SHARDFS_REGISTRY");
  app.add_option("--capacity", flags->capacity,
                 "space this node offers, like 100G (0: the whole file system)")
      ->capture_default_str();
  app.add_option("--cluster", flags->cluster, "cluster name")->capture_default_str();
  app.add_option("--key", flags->key,
                 "cluster key file (default: $SHARDFS_KEY, else /etc/shardfs/cluster.key)");
  app.add_flag("--insecure", flags->insecure,
               "no cluster key: plain, unauthenticated connections (testing only)");
  app.add_option("--beacon-port", flags->beacon_port, "UDP port to listen for the beacon on")
      ->capture_default_str();
  app.add_option("--workers", flags->workers, "disk worker threads")->capture_default_str();
  app.add_option("--inline-read-limit", flags->inline_read_kib,
                 "KiB of blocks a cached read may take to be answered without a worker (0: none)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{16} << 10))
      ->capture_default_str();
  app.add_option("--scrub-rate", flags->scrub_rate_mib,
                 "MiB per second the background scrub reads at most (0: no scrubbing)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  // Bounded so that "now + period" stays far from the clock's range.
  app.add_option("--scrub-period", flags->scrub_period_s,
                 "seconds from the start of one scrub pass to the start of the next")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10} * 365 * 24 * 3600))
      ->capture_default_str();
  app.add_option("--log-level", flags->log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace shardfs;
  Flags flags;
  ParseFlags(argc, argv, &flags);
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  BlockTerminationSignals();

  auto capacity = ParseByteSize(flags.capacity);
  if (!capacity.ok()) {
    spdlog::error("--capacity: {}", capacity.status().message());
    return 2;
  }

  // Before the first socket: every socket of the process takes it.
  auto key = ChooseClusterKey(flags.key, flags.insecure, kDefaultKeyPath, false);
  if (!key.ok()) {
    spdlog::error("{}", key.status().message());
    return 2;
  }
  if (key->key) {
    spdlog::info("cluster key {} (fingerprint {})", key->path, key->key->Fingerprint());
  } else {
    spdlog::warn("{}", kInsecureWarning);
  }
  SetProcessClusterKey(key->key);

  // ZeroMQ encrypts and decrypts (CURVE) on its I/O threads: two, so the
  // shards of several clients are not all sealed on one core.
  zmq::context_t context(/*io_threads=*/2);
  NodeServer::Options options;
  options.data_dir = flags.data_dir;
  options.listen = flags.listen;
  options.capacity_bytes = *capacity;
  options.workers = flags.workers;
  options.inline_read_bytes = flags.inline_read_kib << 10;
  auto server = NodeServer::Start(context, options);
  if (!server.ok()) {
    spdlog::error("cannot start: {}", server.status().ToString());
    return 1;
  }
  spdlog::info("node {} serving {} on {}", (*server)->node_id(), flags.data_dir,
               (*server)->endpoint());

  // Joins the cluster and heartbeats from its own thread; a registry that is
  // away only delays that, the node serves reads meanwhile.
  RegistryLink::Options link_options;
  link_options.registry_endpoint = flags.registry;
  link_options.cluster = flags.cluster;
  link_options.beacon_port = static_cast<uint16_t>(flags.beacon_port);
  NodeServer* node = server->get();
  RegistryLink link(context, link_options, [node] {
    StoreUsage usage = node->store().Usage();
    RegistryLink::NodeReport report;
    report.node_id = node->node_id();
    report.endpoint = node->endpoint();
    report.capacity = usage.capacity_bytes;
    report.used = usage.used_bytes;
    report.shard_count = usage.shard_count;
    return report;
  });
  if (Status st = link.Start(); !st.ok()) {
    spdlog::error("cannot join the cluster: {}", st.ToString());
    return 1;
  }

  // Re-reads every shard in the background; a bad one is reported to the
  // registry through the link, which sends it from its own thread.
  ShardScrubber::Options scrub_options;
  scrub_options.bytes_per_second = static_cast<uint64_t>(flags.scrub_rate_mib * (1 << 20));
  scrub_options.period = std::chrono::seconds(flags.scrub_period_s);
  ShardScrubber scrubber(
      &node->store(), scrub_options, [&link](const ShardKey& key, const Status& status) {
        spdlog::warn("scrub: shard {} is bad: {}", key.ToString(), status.ToString());
        link.ReportBadReplica(key, status.ToString());
      });
  if (scrub_options.bytes_per_second > 0) {
    scrubber.Start();
    spdlog::info("scrubbing at up to {} MiB/s, a pass every {} s", flags.scrub_rate_mib,
                 flags.scrub_period_s);
  } else {
    spdlog::info("scrubbing is off (--scrub-rate 0)");
  }

  int sig = WaitForTerminationSignal();
  spdlog::info("signal {}: shutting down", sig);
  scrubber.Stop();  // before the link, which its callback uses
  link.Stop();
  (*server)->Stop();
  return 0;
}
