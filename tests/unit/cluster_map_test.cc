// ClusterMap and the membership messages on the wire, and the
// ClusterMapSubscriber against an in-process RegistryServer.
#include "src/cluster_map.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "nodeserver/registry_server.h"
#include "protocol/envelope.h"
#include "protocol/registry_messages.h"
#include "src/cluster_map_subscriber.h"
#include "tests/integration/daemon_process.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

std::string Id(int n) {
  return fmt::format("{:032x}", n);
}

// Puts fields through a real header encode/decode, as the wire would.
Envelope OverTheWire(const FieldWriter& fields) {
  auto env = DecodeHeader(EncodeHeader(MessageType::kClusterMap, 1, fields));
  EXPECT_TRUE(env.ok());
  return std::move(env).value();
}

NodeRecord Node(int n, NodeState state) {
  NodeRecord r;
  r.id = Id(n);
  r.endpoint = "tcp://10.0.0." + std::to_string(n) + ":7401";
  r.host = "host" + std::to_string(n);
  r.state = state;
  r.capacity = 1000 + n;
  r.used = 10 * n;
  r.shard_count = n;
  r.last_seen_ms = 1700000000000 + n;
  return r;
}

ClusterMap SampleMap() {
  ClusterMap map;
  map.epoch = 77;
  map.nodes = {Node(1, NodeState::kUp), Node(2, NodeState::kDown), Node(3, NodeState::kDraining),
               Node(4, NodeState::kUp)};
  return map;
}

TEST(ClusterMapTest, RoundTrip) {
  ClusterMap map = SampleMap();
  Envelope env = OverTheWire(map.Encode());
  auto decoded = ClusterMap::Decode(env.fields);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, map);
  EXPECT_EQ(ClusterMap::Decode(OverTheWire(ClusterMap{}.Encode()).fields)->nodes.size(), 0u);
}

TEST(ClusterMapTest, FindAndLive) {
  ClusterMap map = SampleMap();
  ASSERT_NE(map.Find(Id(3)), nullptr);
  EXPECT_EQ(map.Find(Id(3))->host, "host3");
  EXPECT_EQ(map.Find(Id(9)), nullptr);
  EXPECT_EQ(map.Find(""), nullptr);
  auto live = map.Live();
  ASSERT_EQ(live.size(), 2u);  // draining and down nodes take no new shards
  EXPECT_EQ(live[0]->id, Id(1));
  EXPECT_EQ(live[1]->id, Id(4));
  EXPECT_EQ(Node(1, NodeState::kUp).free(), 1001u - 10u);
  NodeRecord over = Node(1, NodeState::kUp);
  over.used = over.capacity + 5;
  EXPECT_EQ(over.free(), 0u);
  EXPECT_EQ(NodeStateName(NodeState::kDraining), "draining");
}

TEST(ClusterMapTest, DecodeSortsAPeersOrderAndRefusesDuplicates) {
  ClusterMap shuffled;
  shuffled.epoch = 1;
  shuffled.nodes = {Node(3, NodeState::kUp), Node(1, NodeState::kUp), Node(2, NodeState::kUp)};
  auto decoded = ClusterMap::Decode(OverTheWire(shuffled.Encode()).fields);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->nodes[0].id, Id(1));
  EXPECT_NE(decoded->Find(Id(3)), nullptr);

  ClusterMap dup;
  dup.nodes = {Node(1, NodeState::kUp), Node(1, NodeState::kDown)};
  EXPECT_EQ(ClusterMap::Decode(OverTheWire(dup.Encode()).fields).status().code(),
            ErrorCode::kBadMessage);
}

TEST(ClusterMapTest, MalformedNodesAreErrors) {
  auto decode_with = [](auto edit) {
    FieldWriter node;
    NodeRecord r = Node(1, NodeState::kUp);
    edit(r, node);
    FieldWriter map;
    map.U64("epoch", 1).MapArray("nodes", [&] {
      std::vector<FieldWriter> v;
      v.push_back(std::move(node));
      return v;
    }());
    return ClusterMap::Decode(OverTheWire(map).fields).status();
  };
  auto full = [](const NodeRecord& r, FieldWriter& w, uint64_t state) {
    w.Str("id", r.id)
        .Str("ep", r.endpoint)
        .Str("host", r.host)
        .U64("state", state)
        .U64("cap", 1)
        .U64("used", 1)
        .U64("shards", 1)
        .I64("seen", 1);
  };
  EXPECT_TRUE(decode_with([&](NodeRecord& r, FieldWriter& w) { full(r, w, 0); }).ok());
  EXPECT_FALSE(decode_with([&](NodeRecord& r, FieldWriter& w) { full(r, w, 3); }).ok());
  EXPECT_FALSE(decode_with([&](NodeRecord& r, FieldWriter& w) {
                 r.id = "xyz";
                 full(r, w, 0);
               }).ok());
  EXPECT_FALSE(decode_with([&](NodeRecord& r, FieldWriter& w) {
                 r.endpoint = "nowhere";
                 full(r, w, 0);
               }).ok());
  EXPECT_FALSE(decode_with([&](NodeRecord& r, FieldWriter& w) {
                 w.Str("id", r.id).Str("ep", r.endpoint);  // the rest missing
               }).ok());
  FieldWriter not_array;
  not_array.U64("epoch", 1).U64("nodes", 5);
  EXPECT_FALSE(ClusterMap::Decode(OverTheWire(not_array).fields).ok());
}

TEST(RegistryMessagesTest, RoundTrips) {
  RegisterNodeRequest reg;
  reg.node_id = Id(5);
  reg.endpoint = "tcp://10.0.0.5:7401";
  reg.host = "box5";
  reg.capacity = 1ull << 40;
  reg.used = 123;
  reg.shard_count = 9;
  auto r = RegisterNodeRequest::Decode(OverTheWire(reg.Encode()).fields);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->node_id, reg.node_id);
  EXPECT_EQ(r->endpoint, reg.endpoint);
  EXPECT_EQ(r->host, reg.host);
  EXPECT_EQ(r->capacity, reg.capacity);
  EXPECT_EQ(r->used, 123u);
  EXPECT_EQ(r->shard_count, 9u);

  EXPECT_EQ(RegisterNodeReply::Decode(OverTheWire(RegisterNodeReply{42}.Encode()).fields)->epoch,
            42u);

  HeartbeatRequest hb{Id(6), 1, 2, 3};
  auto h = HeartbeatRequest::Decode(OverTheWire(hb.Encode()).fields);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->node_id, Id(6));
  EXPECT_EQ(h->used, 1u);
  EXPECT_EQ(h->capacity, 2u);
  EXPECT_EQ(h->shard_count, 3u);

  auto hr = HeartbeatReply::Decode(OverTheWire(HeartbeatReply{9, false}.Encode()).fields);
  ASSERT_TRUE(hr.ok());
  EXPECT_EQ(hr->epoch, 9u);
  EXPECT_FALSE(hr->known);
  EXPECT_TRUE(
      GetClusterMapRequest::Decode(OverTheWire(GetClusterMapRequest{}.Encode()).fields).ok());
}

TEST(RegistryMessagesTest, NodeIdsAreCheckedAndCanonical) {
  EXPECT_EQ(*CanonicalNodeId("0123456789ABCDEF0123456789abcdef"),
            "0123456789abcdef0123456789abcdef");
  for (const std::string& bad :
       std::vector<std::string>{"", "abc", std::string(31, 'a'), std::string(33, 'a'),
                                std::string(31, 'a') + "g", std::string(31, 'a') + "/"}) {
    EXPECT_FALSE(CanonicalNodeId(bad).ok()) << bad;
  }
  RegisterNodeRequest reg;
  reg.node_id = "0123456789ABCDEF0123456789ABCDEF";
  reg.endpoint = "tcp://h:1";
  reg.host = "h";
  EXPECT_EQ(RegisterNodeRequest::Decode(OverTheWire(reg.Encode()).fields)->node_id,
            "0123456789abcdef0123456789abcdef");
}

TEST(RegistryMessagesTest, RegistrationMustBeConnectableAndPrintable) {
  auto decode = [](auto edit) {
    RegisterNodeRequest reg;
    reg.node_id = Id(1);
    reg.endpoint = "tcp://10.0.0.1:7401";
    reg.host = "h";
    edit(reg);
    return RegisterNodeRequest::Decode(OverTheWire(reg.Encode()).fields).status();
  };
  EXPECT_TRUE(decode([](auto&) {}).ok());
  EXPECT_FALSE(decode([](auto& r) { r.endpoint = "tcp://0.0.0.0:7401"; }).ok());
  EXPECT_FALSE(decode([](auto& r) { r.endpoint = "tcp://*:7401"; }).ok());
  EXPECT_FALSE(decode([](auto& r) { r.endpoint = "tcp://h:0"; }).ok());
  EXPECT_FALSE(decode([](auto& r) { r.endpoint = "inproc://x"; }).ok());
  EXPECT_FALSE(decode([](auto& r) { r.host = ""; }).ok());
  EXPECT_FALSE(decode([](auto& r) { r.host = "a\nb"; }).ok());
  EXPECT_FALSE(decode([](auto& r) { r.host = std::string(300, 'h'); }).ok());
}

TEST(RegistryMessagesTest, ReportBadReplicaRoundTripsAndRejects) {
  ReportBadReplicaRequest report{"0123456789ABCDEF0123456789ABCDEF", ShardKey{42, 3, 7},
                                 "CORRUPT: block 2 of shard ... does not match"};
  auto r = ReportBadReplicaRequest::Decode(OverTheWire(report.Encode()).fields);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->node_id, "0123456789abcdef0123456789abcdef");  // canonical
  EXPECT_EQ(r->key, (ShardKey{42, 3, 7}));
  EXPECT_EQ(r->reason, report.reason);

  // A long reason is cut by the sender, never refused by the receiver.
  report.reason = std::string(1000, 'r');
  r = ReportBadReplicaRequest::Decode(OverTheWire(report.Encode()).fields);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->reason, std::string(kMaxBadReplicaReasonLength, 'r'));
  report.reason = "";
  EXPECT_TRUE(ReportBadReplicaRequest::Decode(OverTheWire(report.Encode()).fields).ok());

  auto decode = [](auto edit) {
    FieldWriter w;
    edit(w);
    return ReportBadReplicaRequest::Decode(OverTheWire(w).fields).status().code();
  };
  EXPECT_EQ(decode([](FieldWriter& w) {
              w.Str("id", Id(1)).U64("ino", 1).U64("idx", 2).U64("gen", 3).Str("why", "x");
            }),
            ErrorCode::kOk);
  EXPECT_EQ(
      decode([](FieldWriter& w) { w.Str("id", Id(1)).U64("ino", 1).U64("idx", 2).U64("gen", 3); }),
      ErrorCode::kBadMessage);  // no reason
  EXPECT_EQ(decode([](FieldWriter& w) {
              w.Str("id", Id(1))
                  .U64("ino", 1)
                  .U64("idx", 2)
                  .U64("gen", 3)
                  .Str("why", std::string(kMaxBadReplicaReasonLength + 1, 'r'));
            }),
            ErrorCode::kBadMessage);  // reason too long
  EXPECT_EQ(decode([](FieldWriter& w) {
              w.Str("id", "not-a-node").U64("ino", 1).U64("idx", 2).U64("gen", 3).Str("why", "");
            }),
            ErrorCode::kBadMessage);
  EXPECT_EQ(
      decode([](FieldWriter& w) { w.U64("ino", 1).U64("idx", 2).U64("gen", 3).Str("why", ""); }),
      ErrorCode::kBadMessage);  // no node id
  EXPECT_EQ(decode([](FieldWriter& w) { w.Str("id", Id(1)).U64("ino", 1).Str("why", ""); }),
            ErrorCode::kBadMessage);  // half a key
  EXPECT_EQ(decode([](FieldWriter& w) {
              w.Str("id", Id(1)).U64("ino", 1).U64("idx", 1ull << 32).U64("gen", 3).Str("why", "");
            }),
            ErrorCode::kBadMessage);  // index above 32 bits
  EXPECT_EQ(decode([](FieldWriter& w) {
              w.Str("id", Id(1)).U64("ino", 1).U64("idx", 2).U64("gen", 3).U64("why", 5);
            }),
            ErrorCode::kBadMessage);  // reason not a string
}

TEST(PublicationTest, RoundTripAndRejects) {
  ClusterMap map = SampleMap();
  auto back = DecodeClusterMapPublication(EncodeClusterMapPublication(map));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, map);
  EXPECT_FALSE(DecodeClusterMapPublication("junk").ok());
  EXPECT_FALSE(
      DecodeClusterMapPublication(EncodeHeader(MessageType::kHeartbeat, 0, map.Encode())).ok());
  EXPECT_EQ(*PublishEndpointFor("tcp://10.0.0.1:7400"), "tcp://10.0.0.1:7401");
  EXPECT_FALSE(PublishEndpointFor("tcp://h:65535").ok());
  EXPECT_FALSE(PublishEndpointFor("tcp://h:0").ok());
}

// --- ClusterMapSubscriber ------------------------------------------------------

class SubscriberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegistryServer::Options o;
    o.listen = "tcp://127.0.0.1:0";
    o.beacon = "off";
    o.down_after = 300ms;
    o.tick_interval = 50ms;
    o.publish_interval = 200ms;
    server_ = std::make_unique<RegistryServer>(ctx_, o);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override { server_->Stop(); }

  void RegisterNode(int n) {
    RegisterNodeRequest r;
    r.node_id = Id(n);
    r.endpoint = "tcp://127.0.0.1:" + std::to_string(9000 + n);
    r.host = "h";
    r.capacity = 10;
    server_->membership().Register(r, Membership::Clock::now());
  }

  ClusterMapSubscriber::Options SubOptions() {
    ClusterMapSubscriber::Options o;
    o.registry_endpoint = server_->endpoint();
    o.publish_endpoint = server_->publish_endpoint();
    o.poll_after = 1000ms;
    o.poll_interval = 200ms;
    o.rpc_timeout = 500ms;
    return o;
  }

  zmq::context_t ctx_;
  std::unique_ptr<RegistryServer> server_;
};

TEST_F(SubscriberTest, SeesJoinsAndDeathsAndCallsBackOnEpochChange) {
  std::atomic<int> callbacks{0};
  ClusterMapSubscriber sub(ctx_, SubOptions(),
                           [&](const std::shared_ptr<const ClusterMap>&) { ++callbacks; });
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_NE(sub.WaitFor([](const ClusterMap&) { return true; }, 3s), nullptr);
  RegisterNode(1);
  auto up = sub.WaitFor(
      [](const ClusterMap& m) { return m.Find(Id(1)) && m.Find(Id(1))->state == NodeState::kUp; },
      3s);
  ASSERT_NE(up, nullptr);
  // Nobody heartbeats: down after 300 ms, and the subscriber hears of it.
  auto down = sub.WaitFor(
      [](const ClusterMap& m) { return m.Find(Id(1)) && m.Find(Id(1))->state == NodeState::kDown; },
      3s);
  ASSERT_NE(down, nullptr);
  EXPECT_GT(down->epoch, up->epoch);
  EXPECT_GE(callbacks.load(), 2);
  EXPECT_EQ(sub.Current()->epoch, server_->membership().epoch());
  // Periodic publications keep coming with no change at all.
  uint64_t before = sub.publications();
  std::this_thread::sleep_for(600ms);
  EXPECT_GT(sub.publications(), before);
  sub.Stop();
}

TEST_F(SubscriberTest, FallsBackToPollingWithoutPublications) {
  ClusterMapSubscriber::Options o = SubOptions();
  o.publish_endpoint =
      "tcp://127.0.0.1:" + std::to_string(FreeTcpPort());  // nobody publishes there
  o.poll_after = 300ms;
  ClusterMapSubscriber sub(ctx_, o);
  ASSERT_TRUE(sub.Start().ok());
  ASSERT_NE(sub.WaitFor([](const ClusterMap&) { return true; }, 3s), nullptr);
  RegisterNode(2);
  ASSERT_NE(sub.WaitFor([](const ClusterMap& m) { return m.Find(Id(2)) != nullptr; }, 3s), nullptr);
  EXPECT_GE(sub.polls(), 2u);
  EXPECT_EQ(sub.publications(), 0u);
  sub.Stop();
}

TEST_F(SubscriberTest, DerivesThePublishEndpointAndStopsPromptlyWhenRegistryIsGone) {
  ClusterMapSubscriber::Options o;
  o.registry_endpoint = "tcp://127.0.0.1:" + std::to_string(FreeTcpPortPair());
  o.rpc_timeout = 200ms;
  ClusterMapSubscriber sub(ctx_, o);
  ASSERT_TRUE(sub.Start().ok());
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(sub.Current(), nullptr);
  auto start = std::chrono::steady_clock::now();
  sub.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);

  ClusterMapSubscriber::Options bad;
  bad.registry_endpoint = "nowhere";
  ClusterMapSubscriber nope(ctx_, bad);
  EXPECT_FALSE(nope.Start().ok());
}

}  // namespace
}  // namespace shardfs
