// Membership (the registry's node table), the registry's request dispatch,
// and RegistryLink against an in-process RegistryServer.
#include "nodeserver/membership.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "nodeserver/registry_server.h"
#include "src/registry_link.h"
#include "src/rpc_channel.h"
#include "tests/integration/daemon_process.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = Membership::Clock;

std::string Id(int n) {
  return fmt::format("{:032x}", n);
}

RegisterNodeRequest Reg(int n, const std::string& endpoint, uint64_t capacity = 1000) {
  RegisterNodeRequest r;
  r.node_id = Id(n);
  r.endpoint = endpoint;
  r.host = "host" + std::to_string(n);
  r.capacity = capacity;
  r.used = 10;
  r.shard_count = 1;
  return r;
}

HeartbeatRequest Beat(int n, uint64_t used = 20, uint64_t capacity = 1000) {
  HeartbeatRequest h;
  h.node_id = Id(n);
  h.used = used;
  h.capacity = capacity;
  h.shard_count = 2;
  return h;
}

Membership::Options Opts() {
  Membership::Options o;
  o.down_after = 5s;
  o.initial_epoch = 100;
  o.wall_clock_ms = [] { return int64_t{42}; };
  return o;
}

TEST(MembershipTest, RegisterAddsAnUpNodeAndBumpsTheEpoch) {
  Membership m(Opts());
  auto t0 = Clock::now();
  EXPECT_EQ(m.epoch(), 100u);
  EXPECT_EQ(m.Register(Reg(1, "tcp://10.0.0.1:7401"), t0), 101u);
  ClusterMap map = m.Map();
  EXPECT_EQ(map.epoch, 101u);
  ASSERT_EQ(map.nodes.size(), 1u);
  const NodeRecord* n = map.Find(Id(1));
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->state, NodeState::kUp);
  EXPECT_EQ(n->endpoint, "tcp://10.0.0.1:7401");
  EXPECT_EQ(n->host, "host1");
  EXPECT_EQ(n->capacity, 1000u);
  EXPECT_EQ(n->used, 10u);
  EXPECT_EQ(n->last_seen_ms, 42);
}

TEST(MembershipTest, SameIdKeepsIdentityAndNewEndpointReplacesOld) {
  Membership m(Opts());
  auto t0 = Clock::now();
  uint64_t e1 = m.Register(Reg(1, "tcp://10.0.0.1:7401"), t0);
  // The same registration again (a node retrying) is not a change.
  EXPECT_EQ(m.Register(Reg(1, "tcp://10.0.0.1:7401"), t0), e1);
  uint64_t e2 = m.Register(Reg(1, "tcp://10.0.0.2:7401"), t0);
  EXPECT_EQ(e2, e1 + 1);
  ClusterMap map = m.Map();
  ASSERT_EQ(map.nodes.size(), 1u);
  EXPECT_EQ(map.nodes[0].endpoint, "tcp://10.0.0.2:7401");
}

TEST(MembershipTest, HeartbeatOfUnknownNodeSaysRegisterAgain) {
  Membership m(Opts());
  HeartbeatReply r = m.Heartbeat(Beat(7), Clock::now());
  EXPECT_FALSE(r.known);
  EXPECT_EQ(r.epoch, 100u);
  EXPECT_TRUE(m.Map().nodes.empty());
}

TEST(MembershipTest, UsageRefreshesWithoutNewEpochButCapacityCounts) {
  Membership m(Opts());
  auto t0 = Clock::now();
  uint64_t e = m.Register(Reg(1, "tcp://h:1"), t0);
  HeartbeatReply r = m.Heartbeat(Beat(1, 500), t0 + 1s);
  EXPECT_TRUE(r.known);
  EXPECT_EQ(r.epoch, e);
  EXPECT_EQ(m.Map().nodes[0].used, 500u);
  EXPECT_EQ(m.Map().nodes[0].shard_count, 2u);
  r = m.Heartbeat(Beat(1, 500, 2000), t0 + 2s);
  EXPECT_EQ(r.epoch, e + 1);
  EXPECT_EQ(m.Map().nodes[0].capacity, 2000u);
}

TEST(MembershipTest, SilentNodeGoesDownAndComesBackOnHeartbeat) {
  Membership m(Opts());
  auto t0 = Clock::now();
  m.Register(Reg(1, "tcp://h:1"), t0);
  m.Register(Reg(2, "tcp://h:2"), t0);
  m.Heartbeat(Beat(2), t0 + 4s);
  EXPECT_FALSE(m.Tick(t0 + 5s));  // exactly down_after: not yet
  uint64_t before = m.epoch();
  EXPECT_TRUE(m.Tick(t0 + 5s + 1ms));
  EXPECT_EQ(m.epoch(), before + 1);
  ClusterMap map = m.Map();
  EXPECT_EQ(map.Find(Id(1))->state, NodeState::kDown);
  EXPECT_EQ(map.Find(Id(2))->state, NodeState::kUp);
  ASSERT_EQ(map.Live().size(), 1u);
  EXPECT_EQ(map.Live()[0]->id, Id(2));
  EXPECT_FALSE(m.Tick(t0 + 6s));  // already down: no further change

  HeartbeatReply r = m.Heartbeat(Beat(1), t0 + 7s);
  EXPECT_TRUE(r.known);
  EXPECT_EQ(r.epoch, before + 2);
  EXPECT_EQ(m.Map().Find(Id(1))->state, NodeState::kUp);
}

TEST(MembershipTest, RegisteringAfterDownBringsTheNodeBack) {
  Membership m(Opts());
  auto t0 = Clock::now();
  m.Register(Reg(1, "tcp://h:1"), t0);
  m.Tick(t0 + 10s);
  ASSERT_EQ(m.Map().nodes[0].state, NodeState::kDown);
  m.Register(Reg(1, "tcp://h:1"), t0 + 11s);
  EXPECT_EQ(m.Map().nodes[0].state, NodeState::kUp);
}

TEST(MembershipTest, NewNodeOnAnOldNodesEndpointMarksTheOldOneDown) {
  Membership m(Opts());
  auto t0 = Clock::now();
  m.Register(Reg(1, "tcp://h:1"), t0);
  m.Register(Reg(2, "tcp://h:1"), t0 + 1s);
  ClusterMap map = m.Map();
  EXPECT_EQ(map.Find(Id(1))->state, NodeState::kDown);
  EXPECT_EQ(map.Find(Id(2))->state, NodeState::kUp);
}

TEST(MembershipTest, DrainingIsKeptAcrossDownAndBack) {
  Membership m(Opts());
  auto t0 = Clock::now();
  m.Register(Reg(1, "tcp://h:1"), t0);
  m.Register(Reg(2, "tcp://h:2"), t0);
  uint64_t e = m.epoch();
  ASSERT_TRUE(m.SetDraining(Id(1), true).ok());
  EXPECT_EQ(m.epoch(), e + 1);
  ASSERT_TRUE(m.SetDraining(Id(1), true).ok());  // idempotent
  EXPECT_EQ(m.epoch(), e + 1);
  EXPECT_EQ(m.Map().Find(Id(1))->state, NodeState::kDraining);
  EXPECT_EQ(m.Map().Live().size(), 1u);
  m.Tick(t0 + 10s);
  EXPECT_EQ(m.Map().Find(Id(1))->state, NodeState::kDown);
  m.Register(Reg(1, "tcp://h:1"), t0 + 11s);
  EXPECT_EQ(m.Map().Find(Id(1))->state, NodeState::kDraining);
  ASSERT_TRUE(m.SetDraining(Id(1), false).ok());
  EXPECT_EQ(m.Map().Find(Id(1))->state, NodeState::kUp);
  EXPECT_EQ(m.SetDraining(Id(9), true).code(), ErrorCode::kNotFound);
}

TEST(MembershipTest, MapIsSortedById) {
  Membership m(Opts());
  auto t0 = Clock::now();
  for (int n : {5, 3, 9, 1}) m.Register(Reg(n, "tcp://h:" + std::to_string(n)), t0);
  ClusterMap map = m.Map();
  ASSERT_EQ(map.nodes.size(), 4u);
  for (size_t i = 1; i < map.nodes.size(); ++i) EXPECT_LT(map.nodes[i - 1].id, map.nodes[i].id);
}

TEST(MembershipTest, ConcurrentUseIsSafe) {
  Membership m(Opts());
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        int n = t * 100 + i % 50;
        m.Register(Reg(n, "tcp://h:" + std::to_string(n + 1)), Clock::now());
        m.Heartbeat(Beat(n), Clock::now());
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop) {
      m.Tick(Clock::now());
      ClusterMap map = m.Map();
      EXPECT_LE(map.nodes.size(), 200u);
    }
  });
  for (int t = 0; t < 4; ++t) threads[t].join();
  stop = true;
  threads.back().join();
  EXPECT_EQ(m.Map().nodes.size(), 200u);
}

// --- RegistryServer dispatch, over real loopback sockets ---------------------

class RegistryServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }
  void TearDown() override {
    channel_.reset();
    if (server_) server_->Stop();
  }

  void StartServer(const std::string& listen = "tcp://127.0.0.1:0") {
    RegistryServer::Options o;
    o.listen = listen;
    o.cluster = "unit";
    o.beacon = "off";
    o.down_after = 400ms;
    o.tick_interval = 50ms;
    server_ = std::make_unique<RegistryServer>(ctx_, o);
    ASSERT_TRUE(server_->Start().ok());
    channel_ = std::make_unique<RpcChannel>(ctx_, server_->endpoint());
  }

  zmq::context_t ctx_;
  std::unique_ptr<RegistryServer> server_;
  std::unique_ptr<RpcChannel> channel_;
};

TEST_F(RegistryServerTest, RegisterHeartbeatAndMap) {
  auto reg = channel_->Call(MessageType::kRegisterNode, Reg(1, "tcp://127.0.0.1:9").Encode(), 2s);
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  auto reg_reply = RegisterNodeReply::Decode(reg->header.fields);
  ASSERT_TRUE(reg_reply.ok());
  EXPECT_EQ(reg_reply->epoch, server_->membership().epoch());

  auto hb = channel_->Call(MessageType::kHeartbeat, Beat(1).Encode(), 2s);
  ASSERT_TRUE(hb.ok());
  EXPECT_TRUE(HeartbeatReply::Decode(hb->header.fields)->known);
  auto unknown = channel_->Call(MessageType::kHeartbeat, Beat(2).Encode(), 2s);
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(HeartbeatReply::Decode(unknown->header.fields)->known);

  auto map = channel_->Call(MessageType::kClusterMap, GetClusterMapRequest{}.Encode(), 2s);
  ASSERT_TRUE(map.ok());
  auto decoded = ClusterMap::Decode(map->header.fields);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->nodes.size(), 1u);
  EXPECT_EQ(decoded->nodes[0].id, Id(1));
  EXPECT_EQ(decoded->nodes[0].used, 20u);
}

TEST_F(RegistryServerTest, BadRequestsGetErrorRepliesAndServingGoesOn) {
  struct Case {
    MessageType type;
    FieldWriter fields;
    ErrorCode want;
  };
  std::vector<Case> cases;
  {
    FieldWriter w;
    cases.push_back({MessageType::kRegisterNode, std::move(w), ErrorCode::kBadMessage});
  }
  {
    RegisterNodeRequest r = Reg(1, "tcp://127.0.0.1:9");
    r.node_id = "not-hex-not-hex-not-hex-not-hex!";
    cases.push_back({MessageType::kRegisterNode, r.Encode(), ErrorCode::kBadMessage});
  }
  cases.push_back(
      {MessageType::kRegisterNode, Reg(1, "tcp://0.0.0.0:9").Encode(), ErrorCode::kBadMessage});
  {
    FieldWriter w;
    w.Str("id", Id(1)).Str("used", "lots").U64("cap", 1).U64("shards", 1);
    cases.push_back({MessageType::kHeartbeat, std::move(w), ErrorCode::kBadMessage});
  }
  cases.push_back({MessageType::kReportBadReplica, FieldWriter(), ErrorCode::kUnknownType});
  cases.push_back({MessageType::kLookup, FieldWriter(), ErrorCode::kUnavailable});
  cases.push_back({MessageType::kNodePing, FieldWriter(), ErrorCode::kUnknownType});
  cases.push_back({static_cast<MessageType>(9999), FieldWriter(), ErrorCode::kUnknownType});
  for (auto& c : cases) {
    auto r = channel_->Call(c.type, c.fields, 2s);
    ASSERT_FALSE(r.ok()) << static_cast<int>(c.type);
    EXPECT_EQ(r.status().code(), c.want)
        << static_cast<int>(c.type) << " " << r.status().ToString();
  }
  EXPECT_TRUE(server_->membership().Map().nodes.empty());
  EXPECT_TRUE(
      channel_->Call(MessageType::kRegisterNode, Reg(1, "tcp://127.0.0.1:9").Encode(), 2s).ok());
}

TEST(RegistryServerPluginTest, NamespaceServiceAndExtraHandlersArePluggedIn) {
  class FakeNamespace : public NamespaceService {
   public:
    RpcReply Handle(RpcRequest& request) override {
      ++calls;
      FieldWriter w;
      w.U64("seen", request.header.type);
      return RpcReply::Ok(request.type(), std::move(w));
    }
    std::atomic<int> calls{0};
  };
  zmq::context_t ctx;
  RegistryServer::Options o;
  o.listen = "tcp://127.0.0.1:0";
  o.beacon = "off";
  RegistryServer server(ctx, o);
  FakeNamespace ns;
  server.SetNamespaceService(&ns);
  server.SetHandler(MessageType::kReportBadReplica,
                    [](RpcRequest& req) { return RpcReply::Ok(req.type(), FieldWriter()); });
  ASSERT_TRUE(server.Start().ok());
  RpcChannel channel(ctx, server.endpoint());
  auto r = channel.Call(MessageType::kMkdir, FieldWriter(), 2s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r->header.fields.U64("seen"), static_cast<uint64_t>(MessageType::kMkdir));
  EXPECT_EQ(ns.calls.load(), 1);
  EXPECT_TRUE(channel.Call(MessageType::kReportBadReplica, FieldWriter(), 2s).ok());
  server.Stop();
}

// A log sync that takes seconds (a disk busy with the nodes' writes) holds
// up the namespace worker that waits for it; heartbeats must not queue
// behind it, or every node is marked down at once (the scaling run's stall
// at 371k files). Heartbeats are answered on the socket thread.
TEST(RegistryServerPluginTest, HeartbeatsAreAnsweredWhileEveryWorkerWaits) {
  class StuckNamespace : public NamespaceService {
   public:
    RpcReply Handle(RpcRequest& request) override {
      std::this_thread::sleep_for(3s);  // a mutation waiting for a slow fdatasync
      return RpcReply::Ok(request.type(), FieldWriter());
    }
  };
  zmq::context_t ctx;
  RegistryServer::Options o;
  o.listen = "tcp://127.0.0.1:0";
  o.beacon = "off";
  o.workers = 1;
  RegistryServer server(ctx, o);
  StuckNamespace ns;
  server.SetNamespaceService(&ns);
  ASSERT_TRUE(server.Start().ok());
  RpcChannel channel(ctx, server.endpoint());
  ASSERT_TRUE(
      channel.Call(MessageType::kRegisterNode, Reg(1, "tcp://127.0.0.1:9").Encode(), 2s).ok());
  std::thread stuck([&] { (void)channel.Call(MessageType::kMkdir, FieldWriter(), 10s); });
  std::this_thread::sleep_for(200ms);  // the only worker is in Handle now
  RpcChannel node(ctx, server.endpoint());
  // Well inside the stuck request's 3 s: with a worker needed, it would wait.
  auto hb = node.Call(MessageType::kHeartbeat, Beat(1).Encode(), 1500ms);
  ASSERT_TRUE(hb.ok()) << hb.status().ToString();
  EXPECT_TRUE(HeartbeatReply::Decode(hb->header.fields)->known);
  stuck.join();
  server.Stop();
}

TEST_F(RegistryServerTest, PublishPortIsListenPortPlusOne) {
  server_->Stop();
  uint16_t port = FreeTcpPortPair();
  ASSERT_NE(port, 0);
  StartServer("tcp://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(server_->endpoint(), "tcp://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(server_->publish_endpoint(), "tcp://127.0.0.1:" + std::to_string(port + 1));
}

TEST(RegistryServerStartTest, RefusesBadOptions) {
  zmq::context_t ctx;
  auto start = [&](auto edit) {
    RegistryServer::Options o;
    o.listen = "tcp://127.0.0.1:0";
    o.beacon = "off";
    edit(o);
    RegistryServer s(ctx, o);
    return s.Start();
  };
  EXPECT_FALSE(start([](auto& o) { o.listen = "nonsense"; }).ok());
  EXPECT_FALSE(start([](auto& o) { o.listen = "tcp://127.0.0.1:65535"; }).ok());
  EXPECT_FALSE(start([](auto& o) { o.beacon = "bogus"; }).ok());
  EXPECT_FALSE(start([](auto& o) { o.cluster = "no spaces"; }).ok());
  EXPECT_TRUE(start([](auto&) {}).ok());
}

// --- RegistryLink ------------------------------------------------------------

RegistryLink::Options LinkOptions(const std::string& endpoint) {
  RegistryLink::Options o;
  o.registry_endpoint = endpoint;
  o.heartbeat_interval = 100ms;
  o.rpc_timeout = 300ms;
  o.failures_before_reset = 2;
  return o;
}

RegistryLink::ReportFn Report(int n, const std::string& endpoint, std::atomic<uint64_t>* used) {
  return [n, endpoint, used] {
    RegistryLink::NodeReport r;
    r.node_id = Id(n);
    r.endpoint = endpoint;
    r.capacity = 1 << 30;
    r.used = used->load();
    r.shard_count = 3;
    return r;
  };
}

TEST_F(RegistryServerTest, LinkRegistersHeartbeatsAndGoesDownWhenStopped) {
  std::atomic<uint64_t> used{100};
  RegistryLink link(ctx_, LinkOptions(server_->endpoint()), Report(1, "tcp://0.0.0.0:9300", &used));
  ASSERT_TRUE(link.Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link.registered(); }, 3s));
  // Bound to every interface; advertised as the address that reaches the
  // registry (loopback here).
  EXPECT_EQ(link.advertised_endpoint(), "tcp://127.0.0.1:9300");
  used = 777;
  ASSERT_TRUE(WaitUntil(
      [&] {
        ClusterMap m = server_->membership().Map();
        return m.nodes.size() == 1 && m.nodes[0].used == 777;
      },
      3s));
  EXPECT_EQ(server_->membership().Map().nodes[0].host.empty(), false);
  link.Stop();
  ASSERT_TRUE(WaitUntil(
      [&] { return server_->membership().Map().nodes[0].state == NodeState::kDown; }, 3s));
}

TEST_F(RegistryServerTest, LinkRegistersAgainAfterRegistryRestart) {
  uint16_t port = FreeTcpPortPair();
  server_->Stop();
  StartServer("tcp://127.0.0.1:" + std::to_string(port));
  std::atomic<uint64_t> used{1};
  RegistryLink link(ctx_, LinkOptions(server_->endpoint()),
                    Report(4, "tcp://127.0.0.1:9400", &used));
  ASSERT_TRUE(link.Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return link.registered(); }, 3s));
  EXPECT_EQ(link.registrations(), 1u);
  // A restart forgets every node; the link learns it from known=false.
  server_->Stop();
  StartServer("tcp://127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(server_->membership().Map().nodes.empty());
  ASSERT_TRUE(WaitUntil([&] { return server_->membership().Map().Find(Id(4)) != nullptr; }, 5s));
  EXPECT_GE(link.registrations(), 2u);
  link.Stop();
}

TEST(RegistryLinkTest, NeverBlocksTheCallerWithoutARegistry) {
  zmq::context_t ctx;
  std::atomic<uint64_t> used{0};
  RegistryLink link(ctx, LinkOptions("tcp://127.0.0.1:1"), Report(1, "tcp://127.0.0.1:2", &used));
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(link.Start().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(link.registered());
  start = std::chrono::steady_clock::now();
  link.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(RegistryLinkTest, EndpointComesFromTheEnvironmentWhenNotGiven) {
  setenv("SHARDFS_REGISTRY", "tcp://10.0.0.7:7400", 1);
  EXPECT_EQ(RegistryEndpointFromFlagOrEnv(""), "tcp://10.0.0.7:7400");
  EXPECT_EQ(RegistryEndpointFromFlagOrEnv("tcp://h:1"), "tcp://h:1");
  unsetenv("SHARDFS_REGISTRY");
  EXPECT_EQ(RegistryEndpointFromFlagOrEnv(""), "");
}

}  // namespace
}  // namespace shardfs
