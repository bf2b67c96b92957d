// RegistryServer: everything the shardfs-registry daemon runs, minus main().
//
// It owns the request socket (an RpcServer), the cluster-map PUB socket on
// PORT+1, the beacon, and the membership table. Requests are dispatched by
// message-type range: 200-299 membership (served here), 300-399 namespace
// (handed to a NamespaceService plugged in by the namespace store; until one
// is, those requests get kUnavailable), anything else kUnknownType. Single
// message types can also be claimed with SetHandler() (say, repair's
// kReportBadReplica) without touching the dispatcher.
//
// Threads: the RpcServer's socket and worker threads run the handlers; one
// publisher thread ticks membership (marking silent nodes down) and publishes
// the map on every change and every second; the beacon has its own thread.
// Construction, the Set* calls, Start and Stop belong to the owning thread
// (main); Set* must come before Start.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "nodeserver/membership.h"
#include "src/beacon_sender.h"
#include "src/rpc_server.h"
#include "src/socket_security.h"
#include "src/status.h"

namespace shardfs {

// The namespace half of the registry. Handle() is called on RPC worker
// threads for message types 300-399 and must be thread-safe.
class NamespaceService {
 public:
  virtual ~NamespaceService() = default;
  virtual RpcReply Handle(RpcRequest& request) = 0;
};

class RegistryServer {
 public:
  struct Options {
    std::string listen = "tcp://0.0.0.0:7400";  // PUB goes on PORT+1 (any port if PORT is 0)
    std::string cluster = "shardfs";
    // A --beacon value (see src/beacon_sender.h); "" is the loopback default.
    std::string beacon;
    uint16_t beacon_port = kDefaultBeaconPort;
    std::chrono::milliseconds beacon_interval{1000};
    std::chrono::milliseconds down_after{5000};
    std::chrono::milliseconds publish_interval{1000};
    // How often silent nodes are looked for; bounds how late "down" comes.
    std::chrono::milliseconds tick_interval{200};
    uint32_t replicas = 3;
    uint64_t shard_size = 4u << 20;
    int workers = 4;
  };

  // `context` must outlive the server.
  RegistryServer(zmq::context_t& context, Options options);
  ~RegistryServer();
  RegistryServer(const RegistryServer&) = delete;
  RegistryServer& operator=(const RegistryServer&) = delete;

  // Not owned; must outlive the server. Before Start().
  void SetNamespaceService(NamespaceService* service) { namespace_ = service; }
  // Serves one message type with `handler` instead of the built-in dispatch.
  // Before Start().
  void SetHandler(MessageType type, RpcHandler handler);

  // Binds both sockets and starts every thread. Fails (and leaves nothing
  // running) if a socket cannot be bound or the beacon spec is invalid.
  Status Start();
  void Stop();

  // Endpoints as bound (real ports, wildcard hosts as given).
  const std::string& endpoint() const { return endpoint_; }
  const std::string& publish_endpoint() const { return publish_endpoint_; }
  const Options& options() const { return options_; }
  Membership& membership() { return membership_; }

  // The request dispatcher; public so it can be tested without sockets.
  RpcReply Handle(RpcRequest& request);

 private:
  RpcReply HandleMembership(RpcRequest& request);
  void PublisherLoop();
  // Wakes the publisher so a change goes out now rather than within a second.
  void NotifyChange();

  zmq::context_t& context_;
  const Options options_;
  Membership membership_;
  NamespaceService* namespace_ = nullptr;
  std::map<uint16_t, RpcHandler> handlers_;  // fixed after Start

  std::unique_ptr<RpcServer> rpc_;
  std::unique_ptr<zmq::socket_t> pub_;  // bound in Start, then used by the publisher thread only
  std::shared_ptr<Authenticator> pub_authenticator_;  // while pub_ exists; null without a key
  std::unique_ptr<BeaconSender> beacon_;
  std::string endpoint_;
  std::string publish_endpoint_;

  std::thread publisher_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool changed_ = false;   // guarded by mu_
  bool running_ = false;   // owner thread only
};

}  // namespace shardfs
