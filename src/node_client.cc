#include "src/node_client.h"

#include <thread>

namespace shardfs {

bool IsRetryable(const Status& status) {
  switch (status.code()) {
    case ErrorCode::kTimeout:
    case ErrorCode::kBusy:
    case ErrorCode::kUnavailable:
      return true;
    default:
      return false;
  }
}

NodeClient::NodeClient(zmq::context_t& context, Options options)
    : context_(context), options_(options) {}

RpcChannel& NodeClient::Channel(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = channels_[endpoint];
  if (!slot) slot = std::make_unique<RpcChannel>(context_, endpoint);
  return *slot;
}

Result<RpcResponse> NodeClient::CallWithRetry(const std::string& endpoint, MessageType type,
                                              const FieldWriter& fields, std::string_view payload,
                                              bool has_payload) {
  RpcChannel& channel = Channel(endpoint);
  Status last;
  for (int attempt = 0; attempt < std::max(1, options_.attempts); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(options_.retry_backoff * attempt);
    auto r = channel.Call(type, fields, options_.attempt_timeout, payload, has_payload);
    if (r.ok() || !IsRetryable(r.status())) return r;
    last = r.status();
  }
  return last;
}

Status NodeClient::Ping(const std::string& endpoint) {
  auto r = CallWithRetry(endpoint, MessageType::kNodePing, FieldWriter());
  return r.ok() ? Status::Ok() : r.status();
}

Result<NodeInfoReply> NodeClient::Info(const std::string& endpoint) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r,
                           CallWithRetry(endpoint, MessageType::kNodeInfo, FieldWriter()));
  return NodeInfoReply::Decode(r.header.fields);
}

Status NodeClient::Put(const std::string& endpoint, const ShardKey& key, std::string_view data,
                       bool sync, std::optional<uint64_t> checksum) {
  PutShardRequest req{key, sync, checksum};
  auto r = CallWithRetry(endpoint, MessageType::kPutShard, req.Encode(), data, true);
  return r.ok() ? Status::Ok() : r.status();
}

Result<PutShardReply> NodeClient::PutPatched(const std::string& endpoint,
                                             const PutPatchedShardRequest& request,
                                             std::string_view payload) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, CallWithRetry(endpoint, MessageType::kPutPatchedShard,
                                                        request.Encode(), payload, true));
  return PutShardReply::Decode(r.header.fields);
}

std::vector<Result<PutShardReply>> NodeClient::PutPatchedToAll(
    const std::vector<std::string>& endpoints, const PutPatchedShardRequest& request,
    std::string_view payload) {
  const FieldWriter fields = request.Encode();
  std::vector<RpcCall> calls;
  for (const auto& endpoint : endpoints) {
    calls.push_back({&Channel(endpoint), MessageType::kPutPatchedShard, &fields, payload, true});
  }
  auto results = RpcChannel::CallAll(calls, options_.attempt_timeout);
  std::vector<Result<PutShardReply>> out;
  for (auto& r : results) {
    if (r.ok()) {
      out.push_back(PutShardReply::Decode(r->header.fields));
    } else {
      out.push_back(r.status());
    }
  }
  return out;
}

namespace {

Result<ShardRead> ToShardRead(RpcResponse& r, size_t replica_index) {
  SHARDFS_ASSIGN_OR_RETURN(GetShardReply reply, GetShardReply::Decode(r.header.fields));
  ShardRead out;
  out.bytes = PayloadBytes(std::move(r.payload));
  out.shard_length = reply.shard_length;
  out.replica_index = replica_index;
  return out;
}

}  // namespace

Result<ShardRead> NodeClient::Get(const std::string& endpoint, const ShardKey& key, uint64_t offset,
                                  uint64_t length) {
  GetShardRequest req{key, offset, length};
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r,
                           CallWithRetry(endpoint, MessageType::kGetShard, req.Encode()));
  return ToShardRead(r, 0);
}

Status NodeClient::Delete(const std::string& endpoint, const ShardKey& key) {
  auto r = CallWithRetry(endpoint, MessageType::kDeleteShard, ShardKeyRequest{key}.Encode());
  return r.ok() ? Status::Ok() : r.status();
}

Result<ShardStatReply> NodeClient::Stat(const std::string& endpoint, const ShardKey& key) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, CallWithRetry(endpoint, MessageType::kStatShard,
                                                        ShardKeyRequest{key}.Encode()));
  return ShardStatReply::Decode(r.header.fields);
}

Result<ShardExtentsReply> NodeClient::Extents(const std::string& endpoint, const ShardKey& key) {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, CallWithRetry(endpoint, MessageType::kShardExtents,
                                                        ShardKeyRequest{key}.Encode()));
  return ShardExtentsReply::Decode(r.header.fields);
}

Result<InventoryReply> NodeClient::Inventory(const std::string& endpoint,
                                             std::optional<ShardKey> after, uint64_t max) {
  InventoryRequest req{after, max};
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r,
                           CallWithRetry(endpoint, MessageType::kInventory, req.Encode()));
  return InventoryReply::Decode(r.header.fields);
}

Result<PutShardReply> NodeClient::CopyFrom(const std::string& endpoint,
                                           const CopyShardFromRequest& request) {
  // Not retried here: a timed-out copy may still be running on the target,
  // and a second one would only compete with it for the same sources.
  SHARDFS_ASSIGN_OR_RETURN(
      RpcResponse r,
      Channel(endpoint).Call(MessageType::kCopyShardFrom, request.Encode(), options_.copy_timeout));
  return PutShardReply::Decode(r.header.fields);
}

std::vector<Status> NodeClient::SyncOnAll(
    const std::vector<std::pair<std::string, SyncShardsRequest>>& requests) {
  std::vector<FieldWriter> fields;
  fields.reserve(requests.size());
  for (const auto& [endpoint, request] : requests) fields.push_back(request.Encode());
  std::vector<RpcCall> calls;
  for (size_t i = 0; i < requests.size(); ++i) {
    calls.push_back({&Channel(requests[i].first), MessageType::kSyncShards, &fields[i], {}, false});
  }
  // Flushing many shards to disk can take a while: the copy deadline.
  auto results = RpcChannel::CallAll(calls, options_.copy_timeout);
  std::vector<Status> out;
  out.reserve(results.size());
  for (auto& r : results) out.push_back(r.ok() ? Status::Ok() : r.status());
  return out;
}

std::vector<Status> NodeClient::PutToAll(const std::vector<std::string>& endpoints,
                                         const ShardKey& key, std::string_view data, bool sync,
                                         uint64_t checksum) {
  const FieldWriter fields = PutShardRequest{key, sync, checksum}.Encode();
  std::vector<Status> out(endpoints.size());
  std::vector<size_t> pending(endpoints.size());
  for (size_t i = 0; i < endpoints.size(); ++i) pending[i] = i;
  for (int attempt = 0; attempt < std::max(1, options_.attempts) && !pending.empty(); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(options_.retry_backoff * attempt);
    std::vector<RpcCall> calls;
    for (size_t i : pending) {
      calls.push_back({&Channel(endpoints[i]), MessageType::kPutShard, &fields, data, true});
    }
    auto results = RpcChannel::CallAll(calls, options_.attempt_timeout);
    std::vector<size_t> again;
    for (size_t k = 0; k < pending.size(); ++k) {
      size_t i = pending[k];
      out[i] = results[k].ok() ? Status::Ok() : results[k].status();
      // A node that did not even connect is not asked again: the write goes
      // on with the replicas that work, or fails for want of them.
      if (!results[k].ok() && IsRetryable(results[k].status()) &&
          results[k].status().code() != ErrorCode::kUnavailable) {
        again.push_back(i);
      }
    }
    pending = std::move(again);
  }
  return out;
}

Result<ShardRead> NodeClient::GetFromAny(const std::vector<std::string>& endpoints,
                                         const ShardKey& key, uint64_t offset, uint64_t length,
                                         std::chrono::milliseconds hedge_after,
                                         std::vector<std::pair<size_t, Status>>* failures) {
  if (endpoints.empty()) return Status::Error(ErrorCode::kUnavailable, "shard has no replicas");
  const FieldWriter fields = GetShardRequest{key, offset, length}.Encode();
  std::vector<RpcCall> calls;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    RpcCall call{&Channel(endpoints[i]), MessageType::kGetShard, &fields, {}, false};
    call.start_after = hedge_after * static_cast<int>(i);
    calls.push_back(call);
  }
  // Every replica gets at least one full attempt's time after it starts.
  auto budget = options_.attempt_timeout + hedge_after * static_cast<int>(endpoints.size());
  auto results = RpcChannel::CallUntil(calls, 1, budget);
  Status last = Status::Error(ErrorCode::kUnavailable, "no replica answered");
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      auto read = ToShardRead(*results[i], i);
      if (read.ok()) return read;
      last = read.status();
    } else if (results[i].status().code() != ErrorCode::kUnavailable) {
      last = results[i].status();
      if (failures) failures->push_back({i, results[i].status()});
    }
  }
  return last;
}

}  // namespace shardfs
