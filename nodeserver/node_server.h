// NodeServer: the request side of `shardfs-node`.
//
// Serves the node protocol (protocol/node_messages.h) from a ShardStore over
// an RpcServer: decoding and validation on the socket thread, disk work on
// the RpcServer's worker pool. It holds no state of its own beyond the store,
// the node's id and a NodeClient for repair copies (CopyShardFrom, which
// fetches a shard from peer nodes), so every request can run on any worker.
#pragma once

#include <atomic>
#include <memory>
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
  };

  static Result<std::unique_ptr<NodeServer>> Start(zmq::context_t& context, const Options& options);
  ~NodeServer();

  void Stop();
  const std::string& node_id() const { return node_id_; }
  const std::string& endpoint() const { return rpc_->endpoint(); }
  ShardStore& store() { return *store_; }

 private:
  NodeServer() = default;
  RpcReply Handle(RpcRequest& request);
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
  std::unique_ptr<RpcServer> rpc_;
};

}  // namespace shardfs
