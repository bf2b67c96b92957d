// ConnectionGuard: bounds what libzmq buffers for each connection of a server.
//
// libzmq hands a ROUTER socket only complete messages. The frames of a
// message whose last frame has not arrived yet (a peer that sends with
// ZMQ_SNDMORE and never finishes) sit in the connection's pipe, and the
// receive high-water mark does not stop them: it counts complete messages.
// ZMQ_MAXMSGSIZE bounds one frame, not their number. Replies to a peer that
// never reads pile up in the same way on the way out. Neither is visible
// through the socket API, so the guard measures them from the kernel's side:
// for every TCP connection accepted on the server's port it compares what the
// kernel received (TCP_INFO bytes_received, less what still waits in the
// socket buffer) with what the socket thread was handed from that connection
// (reported here per message, found by the message's source fd), and what the
// socket thread sent to it with what the peer acknowledged (bytes_acked).
// A connection holding more than `max_bytes_per_connection`, or the largest
// ones while all together hold more than `max_bytes_total`, is shut down
// (shutdown(2) on its fd): libzmq sees the connection end and frees its
// pipes; other connections are not touched. The counts are estimates from
// above for what arrived (framing is allowed for generously) and from below
// for what was sent, so a well-behaved peer is never dropped for framing.
//
// Connections are told apart by fd and peer address (ip:port): an fd reused
// by a new connection starts from zero.
//
// Threads: Received()/Sent() are called by the server's socket thread; the
// guard's own thread scans every `interval`. Both share the table under mu_.
// A scan costs a few system calls per open fd of the process, so with
// thousands of connections it takes milliseconds of one core.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

namespace shardfs {

class ConnectionGuard {
 public:
  struct Limits {
    uint64_t max_bytes_per_connection = 96u << 20;
    uint64_t max_bytes_total = 512u << 20;
    std::chrono::milliseconds interval{200};
  };

  // What a reply needs to be counted against the connection its request
  // came from (and not against a later connection that reuses the fd).
  struct Ticket {
    int fd = -1;
    uint64_t serial = 0;
  };

  // `port`: the TCP port the server listens on; its accepted connections
  // are the ones watched.
  ConnectionGuard(uint16_t port, Limits limits);
  ~ConnectionGuard();
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;

  // Starts the scanning thread (Scan() also works without it).
  void Start();
  void Stop();

  // A complete message of `frames` frames and `bytes` bytes (routing id not
  // included) arrived from the connection on `fd`, whose ROUTER routing id is
  // `routing_id`.
  Ticket Received(int fd, std::string_view routing_id, uint64_t bytes, uint64_t frames);
  // A message of `frames` frames and `bytes` bytes went to the connection of
  // `ticket`.
  void Sent(const Ticket& ticket, uint64_t bytes, uint64_t frames);

  // One pass over the connections; drops those over the limits. Returns how
  // many it dropped.
  size_t Scan();

  uint64_t dropped() const { return dropped_.load(); }
  // The largest total seen by a scan, in bytes.
  uint64_t peak_total() const { return peak_total_.load(); }

 private:
  struct Entry {
    std::string routing_id;
    std::string address;
    uint64_t serial = 0;
    uint64_t received_bytes = 0;
    uint64_t received_frames = 0;
    uint64_t sent_bytes = 0;
    uint64_t epoch = 0;  // the scan epoch of the last Received()
  };

  void Loop();

  const uint16_t port_;
  const Limits limits_;

  std::mutex mu_;
  std::unordered_map<int, Entry> entries_;  // by fd; guarded by mu_
  uint64_t next_serial_ = 0;                // guarded by mu_
  uint64_t epoch_ = 0;                      // guarded by mu_

  std::mutex run_mu_;
  std::condition_variable run_cv_;
  bool stopping_ = false;  // guarded by run_mu_
  std::thread thread_;

  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> peak_total_{0};
  std::mutex scan_mu_;  // one Scan() at a time (the thread's, or a test's)
  std::chrono::steady_clock::time_point last_log_{};  // guarded by scan_mu_
  uint64_t unlogged_drops_ = 0;                       // guarded by scan_mu_
};

// The TCP port of a bound endpoint such as "tcp://0.0.0.0:7000"; 0 if none.
uint16_t PortOfEndpoint(std::string_view endpoint);

}  // namespace shardfs
