#include "nodeserver/node_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>

#include "src/block_checksum.h"
#include "src/node_id.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

// How long one CopyShardFrom may keep a worker: below the requester's
// deadline (NodeClient::Options::copy_timeout, 30 s), so the reply arrives
// while someone still waits for it.
constexpr std::chrono::milliseconds kCopyBudget{25000};
// One request to one source. A source is not asked once the attempt could
// end past kCopyBudget. An unreachable source costs about 1 s (the
// connection wait), a silent one this much.
constexpr std::chrono::milliseconds kPeerAttemptTimeout{5000};

std::span<const uint8_t> PayloadSpan(const RpcRequest& request) {
  return std::span<const uint8_t>(static_cast<const uint8_t*>(request.payload.data()),
                                  request.payload.size());
}

// The reply payload for a read. A window that is most of its buffer (a
// whole-shard get) is handed to ZeroMQ without a copy, and freed once sent.
// A small window of a large buffer (4 KiB of a 64 KiB block) is copied into
// a message of its own: a queued reply then holds only the bytes it sends,
// which is what ConnectionGuard counts.
zmq::message_t MessageFromRange(ShardRange range) {
  if (range.length == 0) return zmq::message_t();
  if (range.length < range.buffer_bytes / 2) {
    return zmq::message_t(range.buffer.get() + range.offset, range.length);
  }
  uint8_t* buffer = range.buffer.release();
  return zmq::message_t(
      buffer + range.offset, range.length,
      [](void*, void* hint) { delete[] static_cast<uint8_t*>(hint); }, buffer);
}

RpcReply GetReply(ShardRange range) {
  const uint64_t shard_length = range.shard_length;
  return RpcReply::WithPayload(MessageType::kGetShard, GetShardReply{shard_length}.Encode(),
                               MessageFromRange(std::move(range)));
}

void WarnIfCorrupt(const ShardKey& key, const Status& status) {
  if (status.code() == ErrorCode::kCorrupt) {
    spdlog::warn("shard {} failed its checksum: {}", key.ToString(), status.message());
  }
}

template <typename T>
Result<T> DecodeRequest(const RpcRequest& request) {
  return T::Decode(request.header.fields);
}

}  // namespace

Result<std::unique_ptr<NodeServer>> NodeServer::Start(zmq::context_t& context,
                                                      const Options& options) {
  if (::mkdir(options.data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::Error(ErrnoToErrorCode(errno), "cannot create data dir " + options.data_dir);
  }
  std::unique_ptr<NodeServer> server(new NodeServer());
  ShardStore::Options store_options;
  store_options.dir = options.data_dir;
  store_options.capacity_bytes = options.capacity_bytes;
  SHARDFS_ASSIGN_OR_RETURN(server->store_, ShardStore::Open(store_options));
  SHARDFS_ASSIGN_OR_RETURN(server->node_id_, LoadOrCreateNodeId(options.data_dir));
  NodeClient::Options peer_options;
  peer_options.attempt_timeout = kPeerAttemptTimeout;
  peer_options.attempts = 1;  // a failing source is followed by the next, not asked again
  server->peers_ = std::make_unique<NodeClient>(context, peer_options);

  RpcServer::Options rpc_options;
  rpc_options.endpoint = options.listen;
  rpc_options.workers = options.workers;
  rpc_options.max_payload = kMaxShardBytes;
  NodeServer* self = server.get();
  server->inline_read_bytes_ = options.inline_read_bytes;
  if (options.inline_read_bytes > 0) {
    rpc_options.try_inline = [self](RpcRequest& r) { return self->TryAnswerInline(r); };
  }
  server->rpc_ = std::make_unique<RpcServer>(context, rpc_options,
                                             [self](RpcRequest& r) { return self->Handle(r); });
  SHARDFS_RETURN_IF_ERROR(server->rpc_->Start());
  return server;
}

NodeServer::~NodeServer() {
  Stop();
}

void NodeServer::Stop() {
  stopping_ = true;
  if (rpc_) rpc_->Stop();
}

Result<PutShardReply> NodeServer::CopyShard(const CopyShardFromRequest& request) {
  const std::string name = request.key.ToString();
  const PutShardReply stored{request.length, request.checksum};
  auto held = store_->Stat(request.key);
  if (held.ok() && held->length == request.length && held->checksum == request.checksum) {
    // The index only repeats the file's header; the bytes are read too,
    // since a repair may ask exactly because this copy went bad.
    Status verified = store_->Verify(request.key);
    if (verified.ok()) return stored;
    spdlog::warn("copy of {}: the local copy is bad ({}); fetching it again", name,
                 verified.ToString());
  }

  const auto deadline = Clock::now() + kCopyBudget;
  Status last = Status::Error(ErrorCode::kUnavailable, "no source tried");
  std::string tried;
  for (const std::string& source : request.sources) {
    if (stopping_) {
      last = Status::Error(ErrorCode::kUnavailable, "the node is stopping");
      tried += (tried.empty() ? "" : "; ") + last.ToString();
      break;
    }
    if (Clock::now() + kPeerAttemptTimeout > deadline) {
      last = Status::Error(ErrorCode::kTimeout, "out of time before " + source);
      tried += (tried.empty() ? "" : "; ") + last.ToString();
      break;
    }
    Status failure;
    auto read = peers_->Get(source, request.key, 0, request.length);
    if (!read.ok()) {
      failure = read.status();
    } else if (read->shard_length != request.length || read->bytes.size() != request.length) {
      failure =
          Status::Error(ErrorCode::kCorrupt, fmt::format("source holds {} bytes, the table says {}",
                                                         read->shard_length, request.length));
    } else if (uint64_t sum = ShardChecksum(AsBytes(read->bytes)); sum != request.checksum) {
      failure = Status::Error(
          ErrorCode::kCorrupt,
          fmt::format("checksum {:016x} is not the expected {:016x}", sum, request.checksum));
    } else {
      // A local failure (a full disk) is the answer: another source would
      // not change it.
      SHARDFS_RETURN_IF_ERROR(
          store_->Put(request.key, AsBytes(read->bytes), request.sync, request.checksum));
      spdlog::info("copied {} ({} bytes) from {}", name, request.length, source);
      return stored;
    }
    spdlog::info("copy of {} from {} failed: {}", name, source, failure.ToString());
    tried += (tried.empty() ? "" : "; ") + source + ": " + failure.ToString();
    last = failure;
  }
  // The code says what went wrong last: a bad copy, or no copy to be had.
  const ErrorCode code =
      last.code() == ErrorCode::kCorrupt ? ErrorCode::kCorrupt : ErrorCode::kUnavailable;
  return Status::Error(code, fmt::format("no good copy of {} from {} source(s): {}", name,
                                         request.sources.size(), tried));
}

std::optional<RpcReply> NodeServer::TryAnswerInline(RpcRequest& request) {
  if (request.type() != MessageType::kGetShard) return std::nullopt;
  auto req = DecodeRequest<GetShardRequest>(request);
  if (!req.ok()) return std::nullopt;  // the worker answers with the error
  // The index is in memory (a reader lock held only for in-memory work).
  auto info = store_->Stat(req->key);
  if (!info.ok()) {
    inline_gets_.fetch_add(1, std::memory_order_relaxed);
    return RpcReply::Error(info.status());
  }
  // A large read is not even tried (the range only grows to whole blocks).
  if (req->offset < info->length &&
      std::min(req->length, info->length - req->offset) > inline_read_bytes_) {
    return std::nullopt;
  }
  auto range = store_->TryReadRangeCached(req->key, req->offset, req->length, inline_read_bytes_);
  if (range.ok() && !range->has_value()) return std::nullopt;  // needs the disk, or too large
  inline_gets_.fetch_add(1, std::memory_order_relaxed);
  if (!range.ok()) {
    WarnIfCorrupt(req->key, range.status());
    return RpcReply::Error(range.status());
  }
  return GetReply(std::move(**range));
}

RpcReply NodeServer::Handle(RpcRequest& request) {
  const MessageType type = request.type();
  switch (type) {
    case MessageType::kNodePing:
      return RpcReply::Ok(type);

    case MessageType::kNodeInfo: {
      StoreUsage usage = store_->Usage();
      NodeInfoReply reply{node_id_, usage.capacity_bytes, usage.used_bytes, usage.shard_count};
      return RpcReply::Ok(type, reply.Encode());
    }

    case MessageType::kPutShard: {
      auto req = DecodeRequest<PutShardRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      if (!request.has_payload) {
        return RpcReply::Error(Status::Error(ErrorCode::kBadMessage, "put without a payload"));
      }
      auto data = PayloadSpan(request);
      Status st = store_->Put(req->key, data, req->sync, req->checksum);
      if (!st.ok()) return RpcReply::Error(st);
      // Gone again already (deleted meanwhile): nothing to say about holes.
      auto info = store_->Stat(req->key);
      PutShardReply reply{data.size(), req->checksum ? *req->checksum : ShardChecksum(data),
                          info.ok() ? info->data_bytes : data.size()};
      return RpcReply::Ok(type, reply.Encode());
    }

    case MessageType::kPutPatchedShard: {
      auto req = DecodeRequest<PutPatchedShardRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      auto data = PayloadSpan(request);
      std::vector<ShardPatch> patches;
      uint64_t used = 0;
      for (const auto& p : req->patches) {
        if (p.length > data.size() - used) {
          return RpcReply::Error(
              Status::Error(ErrorCode::kBadMessage, "patch lengths exceed the payload"));
        }
        patches.push_back({p.offset, data.subspan(used, p.length)});
        used += p.length;
      }
      if (used != data.size()) {
        return RpcReply::Error(
            Status::Error(ErrorCode::kBadMessage, "payload longer than the patches"));
      }
      Status st = store_->PutPatched(req->key, req->base, req->new_length, patches, req->sync);
      if (!st.ok()) return RpcReply::Error(st);
      auto info = store_->Stat(req->key);
      if (!info.ok()) return RpcReply::Error(info.status());
      return RpcReply::Ok(type,
                          PutShardReply{info->length, info->checksum, info->data_bytes}.Encode());
    }

    case MessageType::kGetShard: {
      auto req = DecodeRequest<GetShardRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      worker_gets_.fetch_add(1, std::memory_order_relaxed);
      // Only indexed shards are served (a file Open() could not index is not).
      if (auto info = store_->Stat(req->key); !info.ok()) return RpcReply::Error(info.status());
      auto range = store_->ReadRange(req->key, req->offset, req->length);
      if (!range.ok()) {
        WarnIfCorrupt(req->key, range.status());
        return RpcReply::Error(range.status());
      }
      return GetReply(std::move(range).value());
    }

    case MessageType::kDeleteShard: {
      auto req = DecodeRequest<ShardKeyRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      Status st = store_->Delete(req->key);
      if (!st.ok()) return RpcReply::Error(st);
      return RpcReply::Ok(type);
    }

    case MessageType::kSyncShards: {
      auto req = DecodeRequest<SyncShardsRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      for (const ShardKey& key : req->keys) {
        if (Status st = store_->Sync(key); !st.ok()) return RpcReply::Error(st);
      }
      spdlog::debug("fsync: made {} shard(s) durable", req->keys.size());
      return RpcReply::Ok(type);
    }

    case MessageType::kStatShard: {
      auto req = DecodeRequest<ShardKeyRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      auto info = store_->Stat(req->key);
      if (!info.ok()) return RpcReply::Error(info.status());
      return RpcReply::Ok(type, ShardStatReply{info->length, info->checksum}.Encode());
    }

    case MessageType::kShardExtents: {
      auto req = DecodeRequest<ShardKeyRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      // Only indexed shards are answered for, as with reads.
      auto info = store_->Stat(req->key);
      if (!info.ok()) return RpcReply::Error(info.status());
      auto extents = store_->DataExtents(req->key);
      if (!extents.ok()) return RpcReply::Error(extents.status());
      return RpcReply::Ok(type, ShardExtentsReply{info->length, std::move(*extents)}.Encode());
    }

    case MessageType::kInventory: {
      auto req = DecodeRequest<InventoryRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      // One more than asked tells whether another page follows.
      auto list = store_->List(req->after, req->max + 1);
      if (!list.ok()) return RpcReply::Error(list.status());
      InventoryReply reply;
      reply.more = list->size() > req->max;
      if (reply.more) list->pop_back();
      for (const auto& info : *list)
        reply.entries.push_back({info.key, info.length, info.checksum});
      return RpcReply::Ok(type, reply.Encode());
    }

    case MessageType::kCopyShardFrom: {
      auto req = DecodeRequest<CopyShardFromRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      auto copied = CopyShard(*req);
      if (!copied.ok()) return RpcReply::Error(copied.status());
      return RpcReply::Ok(type, copied->Encode());
    }

    default:
      return RpcReply::Error(Status::Error(
          ErrorCode::kUnknownType,
          "message type " + std::to_string(request.header.type) + " is not served by a node"));
  }
}

}  // namespace shardfs
