// Discovery and membership against a real shardfs-registry process.
//
// The registry runs on free loopback ports with its beacon on the loopback
// broadcast address and a non-default beacon port; everything else (the
// address, the publish socket) is learned from the beacon, as a node started
// without --registry would.
#include <gtest/gtest.h>
#include <unistd.h>

#include <zmq_addon.hpp>

#include "protocol/envelope.h"
#include "protocol/health_messages.h"
#include "protocol/registry_messages.h"
#include "src/beacon_listener.h"
#include "src/cluster_map_subscriber.h"
#include "src/registry_link.h"
#include "src/rpc_channel.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

constexpr auto kDownAfter = 2s;
const std::string kNodeId = "0123456789abcdef0123456789abcdef";

class DiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("SHARDFS_REGISTRY");  // discovery must not be short-circuited
    cluster_ = "disc-" + std::to_string(getpid());
    port_ = FreeTcpPortPair();
    beacon_port_ = FreeUdpPort();
    ASSERT_NE(port_, 0);
    ASSERT_NE(beacon_port_, 0);
    ASSERT_NE(beacon_port_, 7400);
    StartRegistry(&registry_, cluster_, port_, "registry.log");
  }

  void TearDown() override {
    if (registry_.pid() > 0) {
      int status = registry_.Stop(SIGTERM, 5s);
      EXPECT_TRUE(DaemonProcess::ExitedWith(status, 0)) << "status " << status << "\n"
                                                        << registry_.ReadLog();
    }
  }

  void StartRegistry(DaemonProcess* out, const std::string& cluster, uint16_t port,
                     const std::string& log) {
    DaemonProcess::Options o;
    o.argv = {BuildPath("nodeserver/shardfs-registry"),
              "--meta",
              dir_.Sub("meta-" + cluster + "-" + std::to_string(port)),
              "--listen",
              "tcp://127.0.0.1:" + std::to_string(port),
              "--beacon",
              "127.255.255.255",
              "--beacon-port",
              std::to_string(beacon_port_),
              "--cluster",
              cluster,
              "--down-after",
              std::to_string(std::chrono::duration<double>(kDownAfter).count()),
              "--log-level",
              "debug",
              "--key",
              key_.path()};
    o.log_path = dir_.Sub(log);
    auto p = DaemonProcess::Start(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    *out = std::move(p).value();
  }

  std::string Endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  RegistryLink::Options LinkOptions() const {
    RegistryLink::Options o;  // no endpoint: listen for the beacon
    o.cluster = cluster_;
    o.beacon_port = beacon_port_;
    o.rpc_timeout = 500ms;
    o.failures_before_reset = 2;
    return o;
  }

  static RegistryLink::NodeReport Report() {
    RegistryLink::NodeReport r;
    r.node_id = kNodeId;
    r.endpoint = "tcp://0.0.0.0:7555";
    r.host = "probe-host";
    r.capacity = 5ull << 30;
    r.used = 1 << 20;
    r.shard_count = 1;
    return r;
  }

  static bool NodeIs(const ClusterMap& m, NodeState state) {
    const NodeRecord* n = m.Find(kNodeId);
    return n != nullptr && n->state == state;
  }

  TempDir dir_{"discovery"};
  TestKey key_{dir_.Sub("cluster.key")};  // the registry's and this process's
  zmq::context_t ctx_;
  std::string cluster_;
  uint16_t port_ = 0;
  uint16_t beacon_port_ = 0;
  DaemonProcess registry_;
};

TEST_F(DiscoveryTest, NodeFindsRegistryByBeaconRegistersAndGoesDownAfterLeaving) {
  auto beacon = WaitForBeacon(cluster_, beacon_port_, 5s);
  ASSERT_TRUE(beacon.ok()) << beacon.status().ToString() << "\n" << registry_.ReadLog();
  EXPECT_EQ(beacon->registry_endpoint, Endpoint());
  EXPECT_EQ(beacon->publish_endpoint, *PublishEndpointFor(Endpoint()));

  ClusterMapSubscriber sub(ctx_, {beacon->registry_endpoint, beacon->publish_endpoint});
  ASSERT_TRUE(sub.Start().ok());

  auto link = std::make_unique<RegistryLink>(ctx_, LinkOptions(), Report);
  ASSERT_TRUE(link->Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link->registered(); }, 5s)) << registry_.ReadLog();
  EXPECT_EQ(link->registry_endpoint(), Endpoint());
  EXPECT_EQ(link->advertised_endpoint(), "tcp://127.0.0.1:7555");

  auto up = sub.WaitFor([](const ClusterMap& m) { return NodeIs(m, NodeState::kUp); }, 5s);
  ASSERT_NE(up, nullptr) << registry_.ReadLog();
  const NodeRecord* node = up->Find(kNodeId);
  EXPECT_EQ(node->endpoint, "tcp://127.0.0.1:7555");
  EXPECT_EQ(node->host, "probe-host");
  EXPECT_EQ(node->capacity, 5ull << 30);
  // Heartbeats keep it up well past down-after.
  std::this_thread::sleep_for(kDownAfter + 500ms);
  EXPECT_TRUE(NodeIs(*sub.Current(), NodeState::kUp));
  EXPECT_GT(sub.publications(), 0u);

  link->Stop();
  const auto stopped = std::chrono::steady_clock::now();
  auto down =
      sub.WaitFor([](const ClusterMap& m) { return NodeIs(m, NodeState::kDown); }, kDownAfter + 2s);
  ASSERT_NE(down, nullptr) << registry_.ReadLog();
  EXPECT_LE(std::chrono::steady_clock::now() - stopped, kDownAfter + 2s);
  EXPECT_GT(down->epoch, up->epoch);
  sub.Stop();
}

TEST_F(DiscoveryTest, BeaconOfAnotherClusterIsIgnored) {
  DaemonProcess intruder;
  uint16_t other_port = FreeTcpPortPair();
  StartRegistry(&intruder, "intruder-" + std::to_string(getpid()), other_port, "intruder.log");
  // Both registries beacon to the same UDP port; only ours is accepted.
  for (int i = 0; i < 3; ++i) {
    auto beacon = WaitForBeacon(cluster_, beacon_port_, 5s);
    ASSERT_TRUE(beacon.ok()) << beacon.status().ToString();
    EXPECT_EQ(beacon->registry_endpoint, Endpoint());
  }
  auto none = WaitForBeacon("nobody-" + std::to_string(getpid()), beacon_port_, 1500ms);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), ErrorCode::kTimeout);
  // A link of the intruder's cluster never registers with ours.
  RegistryLink::Options o = LinkOptions();
  o.cluster = "intruder-" + std::to_string(getpid());
  RegistryLink link(ctx_, o, Report);
  ASSERT_TRUE(link.Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link.registered(); }, 5s));
  EXPECT_EQ(link.registry_endpoint(), "tcp://127.0.0.1:" + std::to_string(other_port));
  link.Stop();
  EXPECT_TRUE(DaemonProcess::ExitedWith(intruder.Stop(), 0)) << intruder.ReadLog();
}

TEST_F(DiscoveryTest, BadMessagesGetErrorRepliesAndTheRegistryKeepsServing) {
  ASSERT_TRUE(WaitForBeacon(cluster_, beacon_port_, 5s).ok());
  RpcChannel channel(ctx_, Endpoint());
  struct Case {
    MessageType type;
    FieldWriter fields;
    ErrorCode want;
  };
  std::vector<Case> cases;
  cases.push_back({MessageType::kRegisterNode, FieldWriter(), ErrorCode::kBadMessage});
  {
    RegisterNodeRequest r;
    r.node_id = "../../etc/passwd/../../etc/passw";  // right length, not hex
    r.endpoint = "tcp://127.0.0.1:1";
    r.host = "h";
    cases.push_back({MessageType::kRegisterNode, r.Encode(), ErrorCode::kBadMessage});
  }
  {
    FieldWriter w;
    w.U64("id", 5);
    cases.push_back({MessageType::kHeartbeat, std::move(w), ErrorCode::kBadMessage});
  }
  cases.push_back({MessageType::kReportBadReplica, FieldWriter(), ErrorCode::kBadMessage});
  cases.push_back({MessageType::kSetDraining, FieldWriter(), ErrorCode::kBadMessage});
  {
    SetDrainingRequest unknown;
    unknown.node_id = "ffffffffffffffffffffffffffffffff";
    cases.push_back({MessageType::kSetDraining, unknown.Encode(), ErrorCode::kNotFound});
  }
  cases.push_back({static_cast<MessageType>(299), FieldWriter(), ErrorCode::kUnknownType});
  // Namespace range: handed to the namespace service, which refuses it too.
  cases.push_back({MessageType::kGetAttr, FieldWriter(), ErrorCode::kBadMessage});
  cases.push_back({MessageType::kPutShard, FieldWriter(), ErrorCode::kUnknownType});
  for (auto& c : cases) {
    auto r = channel.Call(c.type, c.fields, 2s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.want) << r.status().ToString();
  }
  // Raw garbage frames straight at the ROUTER socket.
  zmq::socket_t raw(ctx_, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::rcvtimeo, 2000);
  raw.set(zmq::sockopt::linger, 0);
  ASSERT_TRUE(SecureClientSocket(ctx_, raw).ok());
  raw.connect(Endpoint());
  for (const std::string& junk :
       {std::string("garbage"), std::string("\x94\x01\xcc\xc8\x01\x80", 6) /* version 1, type 200,
                                                                                id 1, {} */}) {
    raw.send(zmq::buffer(junk), zmq::send_flags::none);
    zmq::message_t reply;
    ASSERT_TRUE(raw.recv(reply).has_value());
    auto header =
        DecodeHeader(std::string_view(static_cast<const char*>(reply.data()), reply.size()));
    ASSERT_TRUE(header.ok());
    EXPECT_TRUE(header->IsError());
  }
  auto map = channel.Call(MessageType::kClusterMap, GetClusterMapRequest{}.Encode(), 2s);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_TRUE(ClusterMap::Decode(map->header.fields).ok());
  EXPECT_TRUE(registry_.Running());
}

TEST_F(DiscoveryTest, NodeRegistersAgainAfterRegistryIsKilledAndRestarted) {
  RegistryLink link(ctx_, LinkOptions(), Report);
  ASSERT_TRUE(link.Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link.registered(); }, 5s)) << registry_.ReadLog();
  registry_.Kill();
  StartRegistry(&registry_, cluster_, port_, "registry-2.log");
  ClusterMapSubscriber sub(ctx_, {Endpoint(), ""});
  ASSERT_TRUE(sub.Start().ok());
  auto back = sub.WaitFor([](const ClusterMap& m) { return NodeIs(m, NodeState::kUp); }, 10s);
  ASSERT_NE(back, nullptr) << registry_.ReadLog();
  EXPECT_TRUE(WaitUntil([&] { return link.registrations() >= 2; }, 2s));
  sub.Stop();
  link.Stop();
}

TEST_F(DiscoveryTest, RegistryRefusesASecondInstanceOnTheSameMetaDir) {
  // The first one must hold the lock before the second starts; on a loaded
  // machine it may still be starting.
  RpcChannel channel(ctx_, Endpoint());
  ASSERT_TRUE(WaitUntil(
      [&] {
        return channel.Call(MessageType::kClusterMap, GetClusterMapRequest{}.Encode(), 1s).ok();
      },
      10s))
      << registry_.ReadLog();
  DaemonProcess::Options o;
  o.argv = {BuildPath("nodeserver/shardfs-registry"),
            "--meta",
            dir_.Sub("meta-" + cluster_ + "-" + std::to_string(port_)),
            "--listen",
            "tcp://127.0.0.1:" + std::to_string(FreeTcpPortPair()),
            "--beacon",
            "off"};
  o.log_path = dir_.Sub("second.log");
  auto second = DaemonProcess::Start(o);
  ASSERT_TRUE(second.ok());
  auto status = second->WaitForExit(5s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(DaemonProcess::ExitedWith(*status, 1));
  EXPECT_NE(second->ReadLog().find("another registry"), std::string::npos) << second->ReadLog();
}

TEST(RegistryFlagsTest, BadFlagsAreRefused) {
  TempDir dir("registry-flags");
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {},
           {"--meta", dir.path(), "--shard-size", "5"},
           {"--meta", dir.path(), "--beacon", "nonsense", "--listen", "tcp://127.0.0.1:0"},
           {"--meta", dir.path(), "--listen", "udp://x"},
           {"--meta", dir.path(), "--replicas", "0"},
           {"--meta", dir.path(), "--cluster", "a b", "--listen", "tcp://127.0.0.1:0"},
           {"--meta", dir.path(), "--log-level", "loud"}}) {
    args.insert(args.begin(), BuildPath("nodeserver/shardfs-registry"));
    DaemonProcess::Options o;
    o.argv = args;
    o.log_path = dir.Sub("out.log");
    auto p = DaemonProcess::Start(o);
    ASSERT_TRUE(p.ok());
    auto status = p->WaitForExit(5s);
    ASSERT_TRUE(status.has_value()) << args.back();
    EXPECT_FALSE(DaemonProcess::ExitedWith(*status, 0)) << args.back();
  }
}

}  // namespace
}  // namespace shardfs
