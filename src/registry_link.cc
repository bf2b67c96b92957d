#include "src/registry_link.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "src/beacon_listener.h"
#include "src/beacon_sender.h"
#include "src/rpc_channel.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

std::string LocalHostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// The first IPv4 address of `host` (a literal or a name).
std::optional<std::string> ResolveIpv4(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return std::nullopt;
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof(buf));
  freeaddrinfo(res);
  return std::string(buf);
}

// Fills a wildcard host in the node's endpoint with the local address used to
// reach the registry: the one network on which we know we are reachable.
std::string AdvertiseToward(const std::string& node_endpoint, const std::string& registry) {
  auto node = ParseTcpEndpoint(node_endpoint);
  if (!node.ok() || !node->IsWildcard()) return node_endpoint;
  auto reg = ParseTcpEndpoint(registry);
  if (!reg.ok()) return node_endpoint;
  auto ip = ResolveIpv4(reg->host);
  if (!ip) return node_endpoint;
  auto source = SourceAddressToward(*ip);
  if (!source.ok()) return node_endpoint;
  return AdvertisedEndpoint(node_endpoint, *source);
}

}  // namespace

std::string RegistryEndpointFromFlagOrEnv(std::string_view flag) {
  if (!flag.empty()) return std::string(flag);
  const char* env = std::getenv("SHARDFS_REGISTRY");
  return env != nullptr ? std::string(env) : std::string();
}

class RegistryLink::State {
 public:
  std::unique_ptr<RpcChannel> channel;
  std::optional<BeaconListener> listener;
  int failures = 0;     // consecutive failed calls
  std::string node_id;  // as last registered; the reports' sender
};

RegistryLink::RegistryLink(zmq::context_t& context, Options options, ReportFn report)
    : context_(context),
      options_([&] {
        options.registry_endpoint = RegistryEndpointFromFlagOrEnv(options.registry_endpoint);
        return std::move(options);
      }()),
      report_(std::move(report)),
      discover_(options_.registry_endpoint.empty()),
      state_(std::make_unique<State>()) {}

RegistryLink::~RegistryLink() {
  Stop();
}

Status RegistryLink::Start() {
  if (thread_.joinable()) return Status::Error(ErrorCode::kBusy, "registry link already started");
  if (!discover_) SHARDFS_RETURN_IF_ERROR(ParseTcpEndpoint(options_.registry_endpoint).status());
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    endpoint_ = options_.registry_endpoint;
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void RegistryLink::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  state_->channel.reset();  // its sockets belong to the context; close them now
  registered_ = false;
}

std::string RegistryLink::registry_endpoint() const {
  std::lock_guard<std::mutex> lock(mu_);
  return endpoint_;
}

std::string RegistryLink::advertised_endpoint() const {
  std::lock_guard<std::mutex> lock(mu_);
  return advertised_;
}

bool RegistryLink::stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

bool RegistryLink::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stopping_; });
  return !stopping_;
}

RegistryLink::NodeReport RegistryLink::CurrentReport() {
  NodeReport r = report_();
  if (r.host.empty()) r.host = LocalHostName();
  return r;
}

bool RegistryLink::Discover() {
  State& s = *state_;
  if (!s.listener) {
    auto listener = BeaconListener::Open(options_.beacon_port);
    if (!listener.ok()) {
      spdlog::warn("registry link: {}", listener.status().ToString());
      SleepFor(options_.heartbeat_interval);
      return false;
    }
    s.listener.emplace(std::move(listener).value());
    spdlog::info("registry link: listening for the beacon of cluster '{}' on UDP port {}",
                 options_.cluster, options_.beacon_port);
  }
  // Short waits, so Stop() is never held up by a quiet network.
  auto beacon = s.listener->Wait(options_.cluster, std::chrono::milliseconds(250));
  if (!beacon.ok()) return false;
  spdlog::info("registry link: found registry {} of cluster '{}'", beacon->registry_endpoint,
               options_.cluster);
  std::lock_guard<std::mutex> lock(mu_);
  endpoint_ = beacon->registry_endpoint;
  return true;
}

Status RegistryLink::Register() {
  NodeReport report = CurrentReport();
  RegisterNodeRequest req;
  req.node_id = report.node_id;
  req.endpoint = AdvertiseToward(report.endpoint, state_->channel->endpoint());
  req.host = report.host;
  req.capacity = report.capacity;
  req.used = report.used;
  req.shard_count = report.shard_count;
  SHARDFS_ASSIGN_OR_RETURN(
      RpcResponse resp,
      state_->channel->Call(MessageType::kRegisterNode, req.Encode(), options_.rpc_timeout));
  SHARDFS_ASSIGN_OR_RETURN(RegisterNodeReply reply, RegisterNodeReply::Decode(resp.header.fields));
  {
    std::lock_guard<std::mutex> lock(mu_);
    advertised_ = req.endpoint;
  }
  state_->node_id = req.node_id;
  epoch_ = reply.epoch;
  registered_ = true;
  registrations_.fetch_add(1);
  spdlog::info("registry link: node {} registered at {} as {} (epoch {})", req.node_id,
               state_->channel->endpoint(), req.endpoint, reply.epoch);
  return Status::Ok();
}

Status RegistryLink::Heartbeat() {
  NodeReport report = CurrentReport();
  HeartbeatRequest req;
  req.node_id = report.node_id;
  req.used = report.used;
  req.capacity = report.capacity;
  req.shard_count = report.shard_count;
  SHARDFS_ASSIGN_OR_RETURN(
      RpcResponse resp,
      state_->channel->Call(MessageType::kHeartbeat, req.Encode(), options_.rpc_timeout));
  SHARDFS_ASSIGN_OR_RETURN(HeartbeatReply reply, HeartbeatReply::Decode(resp.header.fields));
  epoch_ = reply.epoch;
  if (!reply.known) {
    spdlog::info("registry link: registry {} does not know node {}; registering again",
                 state_->channel->endpoint(), req.node_id);
    registered_ = false;
  }
  return Status::Ok();
}

void RegistryLink::ReportBadReplica(const ShardKey& key, std::string reason) {
  std::lock_guard<std::mutex> lock(reports_mu_);
  for (const QueuedReport& queued : reports_) {
    if (queued.key == key) return;
  }
  if (reports_.size() >= std::max<size_t>(1, options_.max_queued_reports)) {
    spdlog::warn("registry link: {} bad-replica reports queued; dropping the one of {}",
                 reports_.size(), reports_.front().key.ToString());
    reports_.pop_front();
  }
  reports_.push_back({++next_report_id_, key, std::move(reason), 0});
}

void RegistryLink::SendQueuedReports(Clock::time_point until) {
  State& s = *state_;
  while (Clock::now() < until && !stopping()) {
    QueuedReport report;
    {
      std::lock_guard<std::mutex> lock(reports_mu_);
      if (reports_.empty()) return;
      report = reports_.front();
    }
    ReportBadReplicaRequest req{s.node_id, report.key, report.reason};
    auto sent = s.channel->Call(MessageType::kReportBadReplica, req.Encode(), options_.rpc_timeout);
    // No answer: the report may go again. An answer, even an error (say, a
    // registry that knows nothing of the shard any more), settles it.
    const bool unanswered = !sent.ok() && (IsNotConnected(sent.status()) ||
                                           sent.status().code() == ErrorCode::kTimeout ||
                                           sent.status().code() == ErrorCode::kBusy);
    std::lock_guard<std::mutex> lock(reports_mu_);
    // Found by id: while it was being sent, the report may have been pushed
    // out of a full queue.
    auto it = std::find_if(reports_.begin(), reports_.end(),
                           [&](const QueuedReport& q) { return q.id == report.id; });
    if (sent.ok() || !unanswered) {
      if (sent.ok()) {
        reports_sent_.fetch_add(1);
        spdlog::info("registry link: reported bad replica {} to {}", report.key.ToString(),
                     s.channel->endpoint());
      } else {
        spdlog::warn("registry link: registry refused the report of bad replica {}: {}",
                     report.key.ToString(), sent.status().ToString());
      }
      if (it != reports_.end()) reports_.erase(it);
      continue;
    }
    if (it != reports_.end() && ++it->failed_sends >= options_.report_attempts) {
      spdlog::warn("registry link: dropping the report of bad replica {} after {} tries: {}",
                   report.key.ToString(), it->failed_sends, sent.status().ToString());
      reports_.erase(it);
    } else if (it != reports_.end()) {
      spdlog::warn("registry link: report of bad replica {} got no answer ({}); will retry",
                   report.key.ToString(), sent.status().ToString());
    }
    return;  // the registry is not answering: wait for the next heartbeat
  }
}

void RegistryLink::Loop() {
  State& s = *state_;
  while (!stopping()) {
    std::string endpoint = registry_endpoint();
    if (endpoint.empty()) {
      if (!Discover()) continue;
      endpoint = registry_endpoint();
    }
    if (!s.channel || s.channel->endpoint() != endpoint) {
      s.channel = std::make_unique<RpcChannel>(context_, endpoint);
      registered_ = false;
      s.failures = 0;
    }
    const auto round_start = Clock::now();
    const bool was_registered = registered_.load();
    Status st = was_registered ? Heartbeat() : Register();
    if (st.ok()) {
      if (s.failures > 0) spdlog::info("registry link: registry {} answers again", endpoint);
      s.failures = 0;
      // known=false: register right away instead of waiting a round.
      if (was_registered && !registered_.load()) continue;
    } else {
      ++s.failures;
      // The first failure of a run is news; the rest would only fill the log.
      if (s.failures == 1) {
        spdlog::warn("registry link: {} to {} failed: {}",
                     was_registered ? "heartbeat" : "registration", endpoint, st.ToString());
      }
      if (s.failures >= options_.failures_before_reset) {
        // The registry may come back empty (a restart): register afresh. A
        // discovered registry may also have moved: listen again.
        registered_ = false;
        if (discover_) {
          spdlog::info("registry link: registry {} is silent; listening for the beacon again",
                       endpoint);
          std::lock_guard<std::mutex> lock(mu_);
          endpoint_.clear();
          s.failures = 0;
        }
      }
    }
    // Between heartbeats, and only right after the registry answered one:
    // while it is away, reports wait instead of using up their attempts.
    if (st.ok() && registered_.load()) {
      SendQueuedReports(round_start + options_.heartbeat_interval);
    }
    auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - round_start);
    if (elapsed < options_.heartbeat_interval) SleepFor(options_.heartbeat_interval - elapsed);
  }
}

}  // namespace shardfs
