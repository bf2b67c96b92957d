// NamespaceClient: a mount's (or the CLI's) calls to the registry's namespace.
//
// One typed method per namespace message. Every call has a deadline; reads
// are retried while the registry is unreachable, up to `read_budget`, so a
// registry restart is ridden out; mutations are retried only when they were
// never sent (a lost reply cannot tell whether the change happened).
//
// Files opened through the client are held under its session (a random id,
// protocol/session_messages.h): while any is open, a thread of the client
// renews the session every third of the registry's lease, listing every
// file it holds open, so the registry releases them only when this client
// has gone silent (killed, or cut off for a whole lease), and mends its
// record after a lost reply or a restart.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "protocol/namespace_messages.h"
#include "protocol/registry_messages.h"
#include "src/rpc_channel.h"
#include "src/shard_key.h"
#include "src/status.h"

namespace shardfs {

// Thread-safe; owned by the mount's main object and shared by FUSE threads.
// Owns the thread that renews its session, joined by the destructor.
class NamespaceClient {
 public:
  struct Options {
    std::chrono::milliseconds attempt_timeout{4000};
    // Total time a call may spend before it fails. One FUSE operation may
    // make several calls; once one has run out of time the registry counts
    // as unreachable and later calls get only `unreachable_budget` until one
    // succeeds, so a whole operation stays within the mount's 15 s bound.
    std::chrono::milliseconds budget{10000};
    std::chrono::milliseconds unreachable_budget{1500};
    // ReportBadReplica: a hint for repair, not worth holding up a read for.
    std::chrono::milliseconds report_budget{1000};
    // How often the session is renewed until the registry names its lease
    // (then a third of it).
    std::chrono::milliseconds renew_interval{1000};
  };

  NamespaceClient(zmq::context_t& context, std::string registry_endpoint, Options options);
  NamespaceClient(zmq::context_t& context, std::string registry_endpoint)
      : NamespaceClient(context, std::move(registry_endpoint), Options()) {}
  ~NamespaceClient();
  NamespaceClient(const NamespaceClient&) = delete;
  NamespaceClient& operator=(const NamespaceClient&) = delete;

  const std::string& endpoint() const { return channel_.endpoint(); }

  // Called (on the calling thread) with the directories a mutation changed,
  // as the registry reports them after it (EncodeChangedDirs). Set before
  // the client is shared between threads.
  using ChangedDirsListener = std::function<void(const std::vector<InodeAttrs>&)>;
  void set_changed_dirs_listener(ChangedDirsListener listener) {
    changed_dirs_listener_ = std::move(listener);
  }

  Result<InodeAttrs> Lookup(uint64_t parent, const std::string& name);
  Result<InodeAttrs> GetAttr(uint64_t ino);
  Result<InodeAttrs> SetAttr(const SetAttrRequest& request);
  Result<InodeAttrs> Mknod(const MknodRequest& request);
  // Mknod of a regular file that also opens it and places its first shard.
  Result<CreateReply> CreateAndOpen(MknodRequest request);
  Result<InodeAttrs> Mkdir(const MknodRequest& request);
  Result<InodeAttrs> Symlink(const SymlinkRequest& request);
  Result<InodeAttrs> Link(uint64_t ino, uint64_t new_parent, const std::string& new_name);
  Status Unlink(uint64_t parent, const std::string& name);
  Status Rmdir(uint64_t parent, const std::string& name);
  Status Rename(const RenameRequest& request);
  Result<std::string> Readlink(uint64_t ino);
  Result<ReadDirReply> ReadDir(const ReadDirRequest& request);
  Result<StatFsReply> StatFs();
  Status SetXattr(uint64_t ino, const std::string& name, const std::string& value, uint32_t flags);
  Result<std::string> GetXattr(uint64_t ino, const std::string& name);
  Result<std::vector<std::string>> ListXattr(uint64_t ino);
  Status RemoveXattr(uint64_t ino, const std::string& name);
  // Open/Release keep an unlinked file's data alive while it is open here.
  Result<InodeAttrs> Open(uint64_t ino);
  Status Release(uint64_t ino);
  // Renews the session now, listing the files open here; nothing to do
  // while none is. The client's thread calls it on its own.
  Status RenewSession();
  uint64_t session() const { return session_; }
  Result<AllocateShardsReply> AllocateShards(const AllocateShardsRequest& request);
  Result<InodeAttrs> CommitShards(const CommitShardsRequest& request);
  Result<ShardTableReply> GetShardTable(uint64_t ino, uint32_t first, uint32_t count);
  // The first page of the table and Open() in one round trip.
  Result<ShardTableReply> OpenWithTable(uint64_t ino, uint32_t count);
  Status SetReplicas(const SetReplicasRequest& request);
  // Tells the registry that node `node_id`'s replica of `key` failed its
  // checksum, so it is dropped and the shard repaired. Within
  // Options::report_budget; a failure here only deserves a log line.
  Status ReportBadReplica(const std::string& node_id, const ShardKey& key, std::string reason);

 private:
  Result<RpcResponse> Read(MessageType type, const FieldWriter& fields);
  Result<RpcResponse> Mutate(MessageType type, const FieldWriter& fields);
  Result<InodeAttrs> AttrsOf(Result<RpcResponse> response);
  // Sends until success, a non-transient error, or the budget is spent.
  // `may_resend` says which errors prove the request was not applied.
  Result<RpcResponse> CallWithBudget(MessageType type, const FieldWriter& fields,
                                     bool (*may_resend)(const Status&));
  // The same with a budget of the caller's. Only `track_reachability` calls
  // mark the registry unreachable when the budget runs out: a short budget
  // spent says little about the registry.
  Result<RpcResponse> CallWithin(MessageType type, const FieldWriter& fields,
                                 bool (*may_resend)(const Status&),
                                 std::chrono::milliseconds budget, bool track_reachability);

  void RenewLoop();
  // Counts an open the registry accepted, for the session's renewals.
  // Called with session_mu_ held shared.
  void NoteOpened(uint64_t ino);

  RpcChannel channel_;
  const Options options_;
  ChangedDirsListener changed_dirs_listener_;
  std::atomic<bool> unreachable_{false};

  const uint64_t session_;
  // Shared by Open and Release around their calls, exclusive for a
  // renewal: the list a renewal sends is then exactly what the registry
  // has been told, with no open or release crossing it.
  std::shared_mutex session_mu_;
  std::mutex opens_mu_;
  std::map<uint64_t, uint32_t> opens_;  // guarded by opens_mu_; ino -> times open
  std::atomic<int64_t> renew_every_ms_;
  std::mutex renew_mu_;
  std::condition_variable renew_cv_;  // with renew_mu_
  bool stopping_ = false;             // guarded by renew_mu_
  bool renew_failing_ = false;        // renewer thread only
  std::thread renewer_;               // last: started once the rest exists
};

}  // namespace shardfs
