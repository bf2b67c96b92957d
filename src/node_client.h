// NodeClient: how mounts, the registry and other nodes talk to node servers.
//
// Keeps one RpcChannel per node endpoint (connections are reused), puts a
// deadline on every request, retries the idempotent ones (all node requests
// are: a shard key names immutable bytes), and offers the two parallel shapes
// replication needs: the same shard to several nodes at once, and a hedged
// read that asks the next replica when one is slow or fails.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "protocol/node_messages.h"
#include "src/rpc_channel.h"
#include "src/status.h"

namespace shardfs {

// The bytes of a reply, left in the ZeroMQ message they were received in
// instead of being copied into a string (4 MiB per whole-shard get). Reads
// like a std::string_view; move-only.
class PayloadBytes {
 public:
  PayloadBytes() = default;
  explicit PayloadBytes(zmq::message_t message) : message_(std::move(message)) {}

  const char* data() const { return static_cast<const char*>(message_.data()); }
  size_t size() const { return message_.size(); }
  bool empty() const { return size() == 0; }
  std::string_view view() const { return {data(), size()}; }
  operator std::string_view() const { return view(); }

  friend bool operator==(const PayloadBytes& a, std::string_view b) { return a.view() == b; }
  friend std::ostream& operator<<(std::ostream& out, const PayloadBytes& bytes) {
    return out << bytes.size() << " bytes";
  }

 private:
  zmq::message_t message_;
};

// Bytes read from a shard, and which replica they came from.
struct ShardRead {
  PayloadBytes bytes;
  uint64_t shard_length = 0;
  size_t replica_index = 0;  // index into the endpoints given
};

// Thread-safe; typically one per process, owned by the main thread and shared.
class NodeClient {
 public:
  struct Options {
    std::chrono::milliseconds attempt_timeout{5000};
    int attempts = 2;  // tries per request on timeouts and busy nodes
    std::chrono::milliseconds retry_backoff{50};
    // Deadline of one CopyFrom: the target fetches a whole shard from its
    // peers (possibly several, one after the other), which takes longer than
    // any one request. The target gives up on its own before this.
    std::chrono::milliseconds copy_timeout{30000};
  };

  explicit NodeClient(zmq::context_t& context) : NodeClient(context, Options()) {}
  NodeClient(zmq::context_t& context, Options options);

  Status Ping(const std::string& endpoint);
  Result<NodeInfoReply> Info(const std::string& endpoint);
  Status Put(const std::string& endpoint, const ShardKey& key, std::string_view data, bool sync,
             std::optional<uint64_t> checksum);
  // `payload` is the patches' bytes concatenated, as in the request.
  // The reply names the new object's length and checksum.
  Result<PutShardReply> PutPatched(const std::string& endpoint,
                                   const PutPatchedShardRequest& request, std::string_view payload);
  // PutPatched to several nodes at once (each must hold the base).
  std::vector<Result<PutShardReply>> PutPatchedToAll(const std::vector<std::string>& endpoints,
                                                     const PutPatchedShardRequest& request,
                                                     std::string_view payload);
  Result<ShardRead> Get(const std::string& endpoint, const ShardKey& key, uint64_t offset,
                        uint64_t length);
  Status Delete(const std::string& endpoint, const ShardKey& key);
  Result<ShardStatReply> Stat(const std::string& endpoint, const ShardKey& key);
  // Where the shard holds data (ShardStore::DataExtents).
  Result<ShardExtentsReply> Extents(const std::string& endpoint, const ShardKey& key);
  Result<InventoryReply> Inventory(const std::string& endpoint, std::optional<ShardKey> after,
                                   uint64_t max);
  // Repair: asks the node at `endpoint` to fetch the shard from one of the
  // request's sources and store it. Sent once, with Options::copy_timeout as
  // its deadline; the caller (the registry's repair) decides about retries.
  Result<PutShardReply> CopyFrom(const std::string& endpoint, const CopyShardFromRequest& request);

  // fsync() of a file: each node makes its listed shards durable. All nodes
  // are asked at once; one Status per request, in order.
  std::vector<Status> SyncOnAll(
      const std::vector<std::pair<std::string, SyncShardsRequest>>& requests);

  // Puts the same bytes to every endpoint at once; one Status per endpoint.
  std::vector<Status> PutToAll(const std::vector<std::string>& endpoints, const ShardKey& key,
                               std::string_view data, bool sync, uint64_t checksum);

  // Reads from the first replica; when it has not answered within
  // `hedge_after`, or failed, the next one is asked too. The first good
  // answer wins. `failures` (optional) receives the replicas that answered
  // with an error, for repair reports.
  Result<ShardRead> GetFromAny(const std::vector<std::string>& endpoints, const ShardKey& key,
                               uint64_t offset, uint64_t length,
                               std::chrono::milliseconds hedge_after,
                               std::vector<std::pair<size_t, Status>>* failures = nullptr);

 private:
  RpcChannel& Channel(const std::string& endpoint);
  Result<RpcResponse> CallWithRetry(const std::string& endpoint, MessageType type,
                                    const FieldWriter& fields, std::string_view payload = {},
                                    bool has_payload = false);

  zmq::context_t& context_;
  const Options options_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<RpcChannel>> channels_;  // guarded by mu_
};

// Whether a failed request may succeed when simply tried again.
bool IsRetryable(const Status& status);

}  // namespace shardfs
