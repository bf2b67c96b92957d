#include "src/dir_attr_cache.h"

#include <gtest/gtest.h>

namespace shardfs {
namespace {

using std::chrono::seconds;

InodeAttrs Dir(uint64_t ino, int64_t ctime_ns, uint32_t mode = 0755) {
  InodeAttrs a;
  a.ino = ino;
  a.type = FileType::kDirectory;
  a.mode = mode;
  a.nlink = 2;
  a.ctime_ns = ctime_ns;
  a.mtime_ns = ctime_ns;
  return a;
}

TEST(DirAttrCache, AnswersUntilTheTtlRunsOut) {
  DirAttrCache cache(seconds(1));
  const auto t0 = DirAttrCache::Clock::now();
  EXPECT_FALSE(cache.Get(7, t0).has_value());
  cache.Put({Dir(7, 100)}, t0);
  auto got = cache.Get(7, t0 + std::chrono::milliseconds(999));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, Dir(7, 100));
  EXPECT_FALSE(cache.Get(7, t0 + seconds(1)).has_value());
  EXPECT_FALSE(cache.Get(8, t0).has_value());
}

TEST(DirAttrCache, AnOlderReplyDoesNotReplaceANewerOne) {
  DirAttrCache cache(seconds(10));
  const auto t0 = DirAttrCache::Clock::now();
  cache.Put({Dir(7, 200, 0700)}, t0);
  cache.Put({Dir(7, 100, 0755)}, t0);  // overtaken on its way
  EXPECT_EQ(cache.Get(7, t0)->mode, 0700u);
  cache.Put({Dir(7, 200, 0711)}, t0);  // same instant: the later reply wins
  EXPECT_EQ(cache.Get(7, t0)->mode, 0711u);
  cache.Put({Dir(7, 300, 0750), Dir(9, 300)}, t0);
  EXPECT_EQ(cache.Get(7, t0)->mode, 0750u);
  EXPECT_TRUE(cache.Get(9, t0).has_value());
}

TEST(DirAttrCache, ForgetAsksAgain) {
  DirAttrCache cache(seconds(10));
  cache.Put({Dir(7, 100)});
  cache.Forget(7);
  EXPECT_FALSE(cache.Get(7).has_value());
}

TEST(DirAttrCache, ZeroTtlKeepsNothing) {
  DirAttrCache cache(seconds(0));
  cache.Put({Dir(7, 100)});
  EXPECT_FALSE(cache.Get(7).has_value());
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DirAttrCache, StaysWithinItsBound) {
  DirAttrCache cache(seconds(10), 8);
  const auto t0 = DirAttrCache::Clock::now();
  for (uint64_t ino = 1; ino <= 100; ++ino) cache.Put({Dir(ino, 1)}, t0);
  EXPECT_LE(cache.size(), 8u);
  EXPECT_TRUE(cache.Get(100, t0).has_value());
  // Expired entries make room before live ones are dropped.
  DirAttrCache aging(seconds(1), 4);
  aging.Put({Dir(1, 1), Dir(2, 1), Dir(3, 1)}, t0);
  aging.Put({Dir(4, 1)}, t0 + std::chrono::milliseconds(500));
  aging.Put({Dir(5, 1)}, t0 + std::chrono::milliseconds(1200));
  EXPECT_TRUE(aging.Get(4, t0 + std::chrono::milliseconds(1200)).has_value());
  EXPECT_TRUE(aging.Get(5, t0 + std::chrono::milliseconds(1200)).has_value());
}

}  // namespace
}  // namespace shardfs
