#include "src/xattr_negative_cache.h"

#include <gtest/gtest.h>

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = XattrNegativeCache::Clock;

TEST(XattrNegativeCacheTest, RemembersAbsentNamesUntilTheyExpire) {
  XattrNegativeCache cache(1s);
  const auto t0 = Clock::now();
  EXPECT_FALSE(cache.KnownAbsent(5, "security.capability", t0));
  cache.NoteAbsent(5, "security.capability", cache.Version(), t0);
  EXPECT_TRUE(cache.KnownAbsent(5, "security.capability", t0 + 999ms));
  EXPECT_FALSE(cache.KnownAbsent(5, "user.other", t0));
  EXPECT_FALSE(cache.KnownAbsent(6, "security.capability", t0));
  EXPECT_FALSE(cache.KnownAbsent(5, "security.capability", t0 + 1s));
}

TEST(XattrNegativeCacheTest, NewInodeHasNoXattrs) {
  XattrNegativeCache cache(1s);
  const auto t0 = Clock::now();
  cache.NoteNoXattrs(9, t0);
  EXPECT_TRUE(cache.KnownAbsent(9, "security.capability", t0));
  EXPECT_TRUE(cache.KnownAbsent(9, "user.anything", t0 + 500ms));
  EXPECT_FALSE(cache.KnownAbsent(9, "user.anything", t0 + 2s));
}

TEST(XattrNegativeCacheTest, ChangesThroughThisMountForgetAtOnce) {
  XattrNegativeCache cache(10s);
  cache.NoteNoXattrs(1);
  cache.NoteAbsent(1, "user.a", cache.Version());
  cache.NoteAbsent(2, "user.a", cache.Version());
  cache.Invalidate(1);
  EXPECT_FALSE(cache.KnownAbsent(1, "user.a"));
  EXPECT_FALSE(cache.KnownAbsent(1, "user.b"));
  EXPECT_TRUE(cache.KnownAbsent(2, "user.a"));
}

// A getxattr answer (ENODATA) that was on its way while a setxattr went
// through must not be kept: the name may exist now.
TEST(XattrNegativeCacheTest, AnswerCrossingAChangeIsNotKept) {
  XattrNegativeCache cache(10s);
  const uint64_t asked = cache.Version();
  cache.Invalidate(3);  // setxattr(3, "user.a") meanwhile
  cache.NoteAbsent(3, "user.a", asked);
  EXPECT_FALSE(cache.KnownAbsent(3, "user.a"));
  cache.NoteAbsent(3, "user.a", cache.Version());
  EXPECT_TRUE(cache.KnownAbsent(3, "user.a"));
}

// What a directory listing says (no xattrs at all) is kept, unless this
// mount changed an xattr while the listing was on its way.
TEST(XattrNegativeCacheTest, ListingCrossingAChangeIsNotKept) {
  XattrNegativeCache cache(10s);
  uint64_t asked = cache.Version();
  cache.NoteNoXattrs(4, asked);
  EXPECT_TRUE(cache.KnownAbsent(4, "security.selinux"));
  asked = cache.Version();
  cache.Invalidate(5);  // setxattr(5, ...) meanwhile
  cache.NoteNoXattrs(5, asked);
  EXPECT_FALSE(cache.KnownAbsent(5, "security.selinux"));
}

TEST(XattrNegativeCacheTest, OffWithoutATimeout) {
  XattrNegativeCache cache(0s);
  cache.NoteNoXattrs(1);
  cache.NoteAbsent(1, "user.a", cache.Version());
  EXPECT_FALSE(cache.KnownAbsent(1, "user.a"));
  EXPECT_EQ(cache.size(), 0u);
}

TEST(XattrNegativeCacheTest, StaysWithinItsSize) {
  XattrNegativeCache cache(10s, 100);
  const auto t0 = Clock::now();
  for (uint64_t ino = 0; ino < 1000; ++ino) {
    cache.NoteAbsent(ino, "security.capability", cache.Version(), t0);
    EXPECT_LE(cache.size(), 100u);
  }
  // The newest entry is always kept.
  EXPECT_TRUE(cache.KnownAbsent(999, "security.capability", t0));
}

}  // namespace
}  // namespace shardfs
