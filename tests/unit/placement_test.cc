#include "src/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

namespace shardfs {
namespace {

constexpr uint64_t kShardBytes = 4 << 20;

std::vector<PlacementCandidate> Nodes(int count, int nodes_per_host = 1) {
  std::vector<PlacementCandidate> nodes;
  for (int i = 0; i < count; ++i) {
    nodes.push_back({.node_id = "node-" + std::to_string(i),
                     .host = "host-" + std::to_string(i / nodes_per_host),
                     .free_bytes = 1ull << 40,
                     .accepting = true});
  }
  return nodes;
}

std::string HostOf(const std::vector<PlacementCandidate>& nodes, const std::string& id) {
  for (const auto& n : nodes) {
    if (n.node_id == id) return n.host;
  }
  return "";
}

ShardKey Key(uint64_t i) {
  return ShardKey{.inode = 1000 + i / 7, .index = uint32_t(i % 7), .generation = 1 + i % 3};
}

TEST(PlacementTest, PicksDistinctNodesDeterministically) {
  auto nodes = Nodes(6);
  for (uint64_t i = 0; i < 1000; ++i) {
    auto picked = PlaceShard(Key(i), nodes, 3, kShardBytes);
    ASSERT_EQ(picked.size(), 3u);
    EXPECT_EQ(std::set<std::string>(picked.begin(), picked.end()).size(), 3u);
    EXPECT_EQ(PlaceShard(Key(i), nodes, 3, kShardBytes), picked);
    // Best first: the same as the top of the ranking.
    auto ranked = RankNodes(Key(i), nodes, kShardBytes);
    EXPECT_EQ(std::vector<std::string>(ranked.begin(), ranked.begin() + 3), picked);
  }
}

TEST(PlacementTest, CandidateOrderDoesNotMatter) {
  auto nodes = Nodes(9, 3);
  std::mt19937 rng(3);
  for (uint64_t i = 0; i < 200; ++i) {
    auto expect = PlaceShard(Key(i), nodes, 3, kShardBytes);
    auto shuffled = nodes;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    EXPECT_EQ(PlaceShard(Key(i), shuffled, 3, kShardBytes), expect);
  }
}

TEST(PlacementTest, SkipsNodesNotAcceptingOrFull) {
  auto nodes = Nodes(5);
  nodes[0].accepting = false;
  nodes[1].free_bytes = kShardBytes - 1;
  nodes[2].free_bytes = kShardBytes;  // exactly enough is enough
  for (uint64_t i = 0; i < 300; ++i) {
    auto picked = PlaceShard(Key(i), nodes, 3, kShardBytes);
    ASSERT_EQ(picked.size(), 3u);
    EXPECT_EQ(std::set<std::string>(picked.begin(), picked.end()),
              (std::set<std::string>{"node-2", "node-3", "node-4"}));
  }
}

TEST(PlacementTest, ReturnsFewerWhenNotEnoughNodes) {
  auto nodes = Nodes(2);
  EXPECT_EQ(PlaceShard(Key(1), nodes, 3, kShardBytes).size(), 2u);
  EXPECT_TRUE(PlaceShard(Key(1), {}, 3, kShardBytes).empty());
  EXPECT_TRUE(PlaceShard(Key(1), nodes, 0, kShardBytes).empty());
  // A node listed twice still holds one replica.
  auto doubled = nodes;
  doubled.push_back(nodes[0]);
  EXPECT_EQ(PlaceShard(Key(1), doubled, 3, kShardBytes).size(), 2u);
}

TEST(PlacementTest, SpreadsOverHostsFirst) {
  // Three machines with two nodes each.
  auto nodes = Nodes(6, 2);
  for (uint64_t i = 0; i < 1000; ++i) {
    auto picked = PlaceShard(Key(i), nodes, 3, kShardBytes);
    std::set<std::string> hosts;
    for (const auto& id : picked) hosts.insert(HostOf(nodes, id));
    EXPECT_EQ(hosts.size(), 3u) << "key " << i;
  }
  // More replicas than hosts: every host once, then the rest on distinct nodes.
  for (uint64_t i = 0; i < 1000; ++i) {
    auto picked = PlaceShard(Key(i), nodes, 5, kShardBytes);
    ASSERT_EQ(picked.size(), 5u);
    EXPECT_EQ(std::set<std::string>(picked.begin(), picked.end()).size(), 5u);
    std::set<std::string> first_three_hosts;
    for (int r = 0; r < 3; ++r) first_three_hosts.insert(HostOf(nodes, picked[r]));
    EXPECT_EQ(first_three_hosts.size(), 3u);
  }
}

TEST(PlacementTest, EvenDistribution) {
  auto nodes = Nodes(10);
  constexpr int kKeys = 100'000;
  std::map<std::string, int> load;
  std::map<std::string, int> primary;
  for (uint64_t i = 0; i < kKeys; ++i) {
    auto picked =
        PlaceShard(ShardKey{.inode = i, .index = 0, .generation = 1}, nodes, 3, kShardBytes);
    for (const auto& id : picked) load[id]++;
    primary[picked[0]]++;
  }
  const double mean = 3.0 * kKeys / nodes.size();
  for (const auto& [id, count] : load) {
    EXPECT_NEAR(count, mean, mean * 0.03) << id;
    EXPECT_NEAR(primary[id], kKeys / 10.0, kKeys / 10.0 * 0.05) << id;
  }
}

TEST(PlacementTest, RemovingANodeMovesOnlyItsShards) {
  for (int per_host : {1, 2}) {
    SCOPED_TRACE(per_host);
    auto nodes = Nodes(12, per_host);
    auto fewer = nodes;
    fewer.erase(fewer.begin() + 5);  // node-5 leaves
    int moved = 0;
    for (uint64_t i = 0; i < 20'000; ++i) {
      auto before = PlaceShard(Key(i), nodes, 3, kShardBytes);
      auto after = PlaceShard(Key(i), fewer, 3, kShardBytes);
      if (std::find(before.begin(), before.end(), "node-5") == before.end()) {
        EXPECT_EQ(after, before) << "key " << i;
        continue;
      }
      ++moved;
      // The survivors keep their copies; exactly one new node joins.
      std::set<std::string> a(after.begin(), after.end());
      int kept = 0;
      for (const auto& id : before) kept += a.count(id);
      EXPECT_EQ(kept, 2);
      EXPECT_EQ(after.size(), 3u);
    }
    EXPECT_NEAR(moved, 20'000 * 3 / 12, 20'000 * 3 / 12 * 0.1);
  }
}

TEST(PlacementTest, AddingANodeMovesShardsOnlyToIt) {
  auto nodes = Nodes(8);
  auto more = nodes;
  more.push_back({.node_id = "node-new", .host = "host-new", .free_bytes = 1ull << 40});
  int moved = 0;
  for (uint64_t i = 0; i < 20'000; ++i) {
    auto before = PlaceShard(Key(i), nodes, 3, kShardBytes);
    auto after = PlaceShard(Key(i), more, 3, kShardBytes);
    if (after == before) continue;
    ++moved;
    std::set<std::string> b(before.begin(), before.end());
    for (const auto& id : after) EXPECT_TRUE(b.count(id) || id == "node-new") << id;
  }
  EXPECT_NEAR(moved, 20'000 * 3 / 9, 20'000 * 3 / 9 * 0.1);
}

TEST(PlacementTest, RepairAddsOnlyMissingReplicas) {
  auto nodes = Nodes(6, 2);
  for (uint64_t i = 0; i < 500; ++i) {
    auto full = PlaceShard(Key(i), nodes, 3, kShardBytes);
    // One replica lost: ask for the rest given the two that remain.
    std::vector<std::string> remaining = {full[0], full[1]};
    auto extra = PlaceShard(Key(i), nodes, 3, kShardBytes, remaining);
    ASSERT_EQ(extra.size(), 1u);
    EXPECT_NE(extra[0], full[0]);
    EXPECT_NE(extra[0], full[1]);
    // Prefers the host not yet holding a copy.
    std::set<std::string> hosts = {HostOf(nodes, full[0]), HostOf(nodes, full[1])};
    EXPECT_FALSE(hosts.count(HostOf(nodes, extra[0]))) << "key " << i;
    EXPECT_EQ(extra[0], full[2]);
    // Enough already: nothing to add.
    EXPECT_TRUE(PlaceShard(Key(i), nodes, 2, kShardBytes, remaining).empty());
  }
}

TEST(PlacementTest, ScoreDependsOnWholeKey) {
  const ShardKey k{.inode = 1, .index = 2, .generation = 3};
  EXPECT_EQ(RendezvousScore(k, "a"), RendezvousScore(k, "a"));
  EXPECT_NE(RendezvousScore(k, "a"), RendezvousScore(k, "b"));
  EXPECT_NE(RendezvousScore(k, "a"),
            RendezvousScore({.inode = 1, .index = 2, .generation = 4}, "a"));
  EXPECT_NE(RendezvousScore(k, "a"),
            RendezvousScore({.inode = 1, .index = 3, .generation = 3}, "a"));
  EXPECT_NE(RendezvousScore(k, "a"),
            RendezvousScore({.inode = 2, .index = 2, .generation = 3}, "a"));
}

}  // namespace
}  // namespace shardfs
