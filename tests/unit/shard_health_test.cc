#include "nodeserver/shard_health.h"

#include <gtest/gtest.h>

#include "protocol/envelope.h"
#include "protocol/health_messages.h"

namespace shardfs {
namespace {

constexpr int64_t kNow = 1'000'000'000;
constexpr int64_t kDelay = 60'000;

NodeRecord Node(const std::string& id, NodeState state, int64_t last_seen_ms = kNow) {
  NodeRecord n;
  n.id = id;
  n.endpoint = "tcp://127.0.0.1:1";
  n.state = state;
  n.last_seen_ms = last_seen_ms;
  return n;
}

// up1, up2, up3 up; drain draining; fresh down 10 s; gone down 2 min.
LivenessView View(int64_t uptime_ms = kDelay * 10) {
  ClusterMap map;
  map.nodes = {Node("drain", NodeState::kDraining),
               Node("fresh", NodeState::kDown, kNow - 10'000),
               Node("gone", NodeState::kDown, kNow - 120'000),
               Node("up1", NodeState::kUp),
               Node("up2", NodeState::kUp),
               Node("up3", NodeState::kUp)};
  return LivenessView(map, kNow, kDelay, uptime_ms);
}

// Fields through a real header encode/decode, as the wire would carry them.
Envelope OverTheWire(const FieldWriter& fields) {
  auto env = DecodeHeader(EncodeHeader(MessageType::kFsck, 1, fields));
  EXPECT_TRUE(env.ok());
  return std::move(env).value();
}

ShardEntry Entry(std::vector<std::string> replicas) {
  ShardEntry e;
  e.replicas = std::move(replicas);
  return e;
}

TEST(LivenessViewTest, StatesFollowTheMapAndTheRepairDelay) {
  LivenessView v = View();
  EXPECT_EQ(v.StateOf("up1"), ReplicaState::kCounted);
  EXPECT_EQ(v.StateOf("drain"), ReplicaState::kDraining);
  EXPECT_EQ(v.StateOf("fresh"), ReplicaState::kAbsent);
  EXPECT_EQ(v.StateOf("gone"), ReplicaState::kLost);
  EXPECT_EQ(v.StateOf("never-seen"), ReplicaState::kLost);
  // A registry that just started has not heard from every node yet.
  EXPECT_EQ(View(1000).StateOf("never-seen"), ReplicaState::kAbsent);
}

TEST(ShardHealthTest, HealthyShardNeedsNothing) {
  ShardHealth h = JudgeShard(Entry({"up1", "up2", "up3"}), 3, View());
  EXPECT_EQ(h.verdict, ShardHealth::Verdict::kHealthy);
  EXPECT_EQ(h.CopiesToMake(), 0u);
  EXPECT_TRUE(h.TrimmedReplicas().empty());
}

TEST(ShardHealthTest, AbsentCopiesAreWaitedForLostOnesReplaced) {
  ShardHealth waiting = JudgeShard(Entry({"up1", "up2", "fresh"}), 3, View());
  EXPECT_EQ(waiting.verdict, ShardHealth::Verdict::kUnderReplicated);
  EXPECT_EQ(waiting.CopiesToMake(), 0u);
  ShardHealth lost = JudgeShard(Entry({"up1", "gone", "fresh"}), 3, View());
  EXPECT_EQ(lost.CopiesToMake(), 1u);
  EXPECT_EQ(lost.lost, std::vector<std::string>{"gone"});
}

TEST(ShardHealthTest, DrainingCopiesAreReadableButNotCounted) {
  ShardHealth h = JudgeShard(Entry({"drain", "up1"}), 2, View());
  EXPECT_EQ(h.verdict, ShardHealth::Verdict::kUnderReplicated);
  EXPECT_EQ(h.CopiesToMake(), 1u);
  // Once the goal is met elsewhere, the draining copy is trimmed.
  ShardHealth moved = JudgeShard(Entry({"drain", "up1", "up2"}), 2, View());
  EXPECT_EQ(moved.TrimmedReplicas(), (std::vector<std::string>{"up1", "up2"}));
}

TEST(ShardHealthTest, NothingReadable) {
  ShardHealth unavailable = JudgeShard(Entry({"fresh", "gone"}), 2, View());
  EXPECT_EQ(unavailable.verdict, ShardHealth::Verdict::kUnavailable);
  EXPECT_EQ(unavailable.CopiesToMake(), 0u);  // nothing to copy from
  ShardHealth lost = JudgeShard(Entry({"gone"}), 2, View());
  EXPECT_EQ(lost.verdict, ShardHealth::Verdict::kLost);
}

TEST(ShardHealthTest, LoweredGoalTrimsSurplus) {
  ShardHealth h = JudgeShard(Entry({"up1", "up2", "up3"}), 1, View());
  EXPECT_EQ(h.verdict, ShardHealth::Verdict::kHealthy);
  EXPECT_EQ(h.TrimmedReplicas(), std::vector<std::string>{"up1"});
}

TEST(HealthMessagesTest, FsckReplyRoundTrips) {
  FsckReply r;
  r.files = 3;
  r.shards = 10;
  r.healthy = 7;
  r.under_replicated = 2;
  r.lost = 1;
  r.files_degraded = 1;
  r.files_lost = 1;
  r.affected = {FsckFile{"/a/b", 12, "lost", 1, 0}, FsckFile{"", 13, "degraded", 2, 1}};
  r.nodes = {NodeReplicaCount{"n1", 5}};
  r.repair.pending_copies = 4;
  r.repair.eta_seconds = 9;
  EXPECT_EQ(r.ExitCode(), 2);
  auto decoded = FsckReply::Decode(OverTheWire(r.Encode()).fields);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->affected.size(), 2u);
  EXPECT_EQ(decoded->affected[0].path, "/a/b");
  EXPECT_EQ(decoded->nodes[0].replicas, 5u);
  EXPECT_EQ(decoded->repair.eta_seconds, 9u);
  EXPECT_EQ(decoded->ExitCode(), 2);
}

TEST(HealthMessagesTest, MalformedRequestsAreErrors) {
  FieldWriter w;
  w.U64("max", kMaxFsckFiles + 1);
  EXPECT_FALSE(FsckRequest::Decode(OverTheWire(w).fields).ok());
  FieldWriter no_id;
  no_id.Bool("draining", true);
  EXPECT_FALSE(SetDrainingRequest::Decode(OverTheWire(no_id).fields).ok());
  FieldWriter missing;
  missing.U64("files", 1);
  EXPECT_FALSE(FsckReply::Decode(OverTheWire(missing).fields).ok());
}

}  // namespace
}  // namespace shardfs
