// shardfs-registry: the cluster's registry daemon.
//
// Parses the flags of DESIGN.md, takes the metadata directory, runs a
// RegistryServer until SIGTERM or SIGINT and shuts it down cleanly (the
// signals are taken synchronously on the main thread, see
// src/termination_signal.h).
#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "nodeserver/registry_namespace.h"
#include "nodeserver/registry_server.h"
#include "nodeserver/replica_repair.h"
#include "src/byte_size.h"
#include "src/cluster_key.h"
#include "src/namespace_db.h"
#include "src/socket_security.h"
#include "src/termination_signal.h"
#include "src/unique_fd.h"

namespace shardfs {
namespace {

struct RegistryFlags {
  std::string meta;
  std::string listen = "tcp://0.0.0.0:7400";
  std::string beacon;  // "" = loopback broadcast
  uint16_t beacon_port = kDefaultBeaconPort;
  std::string cluster = "shardfs";
  uint32_t replicas = 3;
  std::string shard_size = "4M";
  double down_after_seconds = 5.0;
  double garbage_grace_seconds = 30.0;
  double session_lease_seconds = 15.0;
  double repair_delay_seconds = 60.0;
  double repair_rate_mib = 64.0;
  std::string log_level = "info";
  std::string key;  // "": $SHARDFS_KEY, else META/cluster.key
  bool insecure = false;
};

void DefineFlags(CLI::App& app, RegistryFlags& f) {
  app.add_option("--meta", f.meta, "Directory of the registry's metadata (created if missing)")
      ->required();
  app.add_option("--listen", f.listen,
                 "Request socket, tcp://HOST:PORT; the cluster map is published on PORT+1")
      ->capture_default_str();
  app.add_option("--beacon", f.beacon,
                 "Where the beacon goes: ADDR[:PORT][,...], 'lan' (every interface's "
                 "broadcast address) or 'off' (default 127.255.255.255)");
  app.add_option("--beacon-port", f.beacon_port, "UDP port of the beacon")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--cluster", f.cluster, "Cluster name; beacons of other clusters are ignored")
      ->capture_default_str();
  app.add_option("--replicas", f.replicas, "Default replication goal of new files")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  app.add_option("--shard-size", f.shard_size,
                 "Shard size of new files (K/M/G suffixes; 4 KiB multiple, at most 64M)")
      ->capture_default_str()
      ->check([](const std::string& value) -> std::string {
        auto v = ParseByteSize(value);
        if (!v.ok()) return v.status().message();
        if (*v < 4096 || *v > (64u << 20) || *v % 4096 != 0) {
          return "shard size must be a multiple of 4K between 4K and 64M";
        }
        return "";
      });
  app.add_option("--down-after", f.down_after_seconds,
                 "Seconds of silence after which a node is marked down")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--gc-grace", f.garbage_grace_seconds,
                 "Seconds a replaced or deleted shard generation stays on the nodes, so "
                 "readers holding the old shard table can finish")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--session-lease", f.session_lease_seconds,
                 "Seconds after which the files a silent mount or CLI held open are "
                 "released (unlinked ones then deleted); clients renew every third of it")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--repair-delay", f.repair_delay_seconds,
                 "Seconds a node may be down before its shards are copied again elsewhere")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 30.0 * 86400));
  app.add_option("--repair-rate", f.repair_rate_mib,
                 "MiB/s that re-replication may copy, over the whole cluster (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--key", f.key,
                 "Cluster key file (default: $SHARDFS_KEY, else META/cluster.key, made on the "
                 "first start)");
  app.add_flag("--insecure", f.insecure,
               "No cluster key: plain, unauthenticated connections (testing only)");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
}

void ConfigureLogging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("registry");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%t] %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

// Creates the metadata directory and locks it, so two registries can never
// share one (they would each believe they own the namespace).
Result<UniqueFd> TakeMetaDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::Error(ErrorCode::kIoError, "cannot create --meta " + dir + ": " + ec.message());
  }
  const std::string lock_path = dir + "/registry.lock";
  UniqueFd fd(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    return Status::Error(ErrnoToErrorCode(errno),
                         "cannot open " + lock_path + ": " + strerror(errno));
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return Status::Error(ErrorCode::kBusy, "another registry is using --meta " + dir + " (" +
                                               lock_path + " is locked)");
  }
  return fd;
}

RegistryServer::Options ServerOptions(const RegistryFlags& f) {
  RegistryServer::Options o;
  o.listen = f.listen;
  o.cluster = f.cluster;
  o.beacon = f.beacon;
  o.beacon_port = f.beacon_port;
  o.replicas = f.replicas;
  o.shard_size = ParseByteSize(f.shard_size).value();  // checked by the flag's validator
  o.down_after = std::chrono::milliseconds(static_cast<int64_t>(f.down_after_seconds * 1000));
  return o;
}

ReplicaRepair::Options RepairOptions(const RegistryFlags& f) {
  ReplicaRepair::Options o;
  o.default_goal = f.replicas;
  o.repair_delay = std::chrono::milliseconds(static_cast<int64_t>(f.repair_delay_seconds * 1000));
  o.bytes_per_second = static_cast<uint64_t>(f.repair_rate_mib * 1024 * 1024);
  // Scan often enough that a short test delay is honoured, never more than
  // every 200 ms (a scan walks every shard table).
  o.scan_interval = std::clamp(o.repair_delay / 4, std::chrono::milliseconds(200),
                               std::chrono::milliseconds(2000));
  return o;
}

int Fail(const Status& status) {
  spdlog::critical("{}", status.ToString());
  return 1;
}

}  // namespace
}  // namespace shardfs

int main(int argc, char** argv) {
  using namespace shardfs;
  RegistryFlags flags;
  CLI::App app{"shardfs-registry: membership, namespace and discovery of a shardfs cluster"};
  DefineFlags(app, flags);
  CLI11_PARSE(app, argc, argv);
  ConfigureLogging(flags.log_level);

  // Before any thread exists (the ZeroMQ context starts some).
  BlockTerminationSignals();
  auto meta_lock = TakeMetaDir(flags.meta);
  if (!meta_lock.ok()) return Fail(meta_lock.status());

  // After the lock, so two registries never race to create the key; before
  // the first socket, which takes the process's key.
  auto key = ChooseClusterKey(flags.key, flags.insecure,
                              (std::filesystem::path(flags.meta) / kRegistryKeyFile).string(),
                              /*create_default=*/true);
  if (!key.ok()) return Fail(key.status());
  if (key->created) {
    spdlog::info(
        "registry: made a new cluster key {} (fingerprint {}); copy it to every node, "
        "mount and admin machine (--key, or /etc/shardfs/cluster.key)",
        key->path, key->key->Fingerprint());
  } else if (key->key) {
    spdlog::info("registry: cluster key {} (fingerprint {})", key->path, key->key->Fingerprint());
  } else {
    spdlog::warn("registry: {}", kInsecureWarning);
  }
  SetProcessClusterKey(key->key);

  auto db = NamespaceDb::Open(flags.meta);
  if (!db.ok()) return Fail(db.status());

  zmq::context_t context;
  RegistryServer server(context, ServerOptions(flags));
  RegistryNamespace::Options ns_options;
  ns_options.default_replicas = flags.replicas;
  ns_options.default_shard_size = static_cast<uint32_t>(ParseByteSize(flags.shard_size).value());
  ns_options.garbage_grace =
      std::chrono::milliseconds(static_cast<int64_t>(flags.garbage_grace_seconds * 1000));
  ns_options.session_lease =
      std::chrono::milliseconds(static_cast<int64_t>(flags.session_lease_seconds * 1000));
  RegistryNamespace namespace_service(context, db->get(), &server.membership(), ns_options);
  ReplicaRepair repair(context, db->get(), &server.membership(), RepairOptions(flags));
  server.SetNamespaceService(&namespace_service);
  server.SetHandler(MessageType::kFsck, [&](RpcRequest& r) { return repair.HandleFsck(r); });
  server.SetHandler(MessageType::kReportBadReplica,
                    [&](RpcRequest& r) { return repair.HandleReportBadReplica(r); });
  server.SetHandler(MessageType::kRebalance,
                    [&](RpcRequest& r) { return repair.HandleRebalance(r); });
  if (Status st = server.Start(); !st.ok()) return Fail(st);
  namespace_service.Start();
  repair.Start();
  spdlog::info("registry: serving {} ({} inodes)", server.endpoint(),
               (*db)->store().Stats().inodes);

  int sig = WaitForTerminationSignal();
  spdlog::info("registry: {} received, shutting down", strsignal(sig));
  server.Stop();
  repair.Stop();
  namespace_service.Stop();
  spdlog::info("registry: stopped");
  return 0;
}
