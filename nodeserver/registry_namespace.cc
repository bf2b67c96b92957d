#include "nodeserver/registry_namespace.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <set>

#include "protocol/namespace_messages.h"
#include "src/placement.h"

namespace shardfs {
namespace {

constexpr uint64_t kGenerationBlock = 4096;

template <typename T>
Result<T> Decode(const RpcRequest& request) {
  return T::Decode(request.header.fields);
}

RpcReply AttrsReply(MessageType type, const InodeAttrs& attrs) {
  return RpcReply::Ok(type, AttrsFields(attrs));
}

// The directories whose entries `op` changes (see EncodeChangedDirs).
std::vector<uint64_t> DirsChangedBy(const NamespaceOp& op) {
  return std::visit(
      [](const auto& o) -> std::vector<uint64_t> {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, MknodOp> || std::is_same_v<T, MkdirOp> ||
                      std::is_same_v<T, SymlinkOp> || std::is_same_v<T, UnlinkOp> ||
                      std::is_same_v<T, RmdirOp> || std::is_same_v<T, LinkOp>) {
          return {o.parent};
        } else if constexpr (std::is_same_v<T, RenameOp>) {
          if (o.parent == o.new_parent) return {o.parent};
          return {o.parent, o.new_parent};
        } else {
          return {};
        }
      },
      op);
}

}  // namespace

int64_t RealtimeNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

RegistryNamespace::RegistryNamespace(zmq::context_t& context, NamespaceDb* db,
                                     Membership* membership, Options options)
    : db_(db),
      membership_(membership),
      options_(options),
      nodes_(context, NodeClient::Options{std::chrono::milliseconds(2000), 1,
                                          std::chrono::milliseconds(50)}),
      sessions_(options.session_lease) {}

RegistryNamespace::~RegistryNamespace() {
  Stop();
}

void RegistryNamespace::Start() {
  gc_thread_ = std::thread([this] { GarbageLoop(); });
}

void RegistryNamespace::Stop() {
  {
    std::lock_guard<std::mutex> lock(gc_mu_);
    stopping_ = true;
  }
  gc_cv_.notify_all();
  if (gc_thread_.joinable()) gc_thread_.join();
}

RpcReply RegistryNamespace::Mutation(MessageType type, NamespaceOp op) {
  std::vector<uint64_t> dirs = DirsChangedBy(op);
  auto applied = db_->Mutate(std::move(op));
  if (!applied.ok()) return RpcReply::Error(applied.status());
  return MutationReply(type, *applied, dirs);
}

RpcReply RegistryNamespace::MutationReply(MessageType type, const ApplyResult& applied,
                                          const std::vector<uint64_t>& dirs) {
  FieldWriter fields = applied.attrs ? AttrsFields(*applied.attrs) : FieldWriter();
  std::vector<InodeAttrs> changed;
  for (uint64_t dir : dirs) {
    // Read after the change, so at least as new as it; a directory removed
    // meanwhile is simply left out.
    auto attrs = db_->store().GetAttr(dir);
    if (attrs.ok() && attrs->type == FileType::kDirectory) changed.push_back(*attrs);
  }
  if (!changed.empty()) EncodeChangedDirs(fields, changed);
  return RpcReply::Ok(type, std::move(fields));
}

RpcReply RegistryNamespace::Handle(RpcRequest& request) {
  const MessageType type = request.type();
  const NamespaceStore& store = db_->store();
  switch (type) {
    case MessageType::kLookup: {
      auto r = Decode<NameRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto attrs = store.Lookup(r->parent, r->name);
      if (!attrs.ok()) return RpcReply::Error(attrs.status());
      return AttrsReply(type, *attrs);
    }
    case MessageType::kGetAttr: {
      auto r = Decode<InoRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto attrs = store.GetAttr(r->ino);
      if (!attrs.ok()) return RpcReply::Error(attrs.status());
      return AttrsReply(type, *attrs);
    }
    case MessageType::kSetAttr: {
      auto r = Decode<SetAttrRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      const int64_t now = RealtimeNs();
      SetattrOp op;
      op.ino = r->ino;
      op.mask = r->mask;
      op.mode = r->mode;
      op.uid = r->uid;
      op.gid = r->gid;
      op.size = r->size;
      op.atime_ns = r->atime_now ? now : r->atime_ns;
      op.mtime_ns = r->mtime_now ? now : r->mtime_ns;
      op.time_ns = now;
      return Mutation(type, op);
    }
    case MessageType::kMknod:
    case MessageType::kMkdir: {
      auto r = Decode<MknodRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      if (type == MessageType::kMkdir || r->type == FileType::kDirectory) {
        MkdirOp op;
        op.parent = r->parent;
        op.name = r->name;
        op.mode = r->mode;
        op.uid = r->caller.uid;
        op.gid = r->caller.gid;
        return Mutation(type, op);
      }
      MknodOp op;
      op.parent = r->parent;
      op.name = r->name;
      op.type = r->type;
      op.mode = r->mode;
      op.uid = r->caller.uid;
      op.gid = r->caller.gid;
      op.rdev = r->rdev;
      op.shard_size = r->type == FileType::kRegular
                          ? (r->shard_size ? r->shard_size : options_.default_shard_size)
                          : 0;
      op.replication_goal = r->replication_goal;
      if (!r->open) return Mutation(type, op);
      // Create-and-open: the open ref is taken before the reply, so the
      // file's data outlives an unlink racing with the creator's first write.
      auto applied = db_->Mutate(op);
      if (!applied.ok()) return RpcReply::Error(applied.status());
      if (!applied->attrs) {
        return RpcReply::Error(Status::Error(ErrorCode::kInternal, "mknod returned no inode"));
      }
      Status opened = OpenFor(applied->attrs->ino, r->session);
      if (!opened.ok()) return RpcReply::Error(opened);
      RpcReply reply = MutationReply(type, *applied, {op.parent});
      if (op.type == FileType::kRegular) {
        // Its first shard is placed now: a small file's first store then
        // needs no round trip of its own. Without nodes, the store asks.
        auto placed = PlaceShards(*applied->attrs, {0});
        if (placed.ok()) EncodeFirstShard(reply.fields, *placed);
      }
      return reply;
    }
    case MessageType::kSymlink: {
      auto r = Decode<SymlinkRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      SymlinkOp op;
      op.parent = r->parent;
      op.name = r->name;
      op.target = r->target;
      op.uid = r->caller.uid;
      op.gid = r->caller.gid;
      return Mutation(type, op);
    }
    case MessageType::kLink: {
      auto r = Decode<LinkRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return Mutation(type, LinkOp{r->ino, r->new_parent, r->new_name, 0});
    }
    case MessageType::kUnlink: {
      auto r = Decode<NameRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      UnlinkOp op;
      op.parent = r->parent;
      op.name = r->name;
      return Mutation(type, op);
    }
    case MessageType::kRmdir: {
      auto r = Decode<NameRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return Mutation(type, RmdirOp{r->parent, r->name, 0});
    }
    case MessageType::kRename: {
      auto r = Decode<RenameRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      RenameOp op;
      op.parent = r->parent;
      op.name = r->name;
      op.new_parent = r->new_parent;
      op.new_name = r->new_name;
      op.flags = r->flags;
      return Mutation(type, op);
    }
    case MessageType::kReadlink: {
      auto r = Decode<InoRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto target = store.ReadLink(r->ino);
      if (!target.ok()) return RpcReply::Error(target.status());
      return RpcReply::Ok(type, ReadlinkReply{*target}.Encode());
    }
    case MessageType::kReadDir: {
      auto r = Decode<ReadDirRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto page = store.ReadDir(r->ino, r->after, r->max, r->plus);
      if (!page.ok()) return RpcReply::Error(page.status());
      ReadDirReply reply;
      reply.entries = std::move(page->entries);
      reply.more = page->more;
      return RpcReply::Ok(type, reply.Encode());
    }
    case MessageType::kStatFs:
      return StatFs();
    case MessageType::kSetXattr: {
      auto r = Decode<XattrRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      SetxattrOp op;
      op.ino = r->ino;
      op.name = r->name;
      op.value = r->value;
      op.flags = r->flags;
      return Mutation(type, op);
    }
    case MessageType::kGetXattr: {
      auto r = Decode<XattrRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto value = store.GetXattr(r->ino, r->name);
      if (!value.ok()) return RpcReply::Error(value.status());
      return RpcReply::Ok(type, XattrValueReply{*value}.Encode());
    }
    case MessageType::kListXattr: {
      auto r = Decode<InoRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto names = store.ListXattr(r->ino);
      if (!names.ok()) return RpcReply::Error(names.status());
      return RpcReply::Ok(type, XattrListReply{*names}.Encode());
    }
    case MessageType::kRemoveXattr: {
      auto r = Decode<XattrRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      auto applied = db_->Mutate(RemovexattrOp{r->ino, r->name, 0});
      if (!applied.ok()) return RpcReply::Error(applied.status());
      return RpcReply::Ok(type);
    }
    case MessageType::kOpen: {
      auto r = Decode<OpenRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return Open(*r);
    }
    case MessageType::kRelease: {
      auto r = Decode<OpenRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return Release(*r);
    }
    case MessageType::kRenewSession: {
      auto r = Decode<RenewSessionRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return RenewSession(*r);
    }
    case MessageType::kAllocateShards: {
      auto r = Decode<AllocateShardsRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return AllocateShards(*r);
    }
    case MessageType::kCommitShards: {
      auto r = Decode<CommitShardsRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      CommitShardsOp op;
      op.ino = r->ino;
      op.shards = std::move(r->shards);
      op.size = r->size;
      return Mutation(type, op);
    }
    case MessageType::kGetShardTable: {
      auto r = Decode<GetShardTableRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      if (r->open) {
        Status st = OpenFor(r->ino, r->session);
        if (!st.ok()) return RpcReply::Error(st);
      }
      return GetShardTable(*r);
    }
    case MessageType::kSetReplicas: {
      auto r = Decode<SetReplicasRequest>(request);
      if (!r.ok()) return RpcReply::Error(r.status());
      return SetReplicas(*r);
    }
    default:
      return RpcReply::Error(Status::Error(
          ErrorCode::kUnknownType,
          "message type " + std::to_string(request.header.type) + " is not a namespace request"));
  }
}

Result<uint64_t> RegistryNamespace::NextGeneration() {
  std::lock_guard<std::mutex> lock(generation_mu_);
  if (next_generation_ >= generation_limit_) {
    AllocateInodesOp op;
    op.count = kGenerationBlock;
    SHARDFS_ASSIGN_OR_RETURN(ApplyResult applied, db_->Mutate(op));
    next_generation_ = applied.first_ino;
    generation_limit_ = applied.first_ino + kGenerationBlock;
  }
  return next_generation_++;
}

std::vector<NodeAddress> RegistryNamespace::AddressesOf(const std::vector<std::string>& ids) {
  ClusterMap map = membership_->Map();
  std::vector<NodeAddress> out;
  std::set<std::string> seen;
  for (const auto& id : ids) {
    if (!seen.insert(id).second) continue;
    if (const NodeRecord* node = map.Find(id)) out.push_back({id, node->endpoint});
  }
  return out;
}

RpcReply RegistryNamespace::AllocateShards(const AllocateShardsRequest& request) {
  auto attrs = db_->store().GetAttr(request.ino);
  if (!attrs.ok()) return RpcReply::Error(attrs.status());
  auto placed = PlaceShards(*attrs, request.indexes);
  if (!placed.ok()) return RpcReply::Error(placed.status());
  return RpcReply::Ok(MessageType::kAllocateShards, placed->Encode());
}

Result<AllocateShardsReply> RegistryNamespace::PlaceShards(const InodeAttrs& file,
                                                           const std::vector<uint32_t>& indexes) {
  if (file.type != FileType::kRegular) {
    return Status::Error(ErrorCode::kInvalidArgument, "not a regular file");
  }
  const uint32_t goal = file.replication_goal ? file.replication_goal : options_.default_replicas;
  const uint32_t min_replicas = std::min<uint32_t>(2, goal);
  ClusterMap map = membership_->Map();
  std::vector<PlacementCandidate> candidates;
  for (const auto& node : map.nodes) {
    if (node.state != NodeState::kUp) continue;
    uint64_t free = node.capacity > node.used ? node.capacity - node.used : 0;
    candidates.push_back(PlacementCandidate{node.id, node.host, free, true});
  }
  AllocateShardsReply reply;
  reply.min_replicas = min_replicas;
  std::vector<std::string> named;
  for (uint32_t index : indexes) {
    SHARDFS_ASSIGN_OR_RETURN(uint64_t generation, NextGeneration());
    ShardPlacement p;
    p.index = index;
    p.generation = generation;
    p.replicas = PlaceShard(ShardKey{file.ino, index, generation}, candidates, goal,
                            options_.default_shard_size);
    if (p.replicas.size() < min_replicas) {
      return Status::Error(ErrorCode::kUnavailable, std::to_string(p.replicas.size()) +
                                                        " live nodes can take data, " +
                                                        std::to_string(min_replicas) + " needed");
    }
    named.insert(named.end(), p.replicas.begin(), p.replicas.end());
    reply.placements.push_back(std::move(p));
  }
  reply.nodes = AddressesOf(named);
  return reply;
}

RpcReply RegistryNamespace::GetShardTable(const GetShardTableRequest& request) {
  auto attrs = db_->store().GetAttr(request.ino);
  if (!attrs.ok()) return RpcReply::Error(attrs.status());
  auto shards = db_->store().GetShards(request.ino, request.first, request.count);
  if (!shards.ok()) return RpcReply::Error(shards.status());
  ShardTableReply reply;
  reply.attrs = *attrs;
  reply.shards = std::move(*shards);
  std::vector<std::string> named;
  for (const auto& e : reply.shards)
    named.insert(named.end(), e.replicas.begin(), e.replicas.end());
  reply.nodes = AddressesOf(named);
  return RpcReply::Ok(MessageType::kGetShardTable, reply.Encode());
}

RpcReply RegistryNamespace::StatFs() {
  ClusterMap map = membership_->Map();
  StatFsReply reply;
  for (const auto& node : map.nodes) {
    if (node.state == NodeState::kDown) continue;
    ++reply.live_nodes;
    reply.total_bytes += node.capacity;
    reply.free_bytes += node.capacity > node.used ? node.capacity - node.used : 0;
  }
  // Every byte is stored `replicas` times: show what a user can still write.
  const uint64_t r = std::max<uint32_t>(1, options_.default_replicas);
  reply.total_bytes /= r;
  reply.free_bytes /= r;
  reply.inodes = db_->store().Stats().inodes;
  return RpcReply::Ok(MessageType::kStatFs, reply.Encode());
}

RpcReply RegistryNamespace::SetReplicas(const SetReplicasRequest& request) {
  std::vector<uint64_t> pending{request.ino};
  while (!pending.empty()) {
    uint64_t ino = pending.back();
    pending.pop_back();
    auto applied = db_->Mutate(SetReplicationGoalOp{ino, request.goal, 0});
    if (!applied.ok()) return RpcReply::Error(applied.status());
    if (!request.recursive || !applied->attrs || applied->attrs->type != FileType::kDirectory) {
      continue;
    }
    std::string after;
    while (true) {
      auto page = db_->store().ReadDir(ino, after, 1000, false);
      if (!page.ok()) return RpcReply::Error(page.status());
      for (const auto& e : page->entries) {
        if (e.type == FileType::kRegular || e.type == FileType::kDirectory)
          pending.push_back(e.ino);
      }
      if (!page->more || page->entries.empty()) break;
      after = page->entries.back().name;
    }
  }
  return RpcReply::Ok(MessageType::kSetReplicas);
}

Status RegistryNamespace::OpenFor(uint64_t ino, uint64_t session) {
  // The store's reference first: a session that lapses in between does not
  // hold this open yet, and the record below starts it again.
  SHARDFS_RETURN_IF_ERROR(db_->OpenFile(ino));
  if (session != 0) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    sessions_.Opened(session, ino, OpenSessions::Clock::now());
  }
  return Status::Ok();
}

RpcReply RegistryNamespace::Open(const OpenRequest& request) {
  if (Status st = OpenFor(request.ino, request.session); !st.ok()) return RpcReply::Error(st);
  auto attrs = db_->store().GetAttr(request.ino);
  if (!attrs.ok()) return RpcReply::Error(attrs.status());
  return AttrsReply(MessageType::kOpen, *attrs);
}

RpcReply RegistryNamespace::Release(const OpenRequest& request) {
  if (request.session != 0) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    // Not held: the session lapsed and its opens were released already.
    if (!sessions_.Released(request.session, request.ino, OpenSessions::Clock::now())) {
      return RpcReply::Ok(MessageType::kRelease);
    }
  }
  auto closed = db_->CloseFile(request.ino);
  if (!closed.ok()) return RpcReply::Error(closed.status());
  return RpcReply::Ok(MessageType::kRelease);
}

RpcReply RegistryNamespace::RenewSession(const RenewSessionRequest& request) {
  RenewSessionReply reply;
  reply.lease_ms = static_cast<uint64_t>(options_.session_lease.count());
  std::vector<uint64_t> to_close;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    const auto now = OpenSessions::Clock::now();
    if (!request.full) {
      reply.known = sessions_.Renew(request.session, now);
    } else {
      OpenSessions::Opens target;
      for (size_t i = 0; i < request.inos.size(); ++i) {
        target[request.inos[i]] += static_cast<uint32_t>(request.counts[i]);
      }
      // What the client holds open is the truth: a lost open or release
      // reply, a lapsed lease or a registry restart is mended here.
      auto change = sessions_.Reconcile(request.session, target, now, &reply.known);
      for (const auto& [ino, delta] : change) {
        for (int64_t i = 0; i < delta; ++i) {
          if (!db_->OpenFile(ino).ok()) {
            // Gone (an orphan dropped meanwhile): the session cannot hold it.
            (void)sessions_.Released(request.session, ino, now);
          }
        }
        for (int64_t i = 0; i > delta; --i) to_close.push_back(ino);
      }
      if (!reply.known) {
        spdlog::info("session {:016x} renewed after it lapsed: {} file(s) open again",
                     request.session, target.size());
      }
    }
  }
  for (uint64_t ino : to_close) CloseRef(ino);
  return RpcReply::Ok(MessageType::kRenewSession, reply.Encode());
}

void RegistryNamespace::CloseRef(uint64_t ino) {
  auto closed = db_->CloseFile(ino);
  if (!closed.ok()) {
    spdlog::warn("releasing inode {}: {}", ino, closed.status().ToString());
  } else if (closed->has_value()) {
    spdlog::info("inode {}: last open released, orphan dropped", ino);
  }
}

size_t RegistryNamespace::ExpireSessions() {
  size_t lapsed = 0;
  std::vector<uint64_t> released;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    released = sessions_.Expire(OpenSessions::Clock::now(), &lapsed);
  }
  if (lapsed > 0) {
    spdlog::warn("{} client session(s) not renewed for {} ms: releasing their {} open(s)", lapsed,
                 options_.session_lease.count(), released.size());
  }
  // Each open was taken off its session under the lock, so only this
  // thread releases it.
  for (uint64_t ino : released) CloseRef(ino);
  return lapsed;
}

size_t RegistryNamespace::CollectGarbage() {
  const int64_t cutoff =
      RealtimeNs() -
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.garbage_grace).count();
  const ClusterMap map = membership_->Map();
  size_t forgotten = 0;
  std::optional<ShardKey> cursor;
  // A node that did not answer is not asked again in this pass: one timeout
  // per dead node, not one per shard it holds.
  std::set<std::string> unreachable;
  while (!Stopping()) {
    auto garbage = db_->store().ListGarbage(cutoff, 256, cursor);
    if (garbage.empty()) break;
    cursor = garbage.back().key;
    ForgetGarbageOp forget;
    for (const auto& entry : garbage) {
      // A copy that is (again) a listed replica of the current generation is
      // not garbage on that node, whatever an older entry says.
      std::optional<ShardEntry> current = db_->store().GetShard(entry.key.inode, entry.key.index);
      bool all_deleted = true;
      for (const auto& id : entry.replicas) {
        if (current && current->generation == entry.key.generation &&
            std::find(current->replicas.begin(), current->replicas.end(), id) !=
                current->replicas.end()) {
          continue;
        }
        const NodeRecord* node = map.Find(id);
        // A node that is down keeps its copy for now; when it returns, its
        // inventory is reconciled against the namespace (ReplicaRepair).
        if (node == nullptr || node->state == NodeState::kDown) {
          if (node != nullptr) all_deleted = false;
          continue;
        }
        if (unreachable.count(id) != 0 || Stopping()) {
          all_deleted = false;
          continue;
        }
        Status st = nodes_.Delete(node->endpoint, entry.key);
        if (!st.ok() && st.code() != ErrorCode::kNotFound) {
          all_deleted = false;
          if (st.code() == ErrorCode::kUnavailable || st.code() == ErrorCode::kTimeout) {
            unreachable.insert(id);
          }
        }
      }
      if (all_deleted) forget.keys.push_back(entry.key);
    }
    if (forget.keys.empty()) continue;
    const size_t n = forget.keys.size();
    auto applied = db_->Mutate(std::move(forget));
    if (!applied.ok()) {
      spdlog::warn("cannot forget deleted garbage: {}", applied.status().ToString());
      break;
    }
    forgotten += n;
  }
  return forgotten;
}

bool RegistryNamespace::Stopping() {
  std::lock_guard<std::mutex> lock(gc_mu_);
  return stopping_;
}

void RegistryNamespace::GarbageLoop() {
  std::unique_lock<std::mutex> lock(gc_mu_);
  while (!stopping_) {
    // Often enough that a lapsed session is found within half a lease.
    gc_cv_.wait_for(lock, std::min(options_.garbage_interval, options_.session_lease / 2));
    if (stopping_) break;
    lock.unlock();
    // Lapsed sessions first: their orphans' shards become garbage, collected
    // once their grace has passed.
    ExpireSessions();
    CollectGarbage();
    lock.lock();
  }
}

}  // namespace shardfs
