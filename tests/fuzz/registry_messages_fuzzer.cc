// Fuzz target: every registry membership and health message's Decode(),
// and the cluster map, on any header.
//
// The input is a header frame. Whatever DecodeHeader() accepts, its fields
// go to every Decode() of protocol/registry_messages.h and
// protocol/health_messages.h and to ClusterMap::Decode() (src/cluster_map.h),
// whatever the header's type says: a peer chooses the type too. Each must
// return a message or a kBadMessage error, never crash; what it accepts
// must obey the limits the registry and its clients rely on (canonical node
// ids, connectable node endpoints, printable host names, bounded lists, a
// cluster map sorted by id without duplicates); and a decoded message,
// encoded again and decoded again, must come back equal.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/beacon.h"
#include "protocol/envelope.h"
#include "protocol/health_messages.h"
#include "protocol/node_messages.h"
#include "protocol/registry_messages.h"
#include "src/cluster_map.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

bool IsCanonicalNodeId(const std::string& id) {
  return id.size() == kNodeIdLength && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool Same(const RegisterNodeRequest& a, const RegisterNodeRequest& b) {
  return a.node_id == b.node_id && a.endpoint == b.endpoint && a.host == b.host &&
         a.capacity == b.capacity && a.used == b.used && a.shard_count == b.shard_count;
}
bool Same(const RegisterNodeReply& a, const RegisterNodeReply& b) {
  return a.epoch == b.epoch;
}
bool Same(const HeartbeatRequest& a, const HeartbeatRequest& b) {
  return a.node_id == b.node_id && a.used == b.used && a.capacity == b.capacity &&
         a.shard_count == b.shard_count;
}
bool Same(const HeartbeatReply& a, const HeartbeatReply& b) {
  return a.epoch == b.epoch && a.known == b.known;
}
bool Same(const GetClusterMapRequest&, const GetClusterMapRequest&) {
  return true;
}
bool Same(const ReportBadReplicaRequest& a, const ReportBadReplicaRequest& b) {
  return a.node_id == b.node_id && a.key == b.key && a.reason == b.reason;
}
bool Same(const FsckRequest& a, const FsckRequest& b) {
  return a.max_files == b.max_files;
}
bool Same(const FsckReply& a, const FsckReply& b) {
  if (a.files != b.files || a.shards != b.shards || a.healthy != b.healthy ||
      a.under_replicated != b.under_replicated || a.unavailable != b.unavailable ||
      a.lost != b.lost || a.files_degraded != b.files_degraded || a.files_lost != b.files_lost ||
      a.affected.size() != b.affected.size() || a.nodes.size() != b.nodes.size()) {
    return false;
  }
  for (size_t i = 0; i < a.affected.size(); ++i) {
    const FsckFile& x = a.affected[i];
    const FsckFile& y = b.affected[i];
    if (x.path != y.path || x.ino != y.ino || x.state != y.state || x.shards != y.shards ||
        x.fewest != y.fewest) {
      return false;
    }
  }
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    if (a.nodes[i].node_id != b.nodes[i].node_id || a.nodes[i].replicas != b.nodes[i].replicas ||
        a.nodes[i].bytes != b.nodes[i].bytes) {
      return false;
    }
  }
  const RepairProgress& p = a.repair;
  const RepairProgress& q = b.repair;
  return p.pending_copies == q.pending_copies && p.pending_bytes == q.pending_bytes &&
         p.copied_copies == q.copied_copies && p.copied_bytes == q.copied_bytes &&
         p.bytes_per_second == q.bytes_per_second && p.eta_seconds == q.eta_seconds;
}
bool Same(const RebalanceReply& a, const RebalanceReply& b) {
  return a.spread_percent == b.spread_percent && a.threshold_percent == b.threshold_percent;
}
bool Same(const SetDrainingRequest& a, const SetDrainingRequest& b) {
  return a.node_id == b.node_id && a.draining == b.draining;
}
bool Same(const ClusterMap& a, const ClusterMap& b) {
  return a.epoch == b.epoch && a.nodes == b.nodes;
}

// What the registry and its clients rely on once a message decoded.
void CheckLimits(const RegisterNodeRequest& m) {
  FUZZ_CHECK(IsCanonicalNodeId(m.node_id));
  auto ep = ParseTcpEndpoint(m.endpoint);
  FUZZ_CHECK(ep.ok() && !ep->IsWildcard() && ep->port != 0);
  FUZZ_CHECK(!m.host.empty() && m.host.size() <= kMaxHostNameLength);
  for (char c : m.host) FUZZ_CHECK(c > ' ' && c <= '~');
}
void CheckLimits(const RegisterNodeReply&) {}
void CheckLimits(const HeartbeatRequest& m) {
  FUZZ_CHECK(IsCanonicalNodeId(m.node_id));
}
void CheckLimits(const HeartbeatReply&) {}
void CheckLimits(const GetClusterMapRequest&) {}
void CheckLimits(const ReportBadReplicaRequest& m) {
  FUZZ_CHECK(IsCanonicalNodeId(m.node_id));
  FUZZ_CHECK(m.reason.size() <= kMaxBadReplicaReasonLength);
}
void CheckLimits(const FsckRequest& m) {
  FUZZ_CHECK(m.max_files <= kMaxFsckFiles);
}
void CheckLimits(const FsckReply& m) {
  FUZZ_CHECK(m.affected.size() <= kMaxFsckFiles);
  for (const FsckFile& f : m.affected) FUZZ_CHECK(f.path.size() <= kMaxWirePath);
  FUZZ_CHECK(m.nodes.size() <= 65536);
  for (const NodeReplicaCount& n : m.nodes) FUZZ_CHECK(n.node_id.size() <= kMaxNodeIdLength);
  // Whatever the counts say, the exit code is one of the three documented.
  const int code = m.ExitCode();
  FUZZ_CHECK(code >= 0 && code <= 2);
}
void CheckLimits(const RebalanceReply& m) {
  FUZZ_CHECK(m.spread_percent <= 100 && m.threshold_percent <= 100);
}
void CheckLimits(const SetDrainingRequest& m) {
  FUZZ_CHECK(m.node_id.size() <= kMaxNodeIdLength);
}
void CheckLimits(const ClusterMap& m) {
  FUZZ_CHECK(m.nodes.size() <= kMaxClusterNodes);
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const NodeRecord& n = m.nodes[i];
    FUZZ_CHECK(IsCanonicalNodeId(n.id));
    FUZZ_CHECK(ParseTcpEndpoint(n.endpoint).ok());
    FUZZ_CHECK(n.host.size() <= kMaxHostNameLength);
    FUZZ_CHECK(!NodeStateName(n.state).empty() && NodeStateName(n.state) != "unknown");
    FUZZ_CHECK(n.free() <= n.capacity);
    if (i > 0) FUZZ_CHECK(m.nodes[i - 1].id < n.id);  // sorted, no duplicates
    // Find() relies on that order.
    FUZZ_CHECK(m.Find(n.id) == &n);
  }
  for (const NodeRecord* live : m.Live()) FUZZ_CHECK(live->state == NodeState::kUp);
}

// Decodes `fields` as a T; when that works, checks its limits and that it
// survives Encode() -> header -> DecodeHeader() -> Decode() unchanged.
template <typename T>
void DecodeAs(const FieldReader& fields, uint16_t type, uint64_t request_id) {
  Result<T> m = T::Decode(fields);
  if (!m.ok()) {
    FUZZ_CHECK(m.status().code() == ErrorCode::kBadMessage);
    return;
  }
  CheckLimits(*m);
  const std::string wire = EncodeHeader(type, request_id, m->Encode());
  auto env = DecodeHeader(wire);
  FUZZ_CHECK(env.ok());
  Result<T> again = T::Decode(env->fields);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(Same(*m, *again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto env = DecodeHeader(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!env.ok()) return 0;
  const FieldReader& f = env->fields;
  const uint16_t t = env->type;
  const uint64_t id = env->request_id;
  DecodeAs<RegisterNodeRequest>(f, t, id);
  DecodeAs<RegisterNodeReply>(f, t, id);
  DecodeAs<HeartbeatRequest>(f, t, id);
  DecodeAs<HeartbeatReply>(f, t, id);
  DecodeAs<GetClusterMapRequest>(f, t, id);
  DecodeAs<ReportBadReplicaRequest>(f, t, id);
  DecodeAs<FsckRequest>(f, t, id);
  DecodeAs<FsckReply>(f, t, id);
  DecodeAs<RebalanceReply>(f, t, id);
  DecodeAs<SetDrainingRequest>(f, t, id);
  DecodeAs<ClusterMap>(f, t, id);
  return 0;
}
