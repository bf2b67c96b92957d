#include "src/entry_cache.h"

#include <gtest/gtest.h>

namespace shardfs {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = EntryCache::Clock;

InodeAttrs File(uint64_t ino, uint64_t size = 0) {
  InodeAttrs a;
  a.ino = ino;
  a.type = FileType::kRegular;
  a.mode = 0644;
  a.nlink = 1;
  a.size = size;
  return a;
}

DirEntry Named(std::string name, const InodeAttrs& attrs) {
  return DirEntry{std::move(name), attrs.ino, attrs.type, attrs, false};
}

EntryCache Cache(size_t max_dir_entries = 100, size_t max_entries = 1000) {
  return EntryCache(EntryCache::Limits{seconds(1), max_dir_entries, max_entries});
}

// Lists dir 1 as {a: 10, b: 11} at t0.
void ListOne(EntryCache& cache, Clock::time_point t0) {
  auto ticket = cache.Begin(1, t0);
  cache.Store(ticket, {Named("a", File(10, 5)), Named("b", File(11, 6))});
}

TEST(EntryCache, AnswersNamesAndAbsencesFromAListingUntilTheTtl) {
  EntryCache cache = Cache();
  const auto t0 = Clock::now();
  EXPECT_FALSE(cache.Find(1, "a", t0).has_value());
  ListOne(cache, t0);
  auto a = cache.Find(1, "a", t0 + milliseconds(400));
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(a->attrs.has_value());
  EXPECT_EQ(*a->attrs, File(10, 5));
  EXPECT_EQ(a->left, milliseconds(600));  // the kernel is told only what is left
  auto missing = cache.Find(1, "zz", t0 + milliseconds(400));
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->attrs.has_value());
  EXPECT_FALSE(cache.Find(2, "a", t0).has_value());  // another directory
  EXPECT_FALSE(cache.Find(1, "a", t0 + seconds(1)).has_value());
  EXPECT_FALSE(cache.Find(1, "zz", t0 + seconds(1)).has_value());
}

TEST(EntryCache, ListsADirectoryOnTheSecondMissWithinTheTtlAndOneListerAtATime) {
  EntryCache cache = Cache();
  const auto t0 = Clock::now();
  EXPECT_FALSE(cache.ShouldList(1, t0));
  EXPECT_FALSE(cache.ShouldList(1, t0 + seconds(2)));  // the first miss of a new window
  EXPECT_TRUE(cache.ShouldList(1, t0 + seconds(2) + milliseconds(10)));
  EXPECT_FALSE(cache.ShouldList(1, t0 + seconds(2) + milliseconds(20)));  // being listed
  auto ticket = cache.Begin(1, t0 + seconds(2));
  cache.Store(ticket, {Named("a", File(10))});
  // Names of a live listing changed here since: listed again once a few
  // were asked.
  cache.Changed(10);
  EXPECT_FALSE(cache.ShouldList(1, t0 + seconds(2) + milliseconds(30)));
  EXPECT_TRUE(cache.ShouldList(1, t0 + seconds(2) + milliseconds(30)));
  ticket = cache.Begin(1, t0 + seconds(2));
  cache.Store(ticket, {Named("a", File(10))});
  EXPECT_TRUE(cache.Find(1, "a", t0 + seconds(2) + milliseconds(40))->attrs.has_value());
  // The listing runs out while the directory is still walked: listed again
  // at the first miss.
  EXPECT_FALSE(cache.Find(1, "a", t0 + seconds(3) + milliseconds(100)).has_value());
  EXPECT_TRUE(cache.ShouldList(1, t0 + seconds(3) + milliseconds(100)));
}

// Random lookups spread over large directories must not list 10,000 names
// to answer each one (the scaling run's stat of random files went from
// 224 us to 13 ms each): once a directory is known to be large, it is
// listed again only when enough of its names are asked within one ttl to
// pay for the listing.
TEST(EntryCache, ALargeDirectoryIsListedAgainOnlyWhenEnoughNamesAreAsked) {
  EntryCache cache = Cache(/*max_dir_entries=*/20000, /*max_entries=*/100000);
  const auto t0 = Clock::now();
  std::vector<DirEntry> many;
  for (uint64_t i = 0; i < 10000; ++i)
    many.push_back(Named("f" + std::to_string(i), File(100 + i)));
  cache.Store(cache.Begin(1, t0), many);
  ASSERT_TRUE(cache.Find(1, "f5", t0 + milliseconds(500)).has_value());

  // Expired; a lookup now and then is asked of the registry, never listed.
  auto t = t0 + seconds(1);
  EXPECT_FALSE(cache.Find(1, "f7", t).has_value());
  for (int i = 0; i < 20; ++i, t += milliseconds(700)) EXPECT_FALSE(cache.ShouldList(1, t));

  // A walk: 2 + 10000/256 = 41 names within one ttl pay for a listing.
  t += seconds(2);
  for (int i = 1; i < 41; ++i) EXPECT_FALSE(cache.ShouldList(1, t + milliseconds(i))) << i;
  EXPECT_TRUE(cache.ShouldList(1, t + milliseconds(41)));

  // A small directory is still listed at the second miss.
  cache.Store(cache.Begin(2, t0), {Named("a", File(10))});
  EXPECT_FALSE(cache.ShouldList(2, t0 + seconds(5)));
  EXPECT_TRUE(cache.ShouldList(2, t0 + seconds(5)));
}

TEST(EntryCache, ALargeDirectoryIsNotListedAgainForAWhile) {
  EntryCache cache = Cache(/*max_dir_entries=*/2);
  const auto t0 = Clock::now();
  ASSERT_FALSE(cache.ShouldList(1, t0));
  ASSERT_TRUE(cache.ShouldList(1, t0));
  auto ticket = cache.Begin(1, t0);
  cache.Store(ticket, {Named("a", File(10)), Named("b", File(11)), Named("c", File(12))});
  EXPECT_FALSE(cache.Find(1, "a", t0).has_value());  // not kept
  EXPECT_FALSE(cache.ShouldList(1, t0 + seconds(2)));
  EXPECT_FALSE(cache.ShouldList(1, t0 + seconds(2)));
  EXPECT_FALSE(cache.ShouldList(1, t0 + seconds(11)));
  EXPECT_TRUE(cache.ShouldList(1, t0 + seconds(11)));
}

TEST(EntryCache, ThisMountsChangesShowAtOnce) {
  EntryCache cache = Cache();
  const auto t0 = Clock::now();
  ListOne(cache, t0);
  cache.Added(1, "c", File(12, 0));
  ASSERT_TRUE(cache.Find(1, "c", t0)->attrs.has_value());
  EXPECT_EQ(cache.Find(1, "c", t0)->attrs->ino, 12u);
  cache.Removed(1, "a");
  ASSERT_TRUE(cache.Find(1, "a", t0).has_value());
  EXPECT_FALSE(cache.Find(1, "a", t0)->attrs.has_value());  // gone
  // A write, truncate or chmod here: the listed attributes are old.
  cache.Changed(11);
  EXPECT_FALSE(cache.Find(1, "b", t0).has_value());
  cache.Changed(12);
  EXPECT_FALSE(cache.Find(1, "c", t0).has_value());
}

TEST(EntryCache, ARenameLeavesBothNamesToTheRegistry) {
  EntryCache cache = Cache();
  const auto t0 = Clock::now();
  ListOne(cache, t0);
  auto ticket = cache.Begin(2, t0);
  cache.Store(ticket, {Named("x", File(20))});
  cache.Renamed(1, "a", 2, "y");
  EXPECT_FALSE(cache.Find(1, "a", t0).has_value());  // ask: gone, or exchanged
  EXPECT_FALSE(cache.Find(2, "y", t0).has_value());  // ask: it exists now
  EXPECT_TRUE(cache.Find(2, "x", t0)->attrs.has_value());
  // The renamed inode's attributes are not used under any other name.
  cache.Added(2, "hardlink", File(10));
  cache.Renamed(2, "hardlink", 2, "h2");
  EXPECT_FALSE(cache.Find(2, "h2", t0).has_value());
}

TEST(EntryCache, AListingAskedBeforeAChangeThereIsNotKept) {
  EntryCache cache = Cache();
  const auto t0 = Clock::now();
  auto ticket = cache.Begin(1, t0);
  cache.Removed(1, "a");  // lands at the registry while the pages travel
  cache.Store(ticket, {Named("a", File(10)), Named("b", File(11))});
  EXPECT_FALSE(cache.Find(1, "a", t0).has_value());
  // An inode changed after the listing was asked for is asked for again.
  ticket = cache.Begin(1, t0);
  cache.Changed(11);
  cache.Store(ticket, {Named("a", File(10)), Named("b", File(11))});
  EXPECT_TRUE(cache.Find(1, "a", t0)->attrs.has_value());
  EXPECT_FALSE(cache.Find(1, "b", t0).has_value());
  // A change before the listing was asked for is in it.
  cache.Changed(10);
  ticket = cache.Begin(1, t0);
  cache.Store(ticket, {Named("a", File(10, 99))});
  EXPECT_EQ(cache.Find(1, "a", t0)->attrs->size, 99u);
}

TEST(EntryCache, KeepsAtMostMaxEntriesDroppingTheOldestListings) {
  EntryCache cache = Cache(/*max_dir_entries=*/10, /*max_entries=*/4);
  const auto t0 = Clock::now();
  for (uint64_t dir = 1; dir <= 3; ++dir) {
    auto ticket = cache.Begin(dir, t0 + milliseconds(dir));
    cache.Store(ticket, {Named("a", File(dir * 10)), Named("b", File(dir * 10 + 1))});
  }
  EXPECT_LE(cache.entries(), 4u);
  EXPECT_FALSE(cache.Find(1, "a", t0 + milliseconds(5)).has_value());
  EXPECT_TRUE(cache.Find(3, "a", t0 + milliseconds(5)).has_value());
}

TEST(EntryCache, AZeroTtlTurnsItOff) {
  EntryCache cache(EntryCache::Limits{seconds(0)});
  const auto t0 = Clock::now();
  EXPECT_FALSE(cache.ShouldList(1, t0));
  EXPECT_FALSE(cache.ShouldList(1, t0));
  ListOne(cache, t0);
  EXPECT_FALSE(cache.Find(1, "a", t0).has_value());
  EXPECT_EQ(cache.entries(), 0u);
}

}  // namespace
}  // namespace shardfs
