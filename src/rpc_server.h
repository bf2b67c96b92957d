// RpcServer: one ZeroMQ ROUTER socket served by a pool of worker threads.
//
// Both daemons serve their protocol through it. The socket thread only moves
// frames: it decodes headers (cheap, bounded), answers malformed messages with
// an error at once, and queues well-formed requests for the workers, so one
// slow disk request never stalls the others. The daemon may let it answer
// requests that never block itself (Options::answer_inline, try_inline),
// which spares the two thread hand-offs to a worker and back. Workers hand finished replies
// back over an inproc socket, because a ZeroMQ socket belongs to one thread.
// A full queue is answered with kBusy instead of growing without bound.
// With a cluster key the ROUTER is a CURVE server and only members connect
// (src/socket_security.h).
//
// Limits, so that no peer (a member with the key, or anyone with --insecure)
// can take the server's memory or its workers from the others:
// - each frame is at most max_payload plus slack (ZMQ_MAXMSGSIZE: libzmq
//   drops the connection before allocating a larger one);
// - a connection that has not finished its handshake after
//   handshake_timeout is dropped, and so is one whose peer is gone without
//   a FIN (TCP keepalive);
// - each peer (connection) has at most max_requests_per_peer requests and
//   max_bytes_per_peer request bytes queued or in a worker, all peers
//   together max_queued requests and max_queued_bytes bytes (PeerQuota); past
//   that a request is answered kBusy at once;
// - what libzmq buffers per connection below the socket API (the frames of a
//   message not finished yet, replies the peer does not read) is bounded by
//   max_buffered_per_connection and max_buffered_total (ConnectionGuard):
//   a connection past them is dropped, the others are not touched.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol/envelope.h"
#include "src/connection_guard.h"
#include "src/peer_quota.h"
#include "src/socket_security.h"
#include "src/status.h"

namespace shardfs {

struct RpcRequest {
  Envelope header;
  bool has_payload = false;
  zmq::message_t payload;
  MessageType type() const { return static_cast<MessageType>(header.type); }
};

struct RpcReply {
  uint16_t type = 0;
  FieldWriter fields;
  bool has_payload = false;
  zmq::message_t payload;

  static RpcReply Error(const Status& status);
  static RpcReply Ok(MessageType request_type, FieldWriter fields = FieldWriter());
  static RpcReply WithPayload(MessageType request_type, FieldWriter fields, zmq::message_t payload);
};

// Called on a worker thread; must be thread-safe.
using RpcHandler = std::function<RpcReply(RpcRequest& request)>;

class RpcServer {
 public:
  struct Options {
    std::string endpoint;  // tcp://HOST:PORT; port 0 picks a free one
    int workers = 4;
    size_t max_queued = 4096;  // requests waiting for a worker
    size_t max_payload = kMaxPayloadBytes;
    size_t max_requests_per_peer = 64;
    size_t max_bytes_per_peer = 128u << 20;
    size_t max_queued_bytes = 1u << 30;
    // 0: max_payload + kMaxHeaderBytes + 1 MiB, one largest message.
    size_t max_buffered_per_connection = 0;
    // Raised to max_buffered_per_connection if smaller.
    size_t max_buffered_total = 256u << 20;
    // Connections the kernel may hold for the socket's accept (capped by
    // net.core.somaxconn): a burst of connects is queued, not refused.
    int accept_backlog = 4096;
    std::chrono::milliseconds guard_interval{200};
    std::chrono::milliseconds handshake_timeout{10000};
    // TCP keepalive: a peer gone without a FIN is dropped after
    // idle + count * interval. Kernel probes carry no data, unlike ZMTP
    // heartbeats, whose PONGs ConnectionGuard could not tell from an
    // unfinished message.
    std::chrono::seconds keepalive_idle{30};
    std::chrono::seconds keepalive_interval{10};
    int keepalive_count = 3;
    // Requests the socket thread answers itself instead of queueing them for
    // a worker: only cheap ones that never block (in-memory reads). Called
    // on the socket thread; null: every request goes to a worker.
    std::function<bool(const RpcRequest&)> answer_inline = nullptr;
    // For requests that are cheap only sometimes (a read whose bytes are in
    // the page cache): called on the socket thread for every well-formed
    // request answer_inline did not take. Returns the reply when it could
    // answer at once without blocking; nullopt queues the request for a
    // worker as usual, and must leave it as it was. Null: not tried.
    std::function<std::optional<RpcReply>(RpcRequest&)> try_inline = nullptr;
  };

  // `context` must outlive the server.
  RpcServer(zmq::context_t& context, Options options, RpcHandler handler);
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  // Binds and starts the threads. Fails if the endpoint cannot be bound.
  Status Start();
  // Stops accepting, lets workers finish their current request, joins.
  void Stop();
  // The endpoint actually bound (with the real port when 0 was asked).
  const std::string& endpoint() const { return bound_endpoint_; }

 private:
  struct Job {
    zmq::message_t peer;
    RpcRequest request;
    size_t cost = 0;  // what PeerQuota counted for it
    ConnectionGuard::Ticket ticket;
  };
  // Travels with a reply from a worker to the socket thread, as its first
  // frame, so the socket thread can settle the request's accounts.
  struct ReplyNote {
    size_t cost = 0;
    ConnectionGuard::Ticket ticket;
  };

  void SocketLoop();
  void WorkerLoop(int index);
  // The handler's reply, or an internal error if it throws.
  RpcReply Run(RpcRequest& request);
  void HandleIncoming(zmq::socket_t& router);
  void ForwardReply(zmq::socket_t& replies);
  // Sends a reply made on the socket thread (answer_inline, try_inline).
  void SendInlineReply(zmq::socket_t& router, zmq::message_t& peer,
                       const ConnectionGuard::Ticket& ticket, uint64_t request_id, RpcReply& reply);
  void SendError(zmq::socket_t& router, zmq::message_t& peer, const ConnectionGuard::Ticket& ticket,
                 uint64_t request_id, const Status& status);

  zmq::context_t& context_;
  Options options_;
  RpcHandler handler_;
  std::string bound_endpoint_;
  std::string reply_endpoint_;
  std::string control_endpoint_;
  std::unique_ptr<zmq::socket_t> router_;  // bound in Start, used by the socket thread
  // The context's ZAP handler while router_ exists (null without a key).
  std::shared_ptr<Authenticator> authenticator_;
  std::unique_ptr<PeerQuota> quota_;        // the socket thread's
  std::unique_ptr<ConnectionGuard> guard_;  // made in Start, after the bind

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::atomic<bool> running_{false};

  std::thread socket_thread_;
  std::vector<std::thread> workers_;
};

}  // namespace shardfs
