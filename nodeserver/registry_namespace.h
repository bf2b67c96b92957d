// RegistryNamespace: the registry's namespace service over the wire.
//
// Turns namespace requests (protocol/namespace_messages.h) into NamespaceDb
// reads and logged mutations, places new shard generations on live nodes,
// and deletes released generations from their nodes once a grace period has
// passed, so a reader still holding an old shard table is not cut off.
//
// Opens belong to client sessions (OpenSessions) under a lease: the
// collector's thread also releases the opens of sessions whose lease lapsed
// (a mount killed with -9), so orphans they held are dropped.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <zmq.hpp>

#include "nodeserver/membership.h"
#include "nodeserver/open_sessions.h"
#include "nodeserver/registry_server.h"
#include "protocol/namespace_messages.h"
#include "protocol/session_messages.h"
#include "src/namespace_db.h"
#include "src/node_client.h"

namespace shardfs {

// Handle() runs on RPC worker threads (thread-safe: NamespaceDb and
// Membership are). The garbage collector runs on its own thread, started by
// Start() and joined by Stop(), both called by main.
class RegistryNamespace : public NamespaceService {
 public:
  struct Options {
    uint32_t default_replicas = 3;
    uint32_t default_shard_size = 4u << 20;
    // Released shard generations are deleted from nodes after this long.
    std::chrono::milliseconds garbage_grace{30000};
    std::chrono::milliseconds garbage_interval{2000};
    // A client session not renewed for this long is released. Clients
    // renew every third of it.
    std::chrono::milliseconds session_lease{15000};
  };

  RegistryNamespace(zmq::context_t& context, NamespaceDb* db, Membership* membership,
                    Options options);
  ~RegistryNamespace() override;

  void Start();
  void Stop();

  RpcReply Handle(RpcRequest& request) override;

  // One pass of the garbage collector; returns how many generations it
  // finished deleting. Public for tests.
  size_t CollectGarbage();
  // Releases the opens of sessions whose lease lapsed; returns how many
  // sessions lapsed. Public for tests.
  size_t ExpireSessions();

 private:
  RpcReply Mutation(MessageType type, NamespaceOp op);
  // The reply to an applied mutation: its attributes, if any, and those of
  // `dirs` as they are now (EncodeChangedDirs).
  RpcReply MutationReply(MessageType type, const ApplyResult& applied,
                         const std::vector<uint64_t>& dirs);
  RpcReply AllocateShards(const AllocateShardsRequest& request);
  // New generations of `indexes` of `file`, placed on live nodes.
  Result<AllocateShardsReply> PlaceShards(const InodeAttrs& file,
                                          const std::vector<uint32_t>& indexes);
  RpcReply GetShardTable(const GetShardTableRequest& request);
  RpcReply StatFs();
  RpcReply SetReplicas(const SetReplicasRequest& request);
  RpcReply Open(const OpenRequest& request);
  // Opens `ino` in the store, held by `session` (0: by none).
  Status OpenFor(uint64_t ino, uint64_t session);
  RpcReply Release(const OpenRequest& request);
  RpcReply RenewSession(const RenewSessionRequest& request);
  // Drops one open reference (logging the drop of an orphan it ends).
  void CloseRef(uint64_t ino);
  Result<uint64_t> NextGeneration();
  std::vector<NodeAddress> AddressesOf(const std::vector<std::string>& ids);
  void GarbageLoop();
  bool Stopping();

  NamespaceDb* const db_;
  Membership* const membership_;
  const Options options_;
  NodeClient nodes_;

  // Generations come from the inode id counter, reserved in blocks so that
  // only one write in many waits for a log record of its own.
  std::mutex generation_mu_;
  uint64_t next_generation_ = 0;   // guarded by generation_mu_
  uint64_t generation_limit_ = 0;  // guarded by generation_mu_

  // Held while a session's record and the store's open references change
  // together, so they agree; never while waiting for the log.
  std::mutex sessions_mu_;
  OpenSessions sessions_;  // guarded by sessions_mu_

  std::mutex gc_mu_;
  std::condition_variable gc_cv_;
  bool stopping_ = false;  // guarded by gc_mu_
  std::thread gc_thread_;
};

// Nanoseconds since the epoch, the registry's clock for timestamps it sets.
int64_t RealtimeNs();

}  // namespace shardfs
