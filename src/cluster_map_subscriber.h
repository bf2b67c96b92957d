// ClusterMapSubscriber: a client's always-fresh copy of the cluster map.
//
// The registry publishes the map on its PUB socket (registry PORT+1) on every
// change and once a second. The subscriber keeps the latest copy for any
// thread to read and calls back when the epoch changes, so mounts and nodes
// learn of joins and deaths without asking. PUB/SUB drops messages silently
// (slow joiner, a reconnect, a full queue), so when no publication arrived for
// a few seconds the subscriber asks the registry directly (kClusterMap) once
// per poll interval until publications resume; it also asks once at start so
// the first map does not wait for the next publication.
//
// The publication format lives here too, since this is its only reader:
// frames [topic "clustermap"][header], header = EncodeHeader(reply type of
// kClusterMap, request id 0, ClusterMap::Encode()).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <zmq.hpp>

#include "src/cluster_map.h"
#include "src/status.h"

namespace shardfs {

inline constexpr std::string_view kClusterMapTopic = "clustermap";

// The header frame of a publication, and back (validated like any header).
std::string EncodeClusterMapPublication(const ClusterMap& map);
Result<ClusterMap> DecodeClusterMapPublication(std::string_view header);

// tcp://HOST:PORT -> tcp://HOST:PORT+1.
Result<std::string> PublishEndpointFor(std::string_view registry_endpoint);

// Start/Stop belong to the owner's thread; Current/WaitFor are thread-safe.
// The callback runs on the subscriber's thread; it must not call Stop().
class ClusterMapSubscriber {
 public:
  struct Options {
    std::string registry_endpoint;  // request socket, for polling
    std::string publish_endpoint;   // empty: registry PORT+1
    std::chrono::milliseconds poll_after{3000};
    std::chrono::milliseconds poll_interval{1000};
    std::chrono::milliseconds rpc_timeout{1000};
  };
  using Callback = std::function<void(const std::shared_ptr<const ClusterMap>&)>;

  // `context` must outlive the subscriber.
  ClusterMapSubscriber(zmq::context_t& context, Options options, Callback on_change = nullptr);
  ~ClusterMapSubscriber();
  ClusterMapSubscriber(const ClusterMapSubscriber&) = delete;
  ClusterMapSubscriber& operator=(const ClusterMapSubscriber&) = delete;

  Status Start();
  void Stop();

  // The latest map; null before the first one arrived.
  std::shared_ptr<const ClusterMap> Current() const;
  // Waits until a map satisfying `pred` arrives; returns it, or null on timeout.
  std::shared_ptr<const ClusterMap> WaitFor(const std::function<bool(const ClusterMap&)>& pred,
                                            std::chrono::milliseconds timeout) const;

  uint64_t publications() const { return publications_.load(); }
  uint64_t polls() const { return polls_.load(); }

 private:
  void Loop();
  void Accept(ClusterMap map);

  zmq::context_t& context_;
  Options options_;
  Callback on_change_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::shared_ptr<const ClusterMap> current_;  // guarded by mu_
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> publications_{0};
  std::atomic<uint64_t> polls_{0};
  std::thread thread_;
};

}  // namespace shardfs
