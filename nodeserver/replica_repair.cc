#include "nodeserver/replica_repair.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "protocol/registry_messages.h"
#include "src/placement.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string Endpoint(const ClusterMap& map, const std::string& id) {
  const NodeRecord* n = map.Find(id);
  return n == nullptr ? std::string() : n->endpoint;
}

// How long the rate estimate looks back.
constexpr auto kRateWindow = std::chrono::seconds(20);
// A pass re-scans after this much copying, so new priorities (a second node
// lost: its shards now have fewer copies) are picked up.
constexpr auto kMaxPassWork = std::chrono::seconds(30);
constexpr uint64_t kInventoryPage = 1000;
constexpr size_t kParallelCopies = 4;

}  // namespace

ReplicaRepair::ReplicaRepair(zmq::context_t& context, NamespaceDb* db, Membership* membership,
                             Options options)
    : db_(db), membership_(membership), options_(options), nodes_(context) {}

ReplicaRepair::~ReplicaRepair() {
  Stop();
}

void ReplicaRepair::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void ReplicaRepair::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReplicaRepair::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

bool ReplicaRepair::Stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void ReplicaRepair::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, options_.scan_interval, [this] { return stopping_ || woken_; });
    if (stopping_) break;
    woken_ = false;
    lock.unlock();
    // A pass that changed something runs again at once: the next one may
    // find work the first made possible (say, trims after copies).
    while (RunPass() > 0 && !Stopping()) {
    }
    lock.lock();
  }
}

LivenessView ReplicaRepair::View() const {
  const int64_t uptime_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
  return LivenessView(membership_->Map(), WallMs(), options_.repair_delay.count(), uptime_ms);
}

size_t ReplicaRepair::RunPass() {
  const LivenessView view = View();
  size_t changes = 0;

  // Nodes that (re)appeared since the last scan get their inventory checked.
  std::set<std::string> alive;
  std::vector<std::string> to_sweep;
  for (const NodeRecord& n : view.map().nodes) {
    if (n.state == NodeState::kDown) continue;
    alive.insert(n.id);
    if (seen_alive_.count(n.id) == 0) to_sweep.push_back(n.id);
  }
  seen_alive_ = std::move(alive);

  std::vector<CopyTask> copies;
  std::vector<ShardKey> trims;
  RepairProgress pending;
  db_->store().ForEachShard([&](uint64_t ino, uint32_t goal, const ShardEntry& entry) {
    ShardHealth h = JudgeShard(entry, GoalOf(goal), view);
    const ShardKey key{ino, entry.index, entry.generation};
    if (size_t n = h.CopiesToMake(); n > 0) {
      copies.push_back(CopyTask{key, h.counted.size()});
      pending.pending_copies += n;
      pending.pending_bytes += n * entry.length;
    } else if (!h.TrimmedReplicas().empty()) {
      trims.push_back(key);
    }
  });
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    progress_.pending_copies = pending.pending_copies;
    progress_.pending_bytes = pending.pending_bytes;
  }

  // Fewest copies first: those are the shards one more failure would lose.
  std::stable_sort(copies.begin(), copies.end(),
                   [](const CopyTask& a, const CopyTask& b) { return a.counted < b.counted; });
  // A few copies at once: each waits on two nodes' disks and the network,
  // so one at a time leaves most of the cluster idle.
  const auto pass_start = Clock::now();
  std::atomic<size_t> next{0};
  std::atomic<size_t> repaired{0};
  auto copier = [&] {
    for (size_t i = next++; i < copies.size(); i = next++) {
      if (Stopping() || Clock::now() - pass_start > kMaxPassWork) break;
      if (Repair(copies[i].key)) ++repaired;
    }
  };
  std::vector<std::thread> copiers;
  for (size_t i = 0; i < std::min(kParallelCopies, copies.size()); ++i)
    copiers.emplace_back(copier);
  for (std::thread& t : copiers) t.join();
  changes += repaired;
  for (const ShardKey& key : trims) {
    if (Stopping()) break;
    if (Trim(key)) ++changes;
  }
  // Evening out comes after safety: only when no shard is short.
  if (copies.empty() && !Stopping()) changes += Rebalance(view);
  for (const std::string& id : to_sweep) {
    if (Stopping()) break;
    Sweep(id);
  }
  return changes;
}

bool ReplicaRepair::Repair(const ShardKey& key) {
  std::optional<ShardEntry> entry = db_->store().GetShard(key.inode, key.index);
  if (!entry || entry->generation != key.generation) return false;
  auto attrs = db_->store().GetAttr(key.inode);
  if (!attrs.ok()) return false;
  const LivenessView view = View();
  const ShardHealth h = JudgeShard(*entry, GoalOf(attrs->replication_goal), view);
  const size_t wanted = h.CopiesToMake();
  if (wanted == 0) return false;
  const ClusterMap& map = view.map();

  // The object as the nodes hold it: after a truncate the table's length may
  // be shorter than the object, whose checksum is what the table records.
  std::vector<std::string> sources;
  for (const auto* group : {&h.counted, &h.draining}) {
    for (const std::string& id : *group) sources.push_back(Endpoint(map, id));
  }
  std::optional<CopyShardFromRequest> request = CopyRequestFor(key, *entry, sources);
  if (!request) {
    spdlog::warn("repair: no readable copy of {} answers; will retry", key.ToString());
    return false;
  }

  // Targets: up nodes with room that hold no copy and no copy awaiting
  // deletion (the garbage collector could delete a new copy there).
  const std::vector<std::string> pending_delete = db_->store().GarbageHolders(key);
  std::vector<PlacementCandidate> candidates;
  for (const NodeRecord& n : map.nodes) {
    if (Contains(entry->replicas, n.id) || Contains(pending_delete, n.id)) continue;
    candidates.push_back(PlacementCandidate{n.id, n.host, n.free(), n.state == NodeState::kUp});
  }
  std::vector<std::string> kept;  // replicas that stay listed
  for (const auto* group : {&h.counted, &h.draining, &h.absent}) {
    kept.insert(kept.end(), group->begin(), group->end());
  }
  std::vector<std::string> ranked =
      PlaceShard(key, candidates, kept.size() + wanted, request->length, kept);
  for (const std::string& id : RankNodes(key, candidates, request->length)) {
    if (!Contains(ranked, id)) ranked.push_back(id);  // fallbacks when a target fails
  }
  if (ranked.empty()) {
    spdlog::debug("repair: no node can take another copy of {}", key.ToString());
    return false;
  }

  std::vector<std::string> added;
  for (const std::string& target : ranked) {
    if (added.size() == wanted || Stopping()) break;
    if (!Throttle(request->length, options_.bytes_per_second)) break;
    auto copied = nodes_.CopyFrom(Endpoint(map, target), *request);
    if (!copied.ok()) {
      spdlog::warn("repair: copying {} to node {} failed: {}", key.ToString(), target,
                   copied.status().ToString());
      continue;
    }
    added.push_back(target);
    RecordCopy(request->length);
  }
  if (added.empty()) return false;

  std::vector<std::string> replicas = kept;
  replicas.insert(replicas.end(), added.begin(), added.end());
  Status applied = SetReplicas(key, replicas);
  if (!applied.ok()) {
    // Most likely the file was rewritten meanwhile; the copies are orphans.
    spdlog::info("repair: {} changed while copying ({}); removing the new copies", key.ToString(),
                 applied.ToString());
    for (const std::string& id : added) (void)nodes_.Delete(Endpoint(map, id), key);
    return false;
  }
  spdlog::info("repair: {} now on {} node(s) (+{}, -{} lost)", key.ToString(), replicas.size(),
               added.size(), h.lost.size());
  return true;
}

std::optional<CopyShardFromRequest> ReplicaRepair::CopyRequestFor(
    const ShardKey& key, const ShardEntry& entry, const std::vector<std::string>& sources) {
  for (const std::string& ep : sources) {
    auto st = nodes_.Stat(ep, key);
    if (st.ok() && st->checksum == entry.checksum) {
      CopyShardFromRequest request;
      request.key = key;
      request.length = st->length;
      request.checksum = st->checksum;
      request.sources = sources;
      request.sync = true;
      return request;
    }
    if (st.ok()) {
      spdlog::warn("repair: {} on {} has checksum {:x}, the table says {:x}", key.ToString(), ep,
                   st->checksum, entry.checksum);
    }
  }
  return std::nullopt;
}

Status ReplicaRepair::SetReplicas(const ShardKey& key, std::vector<std::string> replicas) {
  SetShardReplicasOp op;
  op.ino = key.inode;
  op.index = key.index;
  op.generation = key.generation;
  op.replicas = std::move(replicas);
  return db_->Mutate(std::move(op)).status();
}

uint64_t ReplicaRepair::RebalanceRate() const {
  if (rebalance_now_) return options_.bytes_per_second;
  if (options_.rebalance_bytes_per_second > 0) return options_.rebalance_bytes_per_second;
  return options_.bytes_per_second / 4;
}

std::vector<ReplicaRepair::NodeFill> ReplicaRepair::Fills(const LivenessView& view) const {
  std::map<std::string, NodeFill> by_id;
  for (const NodeRecord& n : view.map().nodes) {
    if (n.state == NodeState::kUp && n.capacity > 0) by_id[n.id].node = &n;
  }
  db_->store().ForEachShard([&](uint64_t, uint32_t, const ShardEntry& entry) {
    for (const std::string& id : entry.replicas) {
      auto it = by_id.find(id);
      if (it != by_id.end()) it->second.listed_bytes += entry.length;
    }
  });
  std::vector<NodeFill> out;
  for (auto& [id, f] : by_id) out.push_back(f);
  std::sort(out.begin(), out.end(),
            [](const NodeFill& a, const NodeFill& b) { return a.fill() > b.fill(); });
  return out;
}

size_t ReplicaRepair::Rebalance(const LivenessView& view) {
  std::vector<NodeFill> fills = Fills(view);
  const double threshold = options_.rebalance_threshold_percent / 100.0;
  if (fills.size() < 2 || fills.front().fill() - fills.back().fill() <= threshold) {
    if (rebalance_now_.exchange(false)) spdlog::info("rebalance: disk use is even");
    return 0;
  }
  const NodeRecord& from = *fills.front().node;
  const NodeRecord& to = *fills.back().node;
  uint64_t listed = 0, capacity = 0;
  for (const NodeFill& f : fills) {
    listed += f.listed_bytes;
    capacity += f.node->capacity;
  }
  const double mean = static_cast<double>(listed) / capacity;
  // Enough to bring either end to the mean, and no more than one pass's share.
  constexpr uint64_t kPassBudget = 64u << 20;
  const uint64_t want = std::min<uint64_t>(
      {kPassBudget, static_cast<uint64_t>((fills.front().fill() - mean) * from.capacity),
       static_cast<uint64_t>((mean - fills.back().fill()) * to.capacity)});

  // Replicas on `from` that could live on `to` without losing machine spread.
  std::vector<ShardKey> movable;
  uint64_t planned = 0;
  const ClusterMap& map = view.map();
  auto host_of = [&](const std::string& id) {
    const NodeRecord* n = map.Find(id);
    return n == nullptr ? id : n->host;
  };
  db_->store().ForEachShard([&](uint64_t ino, uint32_t, const ShardEntry& entry) {
    if (planned >= want || !Contains(entry.replicas, from.id) || Contains(entry.replicas, to.id)) {
      return;
    }
    std::set<std::string> before, after;
    for (const std::string& id : entry.replicas) {
      before.insert(host_of(id));
      after.insert(id == from.id ? to.host : host_of(id));
    }
    if (after.size() < before.size()) return;
    movable.push_back(ShardKey{ino, entry.index, entry.generation});
    planned += entry.length;
  });

  size_t moved = 0;
  for (const ShardKey& key : movable) {
    if (Stopping()) break;
    std::optional<ShardEntry> entry = db_->store().GetShard(key.inode, key.index);
    if (!entry || entry->generation != key.generation || !Contains(entry->replicas, from.id) ||
        Contains(entry->replicas, to.id) || Contains(db_->store().GarbageHolders(key), to.id)) {
      continue;
    }
    std::vector<std::string> sources{from.endpoint};
    for (const std::string& id : entry->replicas) {
      if (id != from.id && view.StateOf(id) == ReplicaState::kCounted) {
        sources.push_back(Endpoint(map, id));
      }
    }
    std::optional<CopyShardFromRequest> request = CopyRequestFor(key, *entry, sources);
    if (!request) continue;
    if (!Throttle(request->length, RebalanceRate())) break;
    auto copied = nodes_.CopyFrom(to.endpoint, *request);
    if (!copied.ok()) {
      spdlog::warn("rebalance: copying {} to node {} failed: {}", key.ToString(), to.id,
                   copied.status().ToString());
      break;  // the target may be full or gone; the next pass looks again
    }
    std::vector<std::string> replicas = entry->replicas;
    std::replace(replicas.begin(), replicas.end(), from.id, to.id);
    if (!SetReplicas(key, std::move(replicas)).ok()) {
      (void)nodes_.Delete(to.endpoint, key);
      continue;
    }
    ++moved;
  }
  if (moved > 0) {
    spdlog::info(
        "rebalance: moved {} replica(s) from node {} ({:.0f}% full) to node {} "
        "({:.0f}% full)",
        moved, from.id, fills.front().fill() * 100, to.id, fills.back().fill() * 100);
  }
  return moved;
}

RpcReply ReplicaRepair::HandleRebalance(RpcRequest&) {
  std::vector<NodeFill> fills = Fills(View());
  RebalanceReply reply;
  reply.threshold_percent = options_.rebalance_threshold_percent;
  if (fills.size() >= 2) {
    reply.spread_percent =
        static_cast<uint64_t>((fills.front().fill() - fills.back().fill()) * 100 + 0.5);
  }
  rebalance_now_ = true;
  Wake();
  return RpcReply::Ok(MessageType::kRebalance, reply.Encode());
}

bool ReplicaRepair::Trim(const ShardKey& key) {
  std::optional<ShardEntry> entry = db_->store().GetShard(key.inode, key.index);
  if (!entry || entry->generation != key.generation) return false;
  auto attrs = db_->store().GetAttr(key.inode);
  if (!attrs.ok()) return false;
  const ShardHealth h = JudgeShard(*entry, GoalOf(attrs->replication_goal), View());
  std::vector<std::string> keep = h.TrimmedReplicas();
  if (keep.empty()) return false;
  const size_t kept = keep.size();
  if (!SetReplicas(key, std::move(keep)).ok()) return false;
  spdlog::info("repair: {} trimmed from {} to {} replica(s)", key.ToString(),
               entry->replicas.size(), kept);
  return true;
}

size_t ReplicaRepair::Sweep(const std::string& node_id) {
  const ClusterMap map = membership_->Map();
  const std::string endpoint = Endpoint(map, node_id);
  if (endpoint.empty()) return 0;
  const NamespaceStore& store = db_->store();
  size_t deleted = 0;
  std::optional<ShardKey> after;
  while (!Stopping()) {
    auto page = nodes_.Inventory(endpoint, after, kInventoryPage);
    if (!page.ok()) {
      spdlog::warn("repair: inventory of node {} failed: {}", node_id, page.status().ToString());
      // Forget that it was seen, so the next scan tries again.
      seen_alive_.erase(node_id);
      return deleted;
    }
    for (const InventoryEntry& item : page->entries) {
      const ShardKey& key = item.key;
      // Released generations are the garbage collector's, after its grace.
      if (!store.GarbageHolders(key).empty()) continue;
      bool stale = false;
      if (!store.GetAttr(key.inode).ok()) {
        stale = true;  // the file is gone; ids are never reused
      } else if (auto cur = store.GetShard(key.inode, key.index)) {
        // Older than current: no commit can bring it back. The current
        // generation on a node the table no longer lists: a replaced copy.
        // Newer than current (or no entry): a write may be in flight; keep.
        stale = key.generation < cur->generation ||
                (key.generation == cur->generation && !Contains(cur->replicas, node_id));
      }
      if (!stale) continue;
      Status st = nodes_.Delete(endpoint, key);
      if (st.ok() || st.code() == ErrorCode::kNotFound) ++deleted;
    }
    if (!page->more || page->entries.empty()) break;
    after = page->entries.back().key;
  }
  if (deleted > 0) {
    spdlog::info("repair: removed {} stale shard(s) from node {}", deleted, node_id);
  }
  return deleted;
}

bool ReplicaRepair::Throttle(uint64_t bytes, uint64_t rate) {
  if (rate == 0) return !Stopping();
  const auto now = Clock::now();
  // Copiers run in parallel: the budget is shared, under mu_.
  std::unique_lock<std::mutex> lock(mu_);
  // A budget that restarts after idle time, so a burst after a quiet hour is
  // still held to the rate.
  if (throttle_bytes_ == 0 || now - throttle_start_ > std::chrono::seconds(10)) {
    throttle_start_ = now;
    throttle_bytes_ = 0;
  }
  const auto due = throttle_start_ + std::chrono::microseconds(throttle_bytes_ * 1000000 / rate);
  throttle_bytes_ += bytes;
  cv_.wait_until(lock, due, [this] { return stopping_; });
  return !stopping_;
}

void ReplicaRepair::RecordCopy(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(progress_mu_);
  progress_.copied_copies++;
  progress_.copied_bytes += bytes;
  if (progress_.pending_copies > 0) progress_.pending_copies--;
  progress_.pending_bytes -= std::min(progress_.pending_bytes, bytes);
  rate_samples_.emplace_back(Clock::now(), progress_.copied_bytes);
}

FsckReply ReplicaRepair::Fsck(size_t max_files) const {
  const LivenessView view = View();
  const NamespaceStore& store = db_->store();
  FsckReply reply;
  struct Affected {
    uint64_t shards = 0;
    uint64_t fewest = UINT64_MAX;
    ShardHealth::Verdict worst = ShardHealth::Verdict::kHealthy;
  };
  std::map<uint64_t, Affected> affected;
  std::map<std::string, NodeReplicaCount> per_node;
  for (const NodeRecord& n : view.map().nodes) per_node[n.id] = NodeReplicaCount{n.id, 0, 0};
  store.ForEachShard([&](uint64_t ino, uint32_t goal, const ShardEntry& entry) {
    reply.shards++;
    for (const std::string& id : entry.replicas) {
      NodeReplicaCount& n = per_node[id];
      n.node_id = id;
      n.replicas++;
      n.bytes += entry.length;
    }
    ShardHealth h = JudgeShard(entry, GoalOf(goal), view);
    switch (h.verdict) {
      case ShardHealth::Verdict::kHealthy:
        reply.healthy++;
        return;
      case ShardHealth::Verdict::kUnderReplicated:
        reply.under_replicated++;
        break;
      case ShardHealth::Verdict::kUnavailable:
        reply.unavailable++;
        break;
      case ShardHealth::Verdict::kLost:
        reply.lost++;
        break;
    }
    Affected& a = affected[ino];
    a.shards++;
    a.fewest = std::min<uint64_t>(a.fewest, h.counted.size());
    a.worst = std::max(a.worst, h.verdict);
  });
  reply.files = store.Stats().regular_files;

  std::set<uint64_t> named;
  for (const auto& [ino, a] : affected) {
    if (a.worst == ShardHealth::Verdict::kLost) {
      reply.files_lost++;
    } else {
      reply.files_degraded++;
    }
    if (named.size() < max_files) named.insert(ino);
  }
  const std::map<uint64_t, std::string> paths = store.PathsOf(named);
  for (uint64_t ino : named) {
    const Affected& a = affected[ino];
    FsckFile f;
    f.ino = ino;
    auto p = paths.find(ino);
    f.path = p == paths.end() ? std::string() : p->second;
    f.state = a.worst == ShardHealth::Verdict::kLost          ? "lost"
              : a.worst == ShardHealth::Verdict::kUnavailable ? "unavailable"
                                                              : "degraded";
    f.shards = a.shards;
    f.fewest = a.fewest;
    reply.affected.push_back(std::move(f));
  }
  for (const auto& [id, count] : per_node) reply.nodes.push_back(count);

  std::lock_guard<std::mutex> lock(progress_mu_);
  reply.repair = progress_;
  const auto now = Clock::now();
  auto& samples = rate_samples_;
  while (!samples.empty() && now - samples.front().first > kRateWindow) samples.pop_front();
  if (samples.size() >= 2) {
    const double secs =
        std::chrono::duration<double>(samples.back().first - samples.front().first).count();
    if (secs > 0) {
      reply.repair.bytes_per_second =
          static_cast<uint64_t>((samples.back().second - samples.front().second) / secs);
    }
  }
  const uint64_t rate =
      reply.repair.bytes_per_second > 0 ? reply.repair.bytes_per_second : options_.bytes_per_second;
  if (reply.repair.pending_bytes > 0 && rate > 0) {
    reply.repair.eta_seconds = (reply.repair.pending_bytes + rate - 1) / rate;
  }
  return reply;
}

RpcReply ReplicaRepair::HandleFsck(RpcRequest& request) {
  auto req = FsckRequest::Decode(request.header.fields);
  if (!req.ok()) return RpcReply::Error(req.status());
  return RpcReply::Ok(MessageType::kFsck, Fsck(req->max_files).Encode());
}

RpcReply ReplicaRepair::HandleReportBadReplica(RpcRequest& request) {
  auto req = ReportBadReplicaRequest::Decode(request.header.fields);
  if (!req.ok()) return RpcReply::Error(req.status());
  const ShardKey& key = req->key;
  std::optional<ShardEntry> entry = db_->store().GetShard(key.inode, key.index);
  if (!entry || entry->generation != key.generation || !Contains(entry->replicas, req->node_id)) {
    // Not a listed replica (any more): nothing to repair.
    return RpcReply::Ok(MessageType::kReportBadReplica);
  }
  const LivenessView view = View();
  std::vector<std::string> others;
  size_t readable_others = 0;
  for (const std::string& id : entry->replicas) {
    if (id == req->node_id) continue;
    others.push_back(id);
    ReplicaState s = view.StateOf(id);
    if (s == ReplicaState::kCounted || s == ReplicaState::kDraining) ++readable_others;
  }
  if (readable_others == 0) {
    spdlog::error("repair: {} on node {} is bad ({}) and no other copy is readable; keeping it",
                  key.ToString(), req->node_id, req->reason);
    return RpcReply::Ok(MessageType::kReportBadReplica);
  }
  if (Status st = SetReplicas(key, std::move(others)); !st.ok()) return RpcReply::Error(st);
  spdlog::warn("repair: dropped bad replica of {} on node {} ({})", key.ToString(), req->node_id,
               req->reason);
  Wake();
  return RpcReply::Ok(MessageType::kReportBadReplica);
}

}  // namespace shardfs
