#include "src/rpc_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "src/socket_security.h"

namespace shardfs {
namespace {

std::string UniqueInprocName(const char* what) {
  static std::atomic<uint64_t> counter{0};
  return "inproc://rpc-" + std::string(what) + "-" + std::to_string(counter.fetch_add(1));
}

zmq::message_t CopyMessage(const zmq::message_t& m) {
  return zmq::message_t(m.data(), m.size());
}

}  // namespace

RpcReply RpcReply::Error(const Status& status) {
  RpcReply r;
  r.type = static_cast<uint16_t>(MessageType::kError);
  r.fields = ErrorFields(status);
  return r;
}

RpcReply RpcReply::Ok(MessageType request_type, FieldWriter fields) {
  RpcReply r;
  r.type = ReplyTypeOf(request_type);
  r.fields = std::move(fields);
  return r;
}

RpcReply RpcReply::WithPayload(MessageType request_type, FieldWriter fields,
                               zmq::message_t payload) {
  RpcReply r = Ok(request_type, std::move(fields));
  r.has_payload = true;
  r.payload = std::move(payload);
  return r;
}

RpcServer::RpcServer(zmq::context_t& context, Options options, RpcHandler handler)
    : context_(context), options_(std::move(options)), handler_(std::move(handler)) {}

RpcServer::~RpcServer() {
  Stop();
}

Status RpcServer::Start() {
  try {
    router_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
    router_->set(zmq::sockopt::linger, 0);
    router_->set(zmq::sockopt::router_mandatory, false);
    // A peer cannot make us buffer more than this many outgoing messages.
    router_->set(zmq::sockopt::sndhwm, 10000);
    router_->set(zmq::sockopt::rcvhwm, 10000);
    // Per frame: a larger one ends the connection inside libzmq, before it
    // allocates anything for it. The header frame is smaller still.
    router_->set(zmq::sockopt::maxmsgsize,
                 static_cast<int64_t>(std::max(options_.max_payload, kMaxHeaderBytes) + 4096));
    // A connection that never finishes its greeting and handshake (a raw TCP
    // connection left open, a client without the key that stalls) is closed
    // after this, so half-open connections cannot pile up.
    router_->set(zmq::sockopt::handshake_ivl, static_cast<int>(options_.handshake_timeout.count()));
    router_->set(zmq::sockopt::backlog, options_.accept_backlog);
    // A peer that vanished without a FIN (a crashed host, a cut cable) is
    // dropped by the kernel's keepalive probes instead of holding its pipes.
    router_->set(zmq::sockopt::tcp_keepalive, 1);
    router_->set(zmq::sockopt::tcp_keepalive_idle,
                 static_cast<int>(options_.keepalive_idle.count()));
    router_->set(zmq::sockopt::tcp_keepalive_intvl,
                 static_cast<int>(options_.keepalive_interval.count()));
    router_->set(zmq::sockopt::tcp_keepalive_cnt, options_.keepalive_count);
    // Before bind: no connection may be taken without the cluster key.
    auto auth = SecureServerSocket(context_, *router_, "requests on " + options_.endpoint);
    if (!auth.ok()) {
      router_.reset();
      return auth.status();
    }
    authenticator_ = std::move(auth).value();
    router_->bind(options_.endpoint);
    bound_endpoint_ = router_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    router_.reset();
    authenticator_.reset();
    return Status::Error(ErrorCode::kUnavailable,
                         "cannot listen on " + options_.endpoint + ": " + e.what());
  }
  PeerQuota::Limits quota_limits;
  quota_limits.max_requests_per_peer = options_.max_requests_per_peer;
  quota_limits.max_bytes_per_peer = options_.max_bytes_per_peer;
  quota_limits.max_bytes_total = options_.max_queued_bytes;
  quota_ = std::make_unique<PeerQuota>(quota_limits);
  ConnectionGuard::Limits guard_limits;
  guard_limits.max_bytes_per_connection = options_.max_buffered_per_connection != 0
                                              ? options_.max_buffered_per_connection
                                              : options_.max_payload + kMaxHeaderBytes + (1u << 20);
  guard_limits.max_bytes_total =
      std::max<uint64_t>(options_.max_buffered_total, guard_limits.max_bytes_per_connection);
  guard_limits.interval = options_.guard_interval;
  guard_ = std::make_unique<ConnectionGuard>(PortOfEndpoint(bound_endpoint_), guard_limits);
  guard_->Start();
  reply_endpoint_ = UniqueInprocName("reply");
  control_endpoint_ = UniqueInprocName("control");
  running_ = true;
  // The reply and control sockets are bound by the socket thread before the
  // workers start: inproc needs the bind first.
  std::mutex ready_mu;
  std::condition_variable ready_cv;
  bool ready = false;
  socket_thread_ = std::thread([this, &ready_mu, &ready_cv, &ready] {
    zmq::socket_t replies(context_, zmq::socket_type::pull);
    replies.bind(reply_endpoint_);
    zmq::socket_t control(context_, zmq::socket_type::pull);
    control.bind(control_endpoint_);
    {
      std::lock_guard<std::mutex> lock(ready_mu);
      ready = true;
    }
    ready_cv.notify_all();
    zmq::pollitem_t items[] = {{router_->handle(), 0, ZMQ_POLLIN, 0},
                               {replies.handle(), 0, ZMQ_POLLIN, 0},
                               {control.handle(), 0, ZMQ_POLLIN, 0}};
    while (true) {
      zmq::poll(items, 3, std::chrono::milliseconds(-1));
      if (items[2].revents & ZMQ_POLLIN) break;
      if (items[1].revents & ZMQ_POLLIN) ForwardReply(replies);
      if (items[0].revents & ZMQ_POLLIN) HandleIncoming(*router_);
    }
    router_->close();
  });
  {
    std::unique_lock<std::mutex> lock(ready_mu);
    ready_cv.wait(lock, [&] { return ready; });
  }
  for (int i = 0; i < options_.workers; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
  return Status::Ok();
}

void RpcServer::Stop() {
  if (!running_.exchange(false)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  {
    zmq::socket_t control(context_, zmq::socket_type::push);
    control.set(zmq::sockopt::linger, 1000);
    control.connect(control_endpoint_);
    control.send(zmq::str_buffer("stop"), zmq::send_flags::none);
  }
  socket_thread_.join();
  guard_.reset();
  router_.reset();
  authenticator_.reset();  // after the socket it guards
}

void RpcServer::ForwardReply(zmq::socket_t& replies) {
  // [note][peer][header][payload?] from a worker.
  std::vector<zmq::message_t> frames;
  (void)zmq::recv_multipart(replies, std::back_inserter(frames));
  if (frames.size() < 3 || frames[0].size() != sizeof(ReplyNote)) return;  // cannot happen
  ReplyNote note;
  std::memcpy(&note, frames[0].data(), sizeof(note));
  quota_->Release(frames[1].to_string_view(), note.cost);
  uint64_t bytes = 0;
  for (size_t i = 2; i < frames.size(); ++i) bytes += frames[i].size();
  guard_->Sent(note.ticket, bytes, frames.size() - 2);
  for (size_t i = 1; i < frames.size(); ++i) {
    router_->send(frames[i],
                  i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::dontwait);
  }
}

void RpcServer::SendError(zmq::socket_t& router, zmq::message_t& peer,
                          const ConnectionGuard::Ticket& ticket, uint64_t request_id,
                          const Status& status) {
  std::string header =
      EncodeHeader(static_cast<uint16_t>(MessageType::kError), request_id, ErrorFields(status));
  guard_->Sent(ticket, header.size(), 1);
  zmq::message_t peer_copy = CopyMessage(peer);
  router.send(peer_copy, zmq::send_flags::sndmore);
  router.send(zmq::buffer(header), zmq::send_flags::dontwait);
}

void RpcServer::SendInlineReply(zmq::socket_t& router, zmq::message_t& peer,
                                const ConnectionGuard::Ticket& ticket, uint64_t request_id,
                                RpcReply& reply) {
  std::string reply_header = EncodeHeader(reply.type, request_id, reply.fields);
  guard_->Sent(ticket, reply_header.size() + (reply.has_payload ? reply.payload.size() : 0),
               reply.has_payload ? 2 : 1);
  router.send(peer, zmq::send_flags::sndmore);
  if (reply.has_payload) {
    router.send(zmq::buffer(reply_header), zmq::send_flags::sndmore);
    router.send(reply.payload, zmq::send_flags::dontwait);
  } else {
    router.send(zmq::buffer(reply_header), zmq::send_flags::dontwait);
  }
}

void RpcServer::HandleIncoming(zmq::socket_t& router) {
  std::vector<zmq::message_t> frames;
  try {
    (void)zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait);
  } catch (const zmq::error_t& e) {
    spdlog::warn("rpc: receive failed: {}", e.what());
    return;
  }
  if (frames.empty()) return;
  zmq::message_t& peer = frames[0];
  uint64_t bytes = 0;
  for (size_t i = 1; i < frames.size(); ++i) bytes += frames[i].size();
  const int source_fd = frames.size() > 1 ? zmq_msg_get(frames[1].handle(), ZMQ_SRCFD) : -1;
  const ConnectionGuard::Ticket ticket =
      guard_->Received(source_fd, peer.to_string_view(), bytes, frames.size() - 1);
  // A REQ-style client puts an empty delimiter first; tolerate and skip it.
  size_t first = 1;
  if (frames.size() > 2 && frames[1].size() == 0) first = 2;
  size_t parts = frames.size() - first;
  if (parts < 1 || parts > 2) {
    SendError(router, peer, ticket, 0,
              Status::Error(ErrorCode::kBadMessage, "a message has one or two frames"));
    return;
  }
  auto header = DecodeHeader(
      std::string_view(static_cast<const char*>(frames[first].data()), frames[first].size()));
  if (!header.ok()) {
    SendError(router, peer, ticket, 0, header.status());
    return;
  }
  if (header->version != kProtocolVersion) {
    SendError(router, peer, ticket, header->request_id,
              Status::Error(ErrorCode::kVersionMismatch,
                            "protocol version " + std::to_string(header->version) +
                                " is not supported (this server speaks " +
                                std::to_string(kProtocolVersion) + ")"));
    return;
  }
  if (parts == 2 && frames[first + 1].size() > options_.max_payload) {
    SendError(router, peer, ticket, header->request_id,
              Status::Error(ErrorCode::kTooLarge, "payload too large"));
    return;
  }
  const uint64_t request_id = header->request_id;
  if (options_.answer_inline || options_.try_inline) {
    RpcRequest request;
    request.header = std::move(*header);
    if (parts == 2) {
      request.has_payload = true;
      request.payload = std::move(frames[first + 1]);
    }
    // Cheap and never blocking: answered here, which spares two thread
    // hand-offs (to a worker and back) that cost more than the work.
    if (options_.answer_inline && options_.answer_inline(request)) {
      RpcReply reply = Run(request);
      SendInlineReply(router, peer, ticket, request_id, reply);
      return;
    }
    if (options_.try_inline) {
      std::optional<RpcReply> reply;
      try {
        reply = options_.try_inline(request);
      } catch (const std::exception& e) {
        // The worker's attempt reports it, if it fails again.
        spdlog::error("rpc: inline attempt for type {} threw: {}", request.header.type, e.what());
      }
      if (reply) {
        SendInlineReply(router, peer, ticket, request_id, *reply);
        return;
      }
    }
    *header = std::move(request.header);
    if (parts == 2) frames[first + 1] = std::move(request.payload);
  }
  const PeerQuota::Verdict verdict = quota_->Admit(peer.to_string_view(), bytes);
  if (verdict != PeerQuota::Verdict::kAdmitted) {
    SendError(router, peer, ticket, request_id,
              Status::Error(ErrorCode::kBusy, PeerQuota::Explain(verdict)));
    return;
  }
  Job job;
  job.peer = std::move(peer);
  job.request.header = std::move(*header);
  job.cost = bytes;
  job.ticket = ticket;
  if (parts == 2) {
    job.request.has_payload = true;
    job.request.payload = std::move(frames[first + 1]);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() < options_.max_queued) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  quota_->Release(job.peer.to_string_view(), job.cost);
  SendError(router, job.peer, ticket, request_id,
            Status::Error(ErrorCode::kBusy, "server queue is full"));
}

RpcReply RpcServer::Run(RpcRequest& request) {
  try {
    return handler_(request);
  } catch (const std::exception& e) {
    // A handler bug must not take the server down with it.
    spdlog::error("rpc: handler for type {} threw: {}", request.header.type, e.what());
    return RpcReply::Error(Status::Error(ErrorCode::kInternal, "internal error"));
  }
}

void RpcServer::WorkerLoop(int /*index*/) {
  zmq::socket_t out(context_, zmq::socket_type::push);
  out.set(zmq::sockopt::linger, 0);
  out.connect(reply_endpoint_);
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    RpcReply reply = Run(job.request);
    std::string header = EncodeHeader(reply.type, job.request.header.request_id, reply.fields);
    const ReplyNote note{job.cost, job.ticket};
    out.send(zmq::buffer(&note, sizeof(note)), zmq::send_flags::sndmore);
    out.send(job.peer, zmq::send_flags::sndmore);
    if (reply.has_payload) {
      out.send(zmq::buffer(header), zmq::send_flags::sndmore);
      out.send(reply.payload, zmq::send_flags::none);
    } else {
      out.send(zmq::buffer(header), zmq::send_flags::none);
    }
  }
}

}  // namespace shardfs
