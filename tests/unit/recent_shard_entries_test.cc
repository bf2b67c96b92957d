#include "src/recent_shard_entries.h"

#include <gtest/gtest.h>

namespace shardfs {
namespace {

ShardEntry Entry(uint64_t generation, uint64_t length) {
  return ShardEntry{0, generation, length, 0x1234 + generation, {"node-a", "node-b"}, std::nullopt};
}

TEST(RecentShardEntries, RemembersTheLatestEntryPerFile) {
  RecentShardEntries recent(10);
  EXPECT_FALSE(recent.Find(7).has_value());
  recent.Remember(7, Entry(1, 4096));
  recent.Remember(7, Entry(2, 100));
  ASSERT_TRUE(recent.Find(7).has_value());
  EXPECT_EQ(*recent.Find(7), Entry(2, 100));
  recent.Forget(7);
  EXPECT_FALSE(recent.Find(7).has_value());
}

// A wrong guess costs one read of the remembered length: only small ones,
// and only entries that name somewhere to read from.
TEST(RecentShardEntries, KeepsOnlySmallNonEmptyShardsWithReplicas) {
  RecentShardEntries recent(10);
  recent.Remember(1, Entry(1, RecentShardEntries::kMaxRememberedLength));
  recent.Remember(2, Entry(1, RecentShardEntries::kMaxRememberedLength + 1));
  recent.Remember(3, Entry(1, 0));
  ShardEntry nowhere = Entry(1, 10);
  nowhere.replicas.clear();
  recent.Remember(4, nowhere);
  EXPECT_TRUE(recent.Find(1).has_value());
  EXPECT_FALSE(recent.Find(2).has_value());
  EXPECT_FALSE(recent.Find(3).has_value());
  EXPECT_FALSE(recent.Find(4).has_value());
  // A file that grew past the limit is forgotten, not left at its old entry.
  recent.Remember(1, Entry(2, RecentShardEntries::kMaxRememberedLength + 1));
  EXPECT_FALSE(recent.Find(1).has_value());
}

TEST(RecentShardEntries, DropsTheOldestPastCapacity) {
  RecentShardEntries recent(3);
  for (uint64_t ino = 1; ino <= 5; ++ino) recent.Remember(ino, Entry(ino, 10));
  EXPECT_EQ(recent.size(), 3u);
  EXPECT_FALSE(recent.Find(1).has_value());
  EXPECT_FALSE(recent.Find(2).has_value());
  EXPECT_TRUE(recent.Find(5).has_value());
  // Many forgotten and remembered again: still bounded.
  for (int round = 0; round < 1000; ++round) {
    recent.Forget(5);
    recent.Remember(5, Entry(round, 10));
  }
  EXPECT_EQ(recent.size(), 3u);
  EXPECT_TRUE(recent.Find(5).has_value());
  RecentShardEntries off(0);
  off.Remember(1, Entry(1, 10));
  EXPECT_FALSE(off.Find(1).has_value());
}

}  // namespace
}  // namespace shardfs
