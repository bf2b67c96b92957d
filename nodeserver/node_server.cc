#include "nodeserver/node_server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "protocol/node_messages.h"
#include "src/node_id.h"

namespace shardfs {
namespace {

std::span<const uint8_t> PayloadSpan(const RpcRequest& request) {
  return std::span<const uint8_t>(static_cast<const uint8_t*>(request.payload.data()),
                                  request.payload.size());
}

// Hands a std::string's buffer to ZeroMQ without copying it.
zmq::message_t MessageFromString(std::string bytes) {
  auto* owned = new std::string(std::move(bytes));
  return zmq::message_t(
      owned->data(), owned->size(),
      [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned);
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

  RpcServer::Options rpc_options;
  rpc_options.endpoint = options.listen;
  rpc_options.workers = options.workers;
  rpc_options.max_payload = kMaxShardBytes;
  NodeServer* self = server.get();
  server->rpc_ = std::make_unique<RpcServer>(context, rpc_options,
                                             [self](RpcRequest& r) { return self->Handle(r); });
  SHARDFS_RETURN_IF_ERROR(server->rpc_->Start());
  return server;
}

NodeServer::~NodeServer() {
  Stop();
}

void NodeServer::Stop() {
  if (rpc_) rpc_->Stop();
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
      PutShardReply reply{data.size(), req->checksum ? *req->checksum : ShardChecksum(data)};
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
      return RpcReply::Ok(type, PutShardReply{info->length, info->checksum}.Encode());
    }

    case MessageType::kGetShard: {
      auto req = DecodeRequest<GetShardRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      auto info = store_->Stat(req->key);
      if (!info.ok()) return RpcReply::Error(info.status());
      std::string bytes;
      Status st = store_->Read(req->key, req->offset, req->length, &bytes);
      if (!st.ok()) {
        if (st.code() == ErrorCode::kCorrupt) {
          spdlog::warn("shard {} failed its checksum: {}", req->key.ToString(), st.message());
        }
        return RpcReply::Error(st);
      }
      return RpcReply::WithPayload(type, GetShardReply{info->length}.Encode(),
                                   MessageFromString(std::move(bytes)));
    }

    case MessageType::kDeleteShard: {
      auto req = DecodeRequest<ShardKeyRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      Status st = store_->Delete(req->key);
      if (!st.ok()) return RpcReply::Error(st);
      return RpcReply::Ok(type);
    }

    case MessageType::kStatShard: {
      auto req = DecodeRequest<ShardKeyRequest>(request);
      if (!req.ok()) return RpcReply::Error(req.status());
      auto info = store_->Stat(req->key);
      if (!info.ok()) return RpcReply::Error(info.status());
      return RpcReply::Ok(type, ShardStatReply{info->length, info->checksum}.Encode());
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

    default:
      return RpcReply::Error(Status::Error(
          ErrorCode::kUnknownType,
          "message type " + std::to_string(request.header.type) + " is not served by a node"));
  }
}

}  // namespace shardfs
