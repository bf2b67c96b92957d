// OpenSessions: opens held under a lease, released when it lapses.
#include "nodeserver/open_sessions.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = OpenSessions::Clock;

TEST(OpenSessionsTest, LapsedSessionsHandBackTheirOpensOnce) {
  OpenSessions sessions(10s);
  const auto t0 = Clock::now();
  sessions.Opened(1, 100, t0);
  sessions.Opened(1, 100, t0);
  sessions.Opened(1, 101, t0);
  sessions.Opened(2, 100, t0);
  // Session 2 keeps renewing; session 1 goes silent.
  EXPECT_TRUE(sessions.Renew(2, t0 + 6s));
  size_t lapsed = 0;
  EXPECT_TRUE(sessions.Expire(t0 + 9s, &lapsed).empty());
  EXPECT_EQ(lapsed, 0u);
  std::vector<uint64_t> released = sessions.Expire(t0 + 10s, &lapsed);
  std::sort(released.begin(), released.end());
  EXPECT_EQ(released, (std::vector<uint64_t>{100, 100, 101}));
  EXPECT_EQ(lapsed, 1u);
  EXPECT_EQ(sessions.size(), 1u);
  // Its late release finds nothing to release: the open went with the lease.
  EXPECT_FALSE(sessions.Released(1, 100, t0 + 11s));
  EXPECT_FALSE(sessions.Renew(1, t0 + 11s));
  EXPECT_TRUE(sessions.Expire(t0 + 12s).empty());
  EXPECT_EQ(sessions.Expire(t0 + 16s), (std::vector<uint64_t>{100}));
}

TEST(OpenSessionsTest, ReleasesAndRenewalsKeepASessionAlive) {
  OpenSessions sessions(10s);
  const auto t0 = Clock::now();
  sessions.Opened(7, 100, t0);
  sessions.Opened(7, 101, t0);
  EXPECT_TRUE(sessions.Released(7, 101, t0 + 8s));
  EXPECT_FALSE(sessions.Released(7, 101, t0 + 8s));  // held once only
  EXPECT_TRUE(sessions.Expire(t0 + 15s).empty());
  EXPECT_TRUE(sessions.Released(7, 100, t0 + 15s));
  // Nothing held: the session is gone.
  EXPECT_EQ(sessions.size(), 0u);
  EXPECT_FALSE(sessions.Renew(7, t0 + 15s));
}

TEST(OpenSessionsTest, ReconcileMakesTheRecordMatchTheClient) {
  OpenSessions sessions(10s);
  const auto t0 = Clock::now();
  bool known = true;
  // A registry that restarted knows nothing: everything is added.
  auto change = sessions.Reconcile(3, {{100, 2}, {101, 1}}, t0, &known);
  EXPECT_FALSE(known);
  EXPECT_EQ(change, (std::map<uint64_t, int64_t>{{100, 2}, {101, 1}}));
  // A lost release reply and a lost open reply: only the differences.
  sessions.Opened(3, 102, t0);
  change = sessions.Reconcile(3, {{100, 1}, {101, 1}, {103, 1}}, t0 + 5s, &known);
  EXPECT_TRUE(known);
  EXPECT_EQ(change, (std::map<uint64_t, int64_t>{{100, -1}, {102, -1}, {103, 1}}));
  // The reconcile renewed the session.
  EXPECT_TRUE(sessions.Expire(t0 + 14s).empty());
  std::vector<uint64_t> released = sessions.Expire(t0 + 15s);
  std::sort(released.begin(), released.end());
  EXPECT_EQ(released, (std::vector<uint64_t>{100, 101, 103}));
  // Holding nothing ends the session.
  sessions.Opened(4, 100, t0);
  change = sessions.Reconcile(4, {}, t0, &known);
  EXPECT_EQ(change, (std::map<uint64_t, int64_t>{{100, -1}}));
  EXPECT_EQ(sessions.size(), 0u);
}

}  // namespace
}  // namespace shardfs
