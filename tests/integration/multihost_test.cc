// Discovery across machines, with network namespaces standing in for them.
//
// Three namespaces (a, b, c) with one veth each, joined by a bridge that
// lives in a fourth namespace, so nothing is added to the host's own network
// and every broadcast stays on 10.77.0.0/24 inside the test. The registry
// runs in a on its default ports (0.0.0.0:7400, beacon to UDP 7400); probes
// in b and c are given no registry endpoint and must find it by the beacon,
// register with a connectable address (their 10.77.0.x, not 0.0.0.0) and
// show up in the map. Needs root (CAP_NET_ADMIN); skipped otherwise.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

const std::string kIdB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const std::string kIdC = "cccccccccccccccccccccccccccccccc";
constexpr const char* kNsPrefix = "sfs-test-";

// Runs a command (no shell), waits, returns its exit status; output to `log`.
int RunCommand(const std::vector<std::string>& argv, const std::string& log) {
  DaemonProcess::Options o;
  o.argv = argv;
  o.log_path = log;
  auto p = DaemonProcess::Start(o);
  if (!p.ok()) return -1;
  auto status = p->WaitForExit(30s);
  if (!status) return -1;
  return WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ListNamespaces() {
  std::vector<std::string> out;
  // `ip netns list` prints "NAME" or "NAME (id: N)" per line.
  TempDir tmp("netns-list");
  if (RunCommand({"ip", "netns", "list"}, tmp.Sub("out")) != 0) return out;
  std::istringstream in(ReadFile(tmp.Sub("out")));
  std::string line;
  while (std::getline(in, line)) out.push_back(line.substr(0, line.find(' ')));
  return out;
}

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("SHARDFS_REGISTRY");
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    prefix_ = std::string(kNsPrefix) + std::to_string(getpid()) + "-";
    RemoveStaleNamespaces();
    if (RunCommand({"ip", "netns", "add", Ns("br")}, Log("setup")) != 0) {
      GTEST_SKIP() << "cannot create network namespaces:\n" << ReadFile(Log("setup"));
    }
    created_.push_back(Ns("br"));
    IpIn("br", {"link", "add", "br0", "type", "bridge"});
    IpIn("br", {"link", "set", "br0", "up"});
    int host = 1;
    for (const char* name : {"a", "b", "c"}) {
      ASSERT_EQ(RunCommand({"ip", "netns", "add", Ns(name)}, Log("setup")), 0)
          << ReadFile(Log("setup"));
      created_.push_back(Ns(name));
      // Both ends are created inside namespaces: the host never sees them.
      std::string veth = std::string("v-") + name;
      IpIn("br", {"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", Ns(name)});
      IpIn("br", {"link", "set", veth, "master", "br0", "up"});
      IpIn(name, {"link", "set", "lo", "up"});
      IpIn(name,
           {"addr", "add", "10.77.0." + std::to_string(host) + "/24", "brd", "+", "dev", "eth0"});
      IpIn(name, {"link", "set", "eth0", "up"});
      ++host;
    }
  }

  void TearDown() override {
    // Processes first (they live in the namespaces), then the namespaces;
    // deleting a namespace removes its veth ends and, in "br", the bridge.
    processes_.clear();
    for (const std::string& ns : created_) RunCommand({"ip", "netns", "del", ns}, Log("teardown"));
    created_.clear();
  }

  // Namespaces of earlier runs of this test whose process is gone (a crash
  // or kill -9 skipped TearDown). Those of live runs are left alone.
  void RemoveStaleNamespaces() {
    for (const std::string& ns : ListNamespaces()) {
      if (ns.rfind(kNsPrefix, 0) != 0) continue;
      std::string rest = ns.substr(std::string(kNsPrefix).size());
      pid_t pid = static_cast<pid_t>(std::atoi(rest.c_str()));
      if (pid <= 0) continue;
      if (pid == getpid() || kill(pid, 0) != 0) {
        RunCommand({"ip", "netns", "del", ns}, Log("stale"));
      }
    }
  }

  std::string Ns(const std::string& name) const { return prefix_ + name; }
  std::string Log(const std::string& name) const { return dir_.Sub(name + ".log"); }

  void IpIn(const std::string& ns, std::vector<std::string> args) {
    args.insert(args.begin(), {"ip", "-n", Ns(ns)});
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    ASSERT_EQ(RunCommand(args, Log("setup")), 0) << joined << "\n" << ReadFile(Log("setup"));
  }

  // Starts a long-running program inside namespace `ns`.
  DaemonProcess* StartIn(const std::string& ns, std::vector<std::string> argv,
                         const std::string& log) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", Ns(ns)});
    DaemonProcess::Options o;
    o.argv = argv;
    o.log_path = Log(log);
    auto p = DaemonProcess::Start(o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return nullptr;
    processes_.push_back(std::make_unique<DaemonProcess>(std::move(p).value()));
    return processes_.back().get();
  }

  DaemonProcess* StartRegistry(const std::string& beacon) {
    std::vector<std::string> argv = {BuildPath("nodeserver/shardfs-registry"),
                                     "--meta",
                                     dir_.Sub("meta"),
                                     "--cluster",
                                     cluster_,
                                     "--down-after",
                                     "2",
                                     "--log-level",
                                     "debug",
                                     "--key",
                                     key_.path()};
    if (!beacon.empty()) argv.insert(argv.end(), {"--beacon", beacon});
    return StartIn("a", argv, "registry");
  }

  DaemonProcess* StartLink(const std::string& ns, const std::string& id) {
    return StartIn(
        ns,
        {BuildPath("tests/integration/registry_link_probe"), "link", "--cluster", cluster_,
         "--node-id", id, "--endpoint", "tcp://0.0.0.0:7401", "--key", key_.path()},
        "link-" + ns);
  }

  // Runs the map probe in `ns` until the map has `up` up and `down` down
  // nodes; returns the map it saw (null JSON on failure).
  nlohmann::json WaitForMap(const std::string& ns, int up, int down) {
    std::string out = dir_.Sub("map-" + ns + "-" + std::to_string(up) + std::to_string(down));
    int rc = RunCommand(
        {"ip", "netns", "exec", Ns(ns), BuildPath("tests/integration/registry_link_probe"), "map",
         "--cluster", cluster_, "--key", key_.path(), "--expect-up", std::to_string(up),
         "--expect-down", std::to_string(down), "--timeout", "15", "--out", out},
        Log("map-" + ns));
    EXPECT_EQ(rc, 0) << ReadFile(Log("map-" + ns)) << "\nregistry:\n" << ReadFile(Log("registry"));
    if (rc != 0) return nullptr;
    return nlohmann::json::parse(ReadFile(out), nullptr, false);
  }

  static std::set<std::string> Endpoints(const nlohmann::json& map, const std::string& state) {
    std::set<std::string> out;
    for (const auto& n : map["nodes"]) {
      if (n["state"] == state) out.insert(n["endpoint"].get<std::string>());
    }
    return out;
  }

  TempDir dir_{"multihost"};
  // Only a file: the probes and the registry are processes of their own.
  TestKey key_{dir_.Sub("cluster.key"), TestKey::Scope::kFileOnly};
  std::string prefix_;
  std::string cluster_ = "mh-" + std::to_string(getpid());
  std::vector<std::string> created_;
  std::vector<std::unique_ptr<DaemonProcess>> processes_;
};

TEST_F(MultiHostTest, NodesInOtherNamespacesDiscoverTheRegistryAndRegister) {
  DaemonProcess* registry = StartRegistry("10.77.0.255");
  ASSERT_NE(registry, nullptr);
  DaemonProcess* b = StartLink("b", kIdB);
  ASSERT_NE(StartLink("c", kIdC), nullptr);
  ASSERT_NE(b, nullptr);

  nlohmann::json map = WaitForMap("c", 2, 0);
  ASSERT_FALSE(map.is_null());
  EXPECT_EQ(map["registry"], "tcp://10.77.0.1:7400");
  EXPECT_EQ(Endpoints(map, "up"),
            (std::set<std::string>{"tcp://10.77.0.2:7401", "tcp://10.77.0.3:7401"}));
  // The probe prints its registration from a polling thread, so the line
  // may land a moment after the map already shows the node.
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ReadFile(Log("link-b"))
                   .find("registered tcp://10.77.0.1:7400 tcp://10.77.0.2:7401") !=
               std::string::npos;
      },
      5s))
      << ReadFile(Log("link-b"));

  // A node machine dies: the others see it go down.
  b->Kill();
  map = WaitForMap("a", 1, 1);
  ASSERT_FALSE(map.is_null());
  EXPECT_EQ(Endpoints(map, "down"), (std::set<std::string>{"tcp://10.77.0.2:7401"}));
  EXPECT_TRUE(registry->Running());
}

// `--beacon lan` inside namespace a: the only non-loopback interface there
// is the test's own veth, so the broadcast goes to 10.77.0.255 and nowhere
// else.
TEST_F(MultiHostTest, LanBeaconReachesTheSubnet) {
  ASSERT_NE(StartRegistry("lan"), nullptr);
  ASSERT_NE(StartLink("b", kIdB), nullptr);
  nlohmann::json map = WaitForMap("b", 1, 0);
  ASSERT_FALSE(map.is_null());
  EXPECT_EQ(map["registry"], "tcp://10.77.0.1:7400");
  EXPECT_EQ(Endpoints(map, "up"), (std::set<std::string>{"tcp://10.77.0.2:7401"}));
}

// The default beacon is loopback-only: a node on another machine hears
// nothing and never registers.
TEST_F(MultiHostTest, DefaultLoopbackBeaconStaysOnTheMachine) {
  ASSERT_NE(StartRegistry(""), nullptr);
  ASSERT_NE(StartLink("b", kIdB), nullptr);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(ReadFile(Log("link-b")).find("registered"), std::string::npos)
      << ReadFile(Log("link-b"));
}

}  // namespace
}  // namespace shardfs
