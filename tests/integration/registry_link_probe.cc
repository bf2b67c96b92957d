// registry_link_probe: the node and client side of discovery, as a process.
//
// Integration tests run it where an in-process object cannot go, chiefly
// inside network namespaces (`ip netns exec NS registry_link_probe ...`):
//
//   link  runs a RegistryLink for a pretend node (registry found by the
//         beacon unless --registry is given) until SIGTERM; prints
//         "registered REGISTRY ADVERTISED" to stdout on each registration.
//   map   finds the registry the same way, follows its cluster map and exits
//         0 once the map shows exactly --expect-up up and --expect-down down
//         nodes (1 on timeout), writing the map as JSON to --out.
//
// It stands in for shardfs-node until the node server registers itself.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "src/beacon_listener.h"
#include "src/cluster_map_subscriber.h"
#include "src/registry_link.h"
#include "src/socket_security.h"
#include "src/termination_signal.h"

namespace shardfs {
namespace {

struct Flags {
  std::string registry;
  std::string key;  // cluster key file, as --key of the daemons
  std::string cluster = "shardfs";
  uint16_t beacon_port = kDefaultBeaconPort;
  // link
  std::string node_id;
  std::string endpoint;
  uint64_t capacity = 1ull << 30;
  // map
  int expect_up = 0;
  int expect_down = 0;
  double timeout_seconds = 20;
  std::string out;
};

int RunLink(const Flags& f) {
  zmq::context_t context;
  RegistryLink::Options o;
  o.registry_endpoint = f.registry;
  o.cluster = f.cluster;
  o.beacon_port = f.beacon_port;
  std::atomic<uint64_t> last_printed{0};
  RegistryLink link(context, o, [&f] {
    RegistryLink::NodeReport r;
    r.node_id = f.node_id;
    r.endpoint = f.endpoint;
    r.capacity = f.capacity;
    r.used = 0;
    return r;
  });
  if (Status st = link.Start(); !st.ok()) {
    spdlog::error("{}", st.ToString());
    return 1;
  }
  // A watcher thread reports registrations; main waits for the signal.
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done) {
      uint64_t n = link.registrations();
      if (n != last_printed) {
        last_printed = n;
        std::printf("registered %s %s\n", link.registry_endpoint().c_str(),
                    link.advertised_endpoint().c_str());
        std::fflush(stdout);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  WaitForTerminationSignal();
  done = true;
  watcher.join();
  link.Stop();
  return 0;
}

nlohmann::json MapToJson(const std::string& registry, const ClusterMap& map) {
  nlohmann::json j;
  j["registry"] = registry;
  j["epoch"] = map.epoch;
  j["nodes"] = nlohmann::json::array();
  for (const NodeRecord& n : map.nodes) {
    j["nodes"].push_back({{"id", n.id},
                          {"endpoint", n.endpoint},
                          {"host", n.host},
                          {"state", std::string(NodeStateName(n.state))},
                          {"capacity", n.capacity}});
  }
  return j;
}

int RunMap(const Flags& f) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(f.timeout_seconds * 1000));
  std::string registry = RegistryEndpointFromFlagOrEnv(f.registry);
  std::string publish;
  if (registry.empty()) {
    auto beacon = WaitForBeacon(f.cluster, f.beacon_port, timeout);
    if (!beacon.ok()) {
      spdlog::error("{}", beacon.status().ToString());
      return 1;
    }
    registry = beacon->registry_endpoint;
    publish = beacon->publish_endpoint;
  }
  zmq::context_t context;
  ClusterMapSubscriber sub(context, {registry, publish});
  if (Status st = sub.Start(); !st.ok()) {
    spdlog::error("{}", st.ToString());
    return 1;
  }
  auto counts_match = [&f](const ClusterMap& m) {
    int up = 0, down = 0;
    for (const NodeRecord& n : m.nodes) {
      if (n.state == NodeState::kUp) ++up;
      if (n.state == NodeState::kDown) ++down;
    }
    return up == f.expect_up && down == f.expect_down;
  };
  auto map = sub.WaitFor(counts_match, timeout);
  auto last = map ? map : sub.Current();
  if (!f.out.empty()) {
    std::ofstream out(f.out);
    out << (last ? MapToJson(registry, *last).dump(2) : std::string("null")) << "\n";
  }
  sub.Stop();
  if (!map) {
    spdlog::error("the cluster map did not reach {} up / {} down within {} s", f.expect_up,
                  f.expect_down, f.timeout_seconds);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace shardfs

int main(int argc, char** argv) {
  using namespace shardfs;
  Flags f;
  CLI::App app{"registry_link_probe: discovery and membership from the node side (tests)"};
  app.require_subcommand(1);
  for (CLI::App* sub : {app.add_subcommand("link", "register and heartbeat until SIGTERM"),
                        app.add_subcommand("map", "wait for a cluster map shape")}) {
    sub->add_option("--registry", f.registry, "registry endpoint (default: beacon)");
    sub->add_option("--cluster", f.cluster);
    sub->add_option("--beacon-port", f.beacon_port);
    sub->add_option("--key", f.key, "cluster key file")->required();
  }
  CLI::App* link = app.get_subcommand("link");
  link->add_option("--node-id", f.node_id)->required();
  link->add_option("--endpoint", f.endpoint)->required();
  link->add_option("--capacity", f.capacity);
  CLI::App* map = app.get_subcommand("map");
  map->add_option("--expect-up", f.expect_up);
  map->add_option("--expect-down", f.expect_down);
  map->add_option("--timeout", f.timeout_seconds);
  map->add_option("--out", f.out);
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_color_mt("probe"));
  spdlog::set_level(spdlog::level::debug);
  BlockTerminationSignals();
  auto key = LoadClusterKey(f.key);
  if (!key.ok()) {
    spdlog::error("{}", key.status().ToString());
    return 2;
  }
  SetProcessClusterKey(*key);
  if (link->parsed()) return RunLink(f);
  return RunMap(f);
}
