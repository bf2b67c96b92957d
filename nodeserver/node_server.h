// NodeServer: the request side of `shardfs-node`.
//
// Serves the node protocol (protocol/node_messages.h) from a ShardStore over
// an RpcServer: decoding and validation on the socket thread, disk work on
// the RpcServer's worker pool. Small reads whose bytes are all in memory
// (dentry and page cache) are answered on the socket thread itself
// (ShardStore::TryReadRangeCached): every block is still verified, and
// anything that would wait for the disk goes to a worker as before. It holds no state of its own
// beyond the store, the node's id and a NodeClient for repair copies (CopyShardFrom, which fetches
// a shard from peer nodes), so every request can run on any worker.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "protocol/node_messages.h"
#include "src/node_client.h"
#include "src/rpc_server.h"
#include "src/shard_store.h"
#include "src/status.h"

namespace shardfs {

// Created and stopped by the main thread; its handler runs on RpcServer
// workers and only touches the (thread-safe) ShardStore and NodeClient.
class NodeServer {
 public:
  struct Options {
    std::string data_dir;
    std::string listen = "tcp://0.0.0.0:7410";
    uint64_t capacity_bytes = 0;  // 0: the size of the data dir's file system
    int workers = 8;
    // Gets whose touched blocks are at most this many bytes may be answered
    // on the socket thread when cached; 0: every get goes to a worker. Bounds
    // what one read costs the thread every other request waits for (about
    // 20 us per 64 KiB: copy and checksum).
    uint64_t inline_read_bytes = 256 << 10;
  };

  // How gets were served, for tests and benchmarks.
  struct ReadCounts {
    uint64_t inline_gets = 0;  // answered on the socket thread
    uint64_t worker_gets = 0;  // handed to a worker
  };

  static Result<std::unique_ptr<NodeServer>> Start(zmq::context_t& context, const Options& options);
  ~NodeServer();

  void Stop();
  const std::string& node_id() const { return node_id_; }
  const std::string& endpoint() const { return rpc_->endpoint(); }
  ShardStore& store() { return *store_; }
  ReadCounts read_counts() const { return {inline_gets_.load(), worker_gets_.load()}; }

 private:
  NodeServer() = default;
  RpcReply Handle(RpcRequest& request);
  // RpcServer::Options::try_inline: a kGetShard served from memory, or
  // nullopt for a worker. Runs on the socket thread; never blocks.
  std::optional<RpcReply> TryAnswerInline(RpcRequest& request);
  // CopyShardFrom: fetches the shard from the first source that gives bytes
  // of the right length and checksum and stores it. Runs on a worker and
  // returns within kCopyBudget (node_server.cc), inside the requester's
  // deadline (NodeClient::Options::copy_timeout).
  Result<PutShardReply> CopyShard(const CopyShardFromRequest& request);

  std::string node_id_;
  std::unique_ptr<ShardStore> store_;
  // Declared before rpc_, so it outlives the workers that use it.
  std::unique_ptr<NodeClient> peers_;
  // Set by Stop(): copies in progress stop trying further sources.
  std::atomic<bool> stopping_{false};
  uint64_t inline_read_bytes_ = 0;
  std::atomic<uint64_t> inline_gets_{0};
  std::atomic<uint64_t> worker_gets_{0};
  std::unique_ptr<RpcServer> rpc_;
};

}  // namespace shardfs
