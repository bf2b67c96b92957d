// PeerQuota: how much one peer of a server may have outstanding at once.
//
// A server's socket thread admits a request before queueing it and releases
// it once the reply has been handed back to the socket. Each peer (a ROUTER
// routing id: one connection) may have at most `max_requests_per_peer`
// requests and `max_bytes_per_peer` request bytes outstanding, and all peers
// together at most `max_bytes_total`, so one peer that pipelines without
// waiting cannot fill the queue that everyone else shares, and the queue's
// memory is bounded in bytes and not just in messages. A request that is the
// only one of its peer (or the only one at all) is always admitted as far as
// bytes go, so any single message the server accepts at all can be served.
// What happens to a refused request is the caller's choice (RpcServer answers
// kBusy). Peers with nothing outstanding take no memory.
//
// Not thread-safe: owned by one thread (RpcServer's socket thread).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace shardfs {

class PeerQuota {
 public:
  struct Limits {
    size_t max_requests_per_peer = 64;
    size_t max_bytes_per_peer = 128u << 20;
    size_t max_bytes_total = 1u << 30;
  };

  enum class Verdict {
    kAdmitted,
    kPeerRequests,  // the peer has max_requests_per_peer outstanding
    kPeerBytes,     // the peer's outstanding bytes would pass max_bytes_per_peer
    kTotalBytes,    // all peers' bytes would pass max_bytes_total
  };

  explicit PeerQuota(Limits limits) : limits_(limits) {}

  // Counts the request against `peer` if the limits allow it.
  Verdict Admit(std::string_view peer, size_t bytes);
  // Gives back what Admit() counted for one request of `peer`.
  void Release(std::string_view peer, size_t bytes);

  size_t requests(std::string_view peer) const;
  size_t bytes(std::string_view peer) const;
  size_t total_bytes() const { return total_bytes_; }
  // Peers with something outstanding.
  size_t peers() const { return peers_.size(); }

  // Words for an error reply or a log line.
  static const char* Explain(Verdict verdict);

 private:
  struct Usage {
    size_t requests = 0;
    size_t bytes = 0;
  };

  const Limits limits_;
  std::unordered_map<std::string, Usage> peers_;
  size_t total_bytes_ = 0;
};

}  // namespace shardfs
