// RegistryLink: a node server's membership in the cluster.
//
// Given a registry endpoint (--registry, else $SHARDFS_REGISTRY, else the
// beacon), the link registers the node and then heartbeats every second with
// the node's current usage, all on its own thread, so the node serves
// requests from its first second whether or not a registry is reachable.
// It registers again whenever the registry answers known=false (it
// restarted) or after a run of failed heartbeats (it was away and may come
// back empty). When the endpoint came from a beacon and the registry stays
// silent, the link goes back to listening, so a registry that moved is found
// again.
//
// A node listening on every interface (tcp://0.0.0.0:PORT) advertises the
// local address it uses to reach the registry, which is the address other
// machines on that network can reach it at.
//
// The link also carries the node's bad-replica reports (shards its scrubber
// found corrupt): ReportBadReplica() only queues one, and the link's thread
// sends the queue between heartbeats, because the link's socket belongs to
// that thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "protocol/beacon.h"
#include "protocol/registry_messages.h"
#include "src/shard_key.h"
#include "src/status.h"

namespace shardfs {

// `flag` if non-empty, else $SHARDFS_REGISTRY, else "" (discover by beacon).
std::string RegistryEndpointFromFlagOrEnv(std::string_view flag);

// Start/Stop belong to the node server's main thread; ReportBadReplica and
// the getters are thread-safe.
class RegistryLink {
 public:
  // What the node reports about itself. Called on the link's thread before
  // every registration and heartbeat, so it must be thread-safe and quick.
  struct NodeReport {
    std::string node_id;
    std::string endpoint;  // as bound; a wildcard host is filled in by the link
    std::string host;      // empty: gethostname()
    uint64_t capacity = 0;
    uint64_t used = 0;
    uint64_t shard_count = 0;
  };
  using ReportFn = std::function<NodeReport()>;

  struct Options {
    std::string registry_endpoint;  // empty: $SHARDFS_REGISTRY, then the beacon
    std::string cluster = "shardfs";
    uint16_t beacon_port = kDefaultBeaconPort;
    std::chrono::milliseconds heartbeat_interval{1000};
    std::chrono::milliseconds rpc_timeout{2000};
    // Consecutive failed heartbeats after which the node registers again
    // (and, with a discovered endpoint, listens for the beacon again).
    int failures_before_reset = 3;
    // Bad-replica reports waiting to be sent; past this the oldest is
    // dropped (the next scrub pass finds that shard again).
    size_t max_queued_reports = 1024;
    // Sends of one report that got no answer before it is dropped. Reports
    // are only sent while heartbeats get through, so an outage of the
    // registry does not use these up: they wait in the queue.
    int report_attempts = 3;
  };

  // `context` must outlive the link.
  RegistryLink(zmq::context_t& context, Options options, ReportFn report);
  ~RegistryLink();
  RegistryLink(const RegistryLink&) = delete;
  RegistryLink& operator=(const RegistryLink&) = delete;

  // Starts the thread and returns at once.
  Status Start();
  // Stops the thread; waits at most for one RPC deadline.
  void Stop();

  bool registered() const { return registered_.load(); }
  // The registry's epoch in its last reply (0 before the first).
  uint64_t epoch() const { return epoch_.load(); }
  // The endpoint in use ("" while discovering).
  std::string registry_endpoint() const;
  // The node endpoint last sent to the registry (wildcard filled in).
  std::string advertised_endpoint() const;
  // Successful registrations so far (a re-registration counts again).
  uint64_t registrations() const { return registrations_.load(); }

  // Queues a report that this node's replica of `key` is bad, for the link's
  // thread to send to the registry (kReportBadReplica). Returns at once,
  // from any thread; the same key is queued only once.
  void ReportBadReplica(const ShardKey& key, std::string reason);
  // Reports the registry has acknowledged so far.
  uint64_t reports_sent() const { return reports_sent_.load(); }

 private:
  void Loop();
  bool Discover();  // true once an endpoint is known
  Status Register();
  Status Heartbeat();
  NodeReport CurrentReport();
  // Sends queued reports until the queue is empty, a send gets no answer,
  // or `until` has passed (the next heartbeat is due).
  void SendQueuedReports(std::chrono::steady_clock::time_point until);
  // Sleeps up to `d`; false when stopping.
  bool SleepFor(std::chrono::milliseconds d);
  bool stopping();

  struct QueuedReport {
    uint64_t id = 0;  // tells a report from a later one of the same key
    ShardKey key;
    std::string reason;
    int failed_sends = 0;
  };

  zmq::context_t& context_;
  const Options options_;
  ReportFn report_;
  const bool discover_;  // no endpoint was configured

  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;   // guarded by mu_
  std::string endpoint_;    // guarded by mu_
  std::string advertised_;  // guarded by mu_
  std::atomic<bool> registered_{false};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> registrations_{0};

  std::mutex reports_mu_;
  std::deque<QueuedReport> reports_;  // guarded by reports_mu_, oldest first
  uint64_t next_report_id_ = 0;       // guarded by reports_mu_
  std::atomic<uint64_t> reports_sent_{0};

  // Used only on the link's thread.
  class State;
  std::unique_ptr<State> state_;
};

}  // namespace shardfs
