#include "src/namespace_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <thread>

#include "protocol/session_messages.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t NewSessionId() {
  std::random_device random;
  const uint64_t id = (static_cast<uint64_t>(random()) << 32) | random();
  return id != 0 ? id : 1;  // 0 is no session
}

Status StatusOf(const Result<RpcResponse>& r) {
  return r.ok() ? Status::Ok() : r.status();
}

// No answer from the registry itself: not connected, no reply in time, or
// its queue was full.
bool IsTransient(const Status& status) {
  return IsNotConnected(status) || status.code() == ErrorCode::kTimeout ||
         status.code() == ErrorCode::kBusy;
}

}  // namespace

NamespaceClient::NamespaceClient(zmq::context_t& context, std::string registry_endpoint,
                                 Options options)
    : channel_(context, std::move(registry_endpoint)),
      options_(options),
      session_(NewSessionId()),
      renew_every_ms_(options.renew_interval.count()),
      renewer_([this] { RenewLoop(); }) {}

NamespaceClient::~NamespaceClient() {
  {
    std::lock_guard<std::mutex> lock(renew_mu_);
    stopping_ = true;
  }
  renew_cv_.notify_all();
  renewer_.join();
}

void NamespaceClient::RenewLoop() {
  std::unique_lock<std::mutex> lock(renew_mu_);
  while (!renew_cv_.wait_for(lock, std::chrono::milliseconds(renew_every_ms_.load()),
                             [&] { return stopping_; })) {
    lock.unlock();
    Status st = RenewSession();
    // Once per change, not once per try while the registry is away.
    if (!st.ok() && !renew_failing_) {
      spdlog::warn("cannot renew the session of this client's open files: {}", st.ToString());
    } else if (st.ok() && renew_failing_) {
      spdlog::info("session of this client's open files renewed again");
    }
    renew_failing_ = !st.ok();
    lock.lock();
  }
}

Status NamespaceClient::RenewSession() {
  std::unique_lock<std::shared_mutex> lock(session_mu_);
  RenewSessionRequest req;
  req.session = session_;
  {
    std::lock_guard<std::mutex> opens_lock(opens_mu_);
    // Nothing held: the registry may let the session lapse.
    if (opens_.empty()) return Status::Ok();
    req.full = opens_.size() <= kMaxSessionFiles;
    if (req.full) {
      for (const auto& [ino, count] : opens_) {
        req.inos.push_back(ino);
        req.counts.push_back(count);
      }
    }
  }
  // Opens wait for this call, so it gets little time; a renewal is
  // idempotent and may be sent again.
  const auto budget =
      std::min(std::chrono::milliseconds(renew_every_ms_.load()), std::chrono::milliseconds(2000));
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, CallWithin(
                                              MessageType::kRenewSession, req.Encode(),
                                              [](const Status&) { return true; }, budget,
                                              /*track_reachability=*/false));
  SHARDFS_ASSIGN_OR_RETURN(RenewSessionReply reply, RenewSessionReply::Decode(r.header.fields));
  renew_every_ms_ = std::clamp<int64_t>(static_cast<int64_t>(reply.lease_ms / 3), 100, 5000);
  if (!reply.known) {
    spdlog::warn(
        "the registry had lost this client's session (its lease lapsed, or the registry "
        "restarted): files open here are held again{}",
        req.full ? "" : " only if it still counted them");
  }
  return Status::Ok();
}

Result<RpcResponse> NamespaceClient::CallWithBudget(MessageType type, const FieldWriter& fields,
                                                    bool (*may_resend)(const Status&)) {
  return CallWithin(type, fields, may_resend,
                    unreachable_ ? options_.unreachable_budget : options_.budget,
                    /*track_reachability=*/true);
}

Result<RpcResponse> NamespaceClient::CallWithin(MessageType type, const FieldWriter& fields,
                                                bool (*may_resend)(const Status&),
                                                std::chrono::milliseconds budget,
                                                bool track_reachability) {
  const auto deadline = Clock::now() + budget;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto r = channel_.Call(type, fields, std::min(left, options_.attempt_timeout));
    // A reply, even an error one ("no live nodes"), means the registry is
    // there and has answered for good.
    if (r.ok() || !IsTransient(r.status())) {
      unreachable_ = false;
      return r;
    }
    if (!may_resend(r.status()) || Clock::now() + std::chrono::milliseconds(100) >= deadline) {
      if (track_reachability) unreachable_ = true;
      return Status::Error(r.status().code(), "registry " + channel_.endpoint() +
                                                  " unreachable: " + r.status().message());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<RpcResponse> NamespaceClient::Read(MessageType type, const FieldWriter& fields) {
  return CallWithBudget(type, fields, [](const Status&) { return true; });
}

Result<RpcResponse> NamespaceClient::Mutate(MessageType type, const FieldWriter& fields) {
  // kUnavailable: never sent, so never applied: safe to send again. A
  // timeout may have been applied, so a mutation is not repeated after one.
  auto r = CallWithBudget(type, fields, [](const Status& status) {
    return IsNotConnected(status) || status.code() == ErrorCode::kBusy;
  });
  if (r.ok() && changed_dirs_listener_) {
    // A malformed list only costs the listener its hint; the call worked.
    auto dirs = DecodeChangedDirs(r->header.fields);
    if (dirs.ok() && !dirs->empty()) changed_dirs_listener_(*dirs);
  }
  return r;
}

Result<InodeAttrs> NamespaceClient::AttrsOf(Result<RpcResponse> response) {
  if (!response.ok()) return response.status();
  return DecodeAttrs(response->header.fields);
}

Result<InodeAttrs> NamespaceClient::Lookup(uint64_t parent, const std::string& name) {
  return AttrsOf(Read(MessageType::kLookup, NameRequest{parent, name}.Encode()));
}

Result<InodeAttrs> NamespaceClient::GetAttr(uint64_t ino) {
  return AttrsOf(Read(MessageType::kGetAttr, InoRequest{ino}.Encode()));
}

Result<InodeAttrs> NamespaceClient::SetAttr(const SetAttrRequest& request) {
  return AttrsOf(Mutate(MessageType::kSetAttr, request.Encode()));
}

Result<InodeAttrs> NamespaceClient::Mknod(const MknodRequest& request) {
  return AttrsOf(Mutate(MessageType::kMknod, request.Encode()));
}

Result<CreateReply> NamespaceClient::CreateAndOpen(MknodRequest request) {
  std::shared_lock<std::shared_mutex> lock(session_mu_);
  request.open = true;
  request.session = session_;
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Mutate(MessageType::kMknod, request.Encode()));
  SHARDFS_ASSIGN_OR_RETURN(CreateReply created, CreateReply::Decode(r.header.fields));
  NoteOpened(created.attrs.ino);
  return created;
}

Result<InodeAttrs> NamespaceClient::Mkdir(const MknodRequest& request) {
  return AttrsOf(Mutate(MessageType::kMkdir, request.Encode()));
}

Result<InodeAttrs> NamespaceClient::Symlink(const SymlinkRequest& request) {
  return AttrsOf(Mutate(MessageType::kSymlink, request.Encode()));
}

Result<InodeAttrs> NamespaceClient::Link(uint64_t ino, uint64_t new_parent,
                                         const std::string& new_name) {
  return AttrsOf(Mutate(MessageType::kLink, LinkRequest{ino, new_parent, new_name}.Encode()));
}

Status NamespaceClient::Unlink(uint64_t parent, const std::string& name) {
  return StatusOf(Mutate(MessageType::kUnlink, NameRequest{parent, name}.Encode()));
}

Status NamespaceClient::Rmdir(uint64_t parent, const std::string& name) {
  return StatusOf(Mutate(MessageType::kRmdir, NameRequest{parent, name}.Encode()));
}

Status NamespaceClient::Rename(const RenameRequest& request) {
  return StatusOf(Mutate(MessageType::kRename, request.Encode()));
}

Result<std::string> NamespaceClient::Readlink(uint64_t ino) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Read(MessageType::kReadlink, InoRequest{ino}.Encode()));
  SHARDFS_ASSIGN_OR_RETURN(ReadlinkReply reply, ReadlinkReply::Decode(r.header.fields));
  return reply.target;
}

Result<ReadDirReply> NamespaceClient::ReadDir(const ReadDirRequest& request) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Read(MessageType::kReadDir, request.Encode()));
  return ReadDirReply::Decode(r.header.fields);
}

Result<StatFsReply> NamespaceClient::StatFs() {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Read(MessageType::kStatFs, FieldWriter()));
  return StatFsReply::Decode(r.header.fields);
}

Status NamespaceClient::SetXattr(uint64_t ino, const std::string& name, const std::string& value,
                                 uint32_t flags) {
  return StatusOf(Mutate(MessageType::kSetXattr, XattrRequest{ino, name, value, flags}.Encode()));
}

Result<std::string> NamespaceClient::GetXattr(uint64_t ino, const std::string& name) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r,
                           Read(MessageType::kGetXattr, XattrRequest{ino, name, "", 0}.Encode()));
  SHARDFS_ASSIGN_OR_RETURN(XattrValueReply reply, XattrValueReply::Decode(r.header.fields));
  return reply.value;
}

Result<std::vector<std::string>> NamespaceClient::ListXattr(uint64_t ino) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Read(MessageType::kListXattr, InoRequest{ino}.Encode()));
  SHARDFS_ASSIGN_OR_RETURN(XattrListReply reply, XattrListReply::Decode(r.header.fields));
  return reply.names;
}

Status NamespaceClient::RemoveXattr(uint64_t ino, const std::string& name) {
  return StatusOf(Mutate(MessageType::kRemoveXattr, XattrRequest{ino, name, "", 0}.Encode()));
}

Result<InodeAttrs> NamespaceClient::Open(uint64_t ino) {
  std::shared_lock<std::shared_mutex> lock(session_mu_);
  auto attrs = AttrsOf(Mutate(MessageType::kOpen, OpenRequest{ino, session_}.Encode()));
  if (attrs.ok()) NoteOpened(ino);
  return attrs;
}

void NamespaceClient::NoteOpened(uint64_t ino) {
  std::lock_guard<std::mutex> opens_lock(opens_mu_);
  opens_[ino]++;
}

Status NamespaceClient::Release(uint64_t ino) {
  std::shared_lock<std::shared_mutex> lock(session_mu_);
  Status st = StatusOf(Mutate(MessageType::kRelease, OpenRequest{ino, session_}.Encode()));
  // Closed here whatever the answer; a release the registry missed is
  // mended by the next renewal, or by the lease.
  std::lock_guard<std::mutex> opens_lock(opens_mu_);
  if (auto it = opens_.find(ino); it != opens_.end() && --it->second == 0) opens_.erase(it);
  return st;
}

Result<AllocateShardsReply> NamespaceClient::AllocateShards(const AllocateShardsRequest& request) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Mutate(MessageType::kAllocateShards, request.Encode()));
  return AllocateShardsReply::Decode(r.header.fields);
}

Result<InodeAttrs> NamespaceClient::CommitShards(const CommitShardsRequest& request) {
  return AttrsOf(Mutate(MessageType::kCommitShards, request.Encode()));
}

Result<ShardTableReply> NamespaceClient::GetShardTable(uint64_t ino, uint32_t first,
                                                       uint32_t count) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, Read(MessageType::kGetShardTable,
                                               GetShardTableRequest{ino, first, count}.Encode()));
  return ShardTableReply::Decode(r.header.fields);
}

Result<ShardTableReply> NamespaceClient::OpenWithTable(uint64_t ino, uint32_t count) {
  std::shared_lock<std::shared_mutex> lock(session_mu_);
  GetShardTableRequest request{ino, 0, count};
  request.open = true;
  request.session = session_;
  // A mutation: a resent open would count the file open twice.
  auto r = Mutate(MessageType::kGetShardTable, request.Encode());
  if (!r.ok()) return r.status();
  // Opened even if the reply turns out malformed: the caller releases it.
  NoteOpened(ino);
  return ShardTableReply::Decode(r->header.fields);
}

Status NamespaceClient::SetReplicas(const SetReplicasRequest& request) {
  return StatusOf(Mutate(MessageType::kSetReplicas, request.Encode()));
}

Status NamespaceClient::ReportBadReplica(const std::string& node_id, const ShardKey& key,
                                         std::string reason) {
  ReportBadReplicaRequest req{node_id, key, std::move(reason)};
  // Resent freely: reporting a replica twice does no harm.
  return StatusOf(CallWithin(
      MessageType::kReportBadReplica, req.Encode(), [](const Status&) { return true; },
      options_.report_budget, /*track_reachability=*/false));
}

}  // namespace shardfs
