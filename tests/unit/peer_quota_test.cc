// PeerQuota: per-peer and total limits on outstanding requests.
#include "src/peer_quota.h"

#include <gtest/gtest.h>

namespace shardfs {
namespace {

using Verdict = PeerQuota::Verdict;

PeerQuota::Limits Small() {
  PeerQuota::Limits l;
  l.max_requests_per_peer = 3;
  l.max_bytes_per_peer = 100;
  l.max_bytes_total = 250;
  return l;
}

TEST(PeerQuotaTest, CountsRequestsPerPeer) {
  PeerQuota q(Small());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(q.Admit("a", 1), Verdict::kAdmitted);
  EXPECT_EQ(q.Admit("a", 1), Verdict::kPeerRequests);
  // Another peer is not affected by a's limit.
  EXPECT_EQ(q.Admit("b", 1), Verdict::kAdmitted);
  EXPECT_EQ(q.requests("a"), 3u);
  q.Release("a", 1);
  EXPECT_EQ(q.Admit("a", 1), Verdict::kAdmitted);
}

TEST(PeerQuotaTest, CountsBytesPerPeerButAlwaysAdmitsAFirstRequest) {
  PeerQuota q(Small());
  // Larger than the per-peer limit, but the peer has nothing outstanding.
  EXPECT_EQ(q.Admit("a", 150), Verdict::kAdmitted);
  EXPECT_EQ(q.Admit("a", 1), Verdict::kPeerBytes);
  q.Release("a", 150);
  EXPECT_EQ(q.Admit("a", 60), Verdict::kAdmitted);
  EXPECT_EQ(q.Admit("a", 40), Verdict::kAdmitted);
  EXPECT_EQ(q.Admit("a", 1), Verdict::kPeerBytes);
  EXPECT_EQ(q.bytes("a"), 100u);
}

TEST(PeerQuotaTest, CountsBytesOfAllPeers) {
  PeerQuota q(Small());
  EXPECT_EQ(q.Admit("a", 100), Verdict::kAdmitted);
  EXPECT_EQ(q.Admit("b", 100), Verdict::kAdmitted);
  EXPECT_EQ(q.Admit("c", 100), Verdict::kTotalBytes);
  EXPECT_EQ(q.Admit("c", 50), Verdict::kAdmitted);
  EXPECT_EQ(q.total_bytes(), 250u);
  q.Release("b", 100);
  EXPECT_EQ(q.Admit("c", 100), Verdict::kPeerBytes);  // c holds 50 already... and 150 > 100
  EXPECT_EQ(q.Admit("d", 100), Verdict::kAdmitted);
  // Nothing outstanding at all: even an oversized request gets in.
  PeerQuota empty(Small());
  EXPECT_EQ(empty.Admit("z", 1000), Verdict::kAdmitted);
}

TEST(PeerQuotaTest, IdlePeersAreForgotten) {
  PeerQuota q(Small());
  for (int i = 0; i < 1000; ++i) {
    std::string peer = "peer" + std::to_string(i);
    ASSERT_EQ(q.Admit(peer, 10), Verdict::kAdmitted);
    q.Release(peer, 10);
  }
  EXPECT_EQ(q.peers(), 0u);
  EXPECT_EQ(q.total_bytes(), 0u);
  // Releasing what was never admitted changes nothing.
  q.Release("ghost", 10);
  EXPECT_EQ(q.peers(), 0u);
}

}  // namespace
}  // namespace shardfs
