#include "src/cluster_map_subscriber.h"

#include <spdlog/spdlog.h>

#include <zmq_addon.hpp>

#include "protocol/beacon.h"
#include "protocol/envelope.h"
#include "protocol/registry_messages.h"
#include "src/rpc_channel.h"
#include "src/socket_security.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

// How often the loop wakes to check for Stop() and for the poll deadline.
constexpr std::chrono::milliseconds kWakeInterval{100};

}  // namespace

std::string EncodeClusterMapPublication(const ClusterMap& map) {
  return EncodeHeader(ReplyTypeOf(MessageType::kClusterMap), 0, map.Encode());
}

Result<ClusterMap> DecodeClusterMapPublication(std::string_view header) {
  SHARDFS_ASSIGN_OR_RETURN(Envelope env, DecodeHeader(header));
  if (env.version != kProtocolVersion) {
    return Status::Error(ErrorCode::kVersionMismatch,
                         "cluster map of protocol version " + std::to_string(env.version));
  }
  if (env.type != ReplyTypeOf(MessageType::kClusterMap)) {
    return Status::Error(ErrorCode::kBadMessage, "publication is not a cluster map");
  }
  return ClusterMap::Decode(env.fields);
}

Result<std::string> PublishEndpointFor(std::string_view registry_endpoint) {
  SHARDFS_ASSIGN_OR_RETURN(TcpEndpoint ep, ParseTcpEndpoint(registry_endpoint));
  if (ep.port == 0 || ep.port == 65535) {
    return Status::Error(
        ErrorCode::kInvalidArgument,
        "registry endpoint " + std::string(registry_endpoint) + " has no publish port (PORT+1)");
  }
  ep.port = static_cast<uint16_t>(ep.port + 1);
  return ep.ToString();
}

ClusterMapSubscriber::ClusterMapSubscriber(zmq::context_t& context, Options options,
                                           Callback on_change)
    : context_(context), options_(std::move(options)), on_change_(std::move(on_change)) {}

ClusterMapSubscriber::~ClusterMapSubscriber() {
  Stop();
}

Status ClusterMapSubscriber::Start() {
  if (thread_.joinable()) return Status::Error(ErrorCode::kBusy, "subscriber already started");
  SHARDFS_RETURN_IF_ERROR(ParseTcpEndpoint(options_.registry_endpoint).status());
  if (options_.publish_endpoint.empty()) {
    SHARDFS_ASSIGN_OR_RETURN(options_.publish_endpoint,
                             PublishEndpointFor(options_.registry_endpoint));
  }
  SHARDFS_RETURN_IF_ERROR(ParseTcpEndpoint(options_.publish_endpoint).status());
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ClusterMapSubscriber::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const ClusterMap> ClusterMapSubscriber::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::shared_ptr<const ClusterMap> ClusterMapSubscriber::WaitFor(
    const std::function<bool(const ClusterMap&)>& pred, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  bool ok = cv_.wait_for(lock, timeout, [&] { return current_ && pred(*current_); });
  return ok ? current_ : nullptr;
}

void ClusterMapSubscriber::Accept(ClusterMap map) {
  auto fresh = std::make_shared<const ClusterMap>(std::move(map));
  bool changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Any different epoch counts: a restarted registry may start lower.
    changed = !current_ || current_->epoch != fresh->epoch;
    current_ = fresh;
  }
  cv_.notify_all();
  if (changed) {
    spdlog::debug("cluster map: epoch {} with {} nodes ({} up)", fresh->epoch, fresh->nodes.size(),
                  fresh->Live().size());
    if (on_change_) on_change_(fresh);
  }
}

void ClusterMapSubscriber::Loop() {
  zmq::socket_t sub(context_, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::reconnect_ivl, 100);
  sub.set(zmq::sockopt::reconnect_ivl_max, 1000);
  // A map of kMaxClusterNodes nodes is far below this; anything bigger is not
  // a map and ZeroMQ drops the connection instead of buffering it.
  sub.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxHeaderBytes));
  sub.set(zmq::sockopt::subscribe, kClusterMapTopic);
  if (Status st = SecureClientSocket(context_, sub); !st.ok()) {
    // The registry refuses the plain connection; the polls below say why.
    spdlog::error("cluster map: {}", st.ToString());
  }
  sub.connect(options_.publish_endpoint);
  RpcChannel channel(context_, options_.registry_endpoint);

  auto last_publication = Clock::now();
  // Ask at once: the first publication may be up to a second away.
  auto next_poll = Clock::now();
  bool poll_failing = false;
  while (!stopping_.load()) {
    zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, kWakeInterval);
    if (items[0].revents & ZMQ_POLLIN) {
      // Drain everything queued and keep only the newest map.
      std::optional<ClusterMap> newest;
      while (true) {
        std::vector<zmq::message_t> frames;
        auto got = zmq::recv_multipart(sub, std::back_inserter(frames), zmq::recv_flags::dontwait);
        if (!got) break;
        if (frames.size() != 2) continue;
        auto map = DecodeClusterMapPublication(
            std::string_view(static_cast<const char*>(frames[1].data()), frames[1].size()));
        if (!map.ok()) {
          spdlog::debug("cluster map: dropped a publication: {}", map.status().ToString());
          continue;
        }
        newest = std::move(map).value();
      }
      if (newest) {
        publications_.fetch_add(1);
        last_publication = Clock::now();
        Accept(std::move(*newest));
      }
    }
    const auto now = Clock::now();
    if (now - last_publication < options_.poll_after && polls_.load() > 0) continue;
    if (now < next_poll) continue;
    next_poll = now + options_.poll_interval;
    polls_.fetch_add(1);
    auto resp = channel.Call(MessageType::kClusterMap, GetClusterMapRequest{}.Encode(),
                             options_.rpc_timeout);
    Result<ClusterMap> map =
        resp.ok() ? ClusterMap::Decode(resp->header.fields) : Result<ClusterMap>(resp.status());
    if (!map.ok()) {
      if (!poll_failing) {
        spdlog::warn("cluster map: asking {} failed: {}", options_.registry_endpoint,
                     map.status().ToString());
      }
      poll_failing = true;
      continue;
    }
    poll_failing = false;
    Accept(std::move(map).value());
  }
}

}  // namespace shardfs
