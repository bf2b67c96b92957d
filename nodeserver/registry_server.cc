#include "nodeserver/registry_server.h"

#include <spdlog/spdlog.h>

#include "protocol/health_messages.h"
#include "protocol/namespace_messages.h"
#include "protocol/registry_messages.h"
#include "src/cluster_map_subscriber.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint16_t kMembershipFirst = 200;
constexpr uint16_t kMembershipLast = 299;
constexpr uint16_t kNamespaceFirst = 300;
constexpr uint16_t kNamespaceLast = 399;

int64_t WallMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Membership::Options MembershipOptions(const RegistryServer::Options& o) {
  Membership::Options m;
  m.down_after = o.down_after;
  // Seeded from the wall clock (ms) so a restarted registry's epochs are
  // still larger than the ones it handed out before: clients comparing
  // epochs never take the new map for an old one. Membership changes are
  // far rarer than one per millisecond, so the seed stays ahead.
  m.initial_epoch = static_cast<uint64_t>(WallMsNow());
  return m;
}

RpcReply UnknownType(uint16_t type) {
  return RpcReply::Error(
      Status::Error(ErrorCode::kUnknownType,
                    "message type " + std::to_string(type) + " is not served by the registry"));
}

}  // namespace

RegistryServer::RegistryServer(zmq::context_t& context, Options options)
    : context_(context), options_(std::move(options)), membership_(MembershipOptions(options_)) {}

RegistryServer::~RegistryServer() {
  Stop();
}

void RegistryServer::SetHandler(MessageType type, RpcHandler handler) {
  handlers_[static_cast<uint16_t>(type)] = std::move(handler);
}

Status RegistryServer::Start() {
  if (running_) return Status::Error(ErrorCode::kBusy, "registry already started");
  SHARDFS_RETURN_IF_ERROR(ValidateClusterName(options_.cluster));
  SHARDFS_ASSIGN_OR_RETURN(TcpEndpoint listen, ParseTcpEndpoint(options_.listen));
  if (listen.port == 65535) {
    return Status::Error(ErrorCode::kInvalidArgument, "listen port 65535 leaves no PORT+1");
  }
  SHARDFS_ASSIGN_OR_RETURN(std::vector<BeaconSpec> beacon_specs,
                           ParseBeaconSpecs(options_.beacon, options_.beacon_port));

  RpcServer::Options rpc_options{options_.listen, options_.workers};
  // Namespace reads touch only memory: answering them on the socket thread
  // saves two thread hand-offs, most of a lookup's cost on a busy machine.
  rpc_options.answer_inline = [](const RpcRequest& request) {
    switch (request.type()) {
      case MessageType::kLookup:
      case MessageType::kGetAttr:
      case MessageType::kReadlink:
      case MessageType::kGetXattr:
      case MessageType::kListXattr:
      // An open only touches memory as well (open references are not
      // logged: sessions restore them), and every open of a file waits for
      // one.
      case MessageType::kOpen:
      // Membership is in memory too. Queued behind workers waiting for a
      // slow log sync (a disk busy with the nodes' writes), heartbeats timed
      // out and the registry marked every node down for a moment.
      case MessageType::kHeartbeat:
        return true;
      case MessageType::kGetShardTable: {
        // Pages as large as the mount asks for; a larger one would hold the
        // socket thread for long.
        auto r = GetShardTableRequest::Decode(request.header.fields);
        return r.ok() && r->count <= 1024;
      }
      default:
        return false;
    }
  };
  rpc_ = std::make_unique<RpcServer>(context_, std::move(rpc_options),
                                     [this](RpcRequest& request) { return Handle(request); });
  if (Status st = rpc_->Start(); !st.ok()) {
    rpc_.reset();
    return st;
  }
  endpoint_ = rpc_->endpoint();

  TcpEndpoint pub = listen;
  pub.port = listen.port == 0 ? 0 : static_cast<uint16_t>(listen.port + 1);
  try {
    pub_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pub);
    pub_->set(zmq::sockopt::linger, 0);
    // A subscriber that stops reading loses maps rather than growing our
    // memory; it catches up from the next one (each map is complete).
    pub_->set(zmq::sockopt::sndhwm, 16);
    // The map names every node: only members may subscribe.
    auto auth = SecureServerSocket(context_, *pub_, "the cluster map on " + pub.ToString());
    if (!auth.ok()) {
      pub_.reset();
      rpc_->Stop();
      rpc_.reset();
      return auth.status();
    }
    pub_authenticator_ = std::move(auth).value();
    pub_->bind(pub.ToString());
    publish_endpoint_ = pub_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    pub_.reset();
    pub_authenticator_.reset();
    rpc_->Stop();
    rpc_.reset();
    return Status::Error(ErrorCode::kUnavailable,
                         "cannot publish on " + pub.ToString() + ": " + e.what());
  }

  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    changed_ = true;  // publish the (empty) map at once
  }
  publisher_ = std::thread([this] { PublisherLoop(); });

  BeaconSender::Options beacon;
  beacon.specs = std::move(beacon_specs);
  beacon.info.version = kProtocolVersion;
  beacon.info.cluster = options_.cluster;
  beacon.info.registry_endpoint = endpoint_;
  beacon.info.publish_endpoint = publish_endpoint_;
  beacon.interval = options_.beacon_interval;
  beacon_ = std::make_unique<BeaconSender>(std::move(beacon));
  running_ = true;
  if (Status st = beacon_->Start(); !st.ok()) {
    Stop();
    return st;
  }
  spdlog::info("registry: cluster '{}' serving on {}, cluster map on {}", options_.cluster,
               endpoint_, publish_endpoint_);
  return Status::Ok();
}

void RegistryServer::Stop() {
  if (!running_) return;
  running_ = false;
  // Beacon first: no client should be sent here while we go away.
  if (beacon_) beacon_->Stop();
  if (rpc_) rpc_->Stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  pub_.reset();
  pub_authenticator_.reset();
  rpc_.reset();
  beacon_.reset();
}

void RegistryServer::NotifyChange() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed_ = true;
  }
  cv_.notify_all();
}

RpcReply RegistryServer::Handle(RpcRequest& request) {
  const uint16_t type = request.header.type;
  if (auto it = handlers_.find(type); it != handlers_.end()) return it->second(request);
  if (type >= kMembershipFirst && type <= kMembershipLast) return HandleMembership(request);
  if (type >= kNamespaceFirst && type <= kNamespaceLast) {
    if (namespace_ == nullptr) {
      return RpcReply::Error(
          Status::Error(ErrorCode::kUnavailable, "the namespace service is not running"));
    }
    return namespace_->Handle(request);
  }
  return UnknownType(type);
}

RpcReply RegistryServer::HandleMembership(RpcRequest& request) {
  const auto now = Clock::now();
  switch (request.type()) {
    case MessageType::kRegisterNode: {
      auto req = RegisterNodeRequest::Decode(request.header.fields);
      if (!req.ok()) return RpcReply::Error(req.status());
      const uint64_t before = membership_.epoch();
      RegisterNodeReply reply{membership_.Register(*req, now)};
      if (reply.epoch != before) NotifyChange();
      return RpcReply::Ok(MessageType::kRegisterNode, reply.Encode());
    }
    case MessageType::kHeartbeat: {
      auto req = HeartbeatRequest::Decode(request.header.fields);
      if (!req.ok()) return RpcReply::Error(req.status());
      const uint64_t before = membership_.epoch();
      HeartbeatReply reply = membership_.Heartbeat(*req, now);
      if (reply.epoch != before) NotifyChange();
      return RpcReply::Ok(MessageType::kHeartbeat, reply.Encode());
    }
    case MessageType::kClusterMap: {
      auto req = GetClusterMapRequest::Decode(request.header.fields);
      if (!req.ok()) return RpcReply::Error(req.status());
      return RpcReply::Ok(MessageType::kClusterMap, membership_.Map().Encode());
    }
    case MessageType::kSetDraining: {
      auto req = SetDrainingRequest::Decode(request.header.fields);
      if (!req.ok()) return RpcReply::Error(req.status());
      if (Status st = membership_.SetDraining(req->node_id, req->draining); !st.ok()) {
        return RpcReply::Error(st);
      }
      spdlog::info("registry: node {} {}", req->node_id,
                   req->draining ? "is draining" : "takes new shards again");
      NotifyChange();
      return RpcReply::Ok(MessageType::kSetDraining, FieldWriter());
    }
    default:
      return UnknownType(request.header.type);
  }
}

void RegistryServer::PublisherLoop() {
  std::optional<uint64_t> published_epoch;
  auto last_publish = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, options_.tick_interval, [this] { return stopping_ || changed_; });
    if (stopping_) break;
    changed_ = false;
    lock.unlock();
    const auto now = Clock::now();
    membership_.Tick(now);
    ClusterMap map = membership_.Map();
    if (!published_epoch || *published_epoch != map.epoch ||
        now - last_publish >= options_.publish_interval) {
      std::string header = EncodeClusterMapPublication(map);
      try {
        pub_->send(zmq::buffer(kClusterMapTopic), zmq::send_flags::sndmore);
        pub_->send(zmq::buffer(header), zmq::send_flags::dontwait);
      } catch (const zmq::error_t& e) {
        spdlog::warn("registry: publishing the cluster map failed: {}", e.what());
      }
      published_epoch = map.epoch;
      last_publish = now;
    }
    lock.lock();
  }
}

}  // namespace shardfs
