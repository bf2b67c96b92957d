#include "src/rpc_channel.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace shardfs {
namespace {

constexpr size_t kMaxIdleSockets = 64;
constexpr std::chrono::milliseconds kConnectTimeout{1000};
constexpr std::string_view kNotConnectedPrefix = "cannot connect to ";

using Clock = std::chrono::steady_clock;

// State of one in-flight request of a batch.
struct InFlight {
  PooledSocket socket;
  uint64_t request_id = 0;
  bool done = false;
};

// The error of a call that never got a connection: why, when the socket's
// handshake events tell (a key problem is for the operator, not a retry),
// else the plain "cannot connect".
Status NotConnected(const std::string& endpoint, PooledSocket& socket) {
  if (socket.watch) {
    if (auto why = socket.watch->Explain()) {
      return Status::Error(ErrorCode::kUnauthenticated,
                           std::string(kNotConnectedPrefix) + endpoint + ": " + *why);
    }
  }
  return Status::Error(ErrorCode::kUnavailable, std::string(kNotConnectedPrefix) + endpoint);
}

bool SendRequest(zmq::socket_t& socket, const RpcCall& call, uint64_t request_id) {
  std::string header = EncodeHeader(call.type, request_id, *call.fields);
  // Sockets are created with ZMQ_IMMEDIATE, so a send only queues once a
  // connection exists; dontwait keeps a dead server from blocking us here.
  try {
    auto flags = call.has_payload ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                  : zmq::send_flags::dontwait;
    if (!socket.send(zmq::buffer(header), flags)) return false;
    if (call.has_payload) {
      if (!socket.send(zmq::buffer(call.payload.data(), call.payload.size()),
                       zmq::send_flags::dontwait)) {
        return false;
      }
    }
  } catch (const zmq::error_t&) {
    return false;
  }
  return true;
}

// Reads one reply from a ready socket. Returns nullopt for a stale reply
// (a different request id) that should simply be skipped.
std::optional<Result<RpcResponse>> ReadReply(zmq::socket_t& socket, uint64_t request_id,
                                             MessageType request_type) {
  std::vector<zmq::message_t> frames;
  try {
    (void)zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait);
  } catch (const zmq::error_t& e) {
    return Result<RpcResponse>(Status::Error(ErrorCode::kIoError, e.what()));
  }
  if (frames.empty()) return std::nullopt;
  if (frames.size() > 2) {
    return Result<RpcResponse>(Status::Error(ErrorCode::kBadMessage, "reply has too many frames"));
  }
  auto header =
      DecodeHeader(std::string_view(static_cast<const char*>(frames[0].data()), frames[0].size()));
  if (!header.ok()) return Result<RpcResponse>(header.status());
  if (header->request_id != request_id) {
    // An error about an undecodable request carries id 0 and is ours.
    if (!(header->request_id == 0 && header->IsError())) return std::nullopt;
  }
  if (header->IsError()) return Result<RpcResponse>(StatusFromErrorFields(header->fields));
  if (header->type != ReplyTypeOf(request_type)) {
    return Result<RpcResponse>(Status::Error(ErrorCode::kBadMessage, "reply of the wrong type"));
  }
  RpcResponse response;
  response.header = std::move(*header);
  if (frames.size() == 2) {
    response.has_payload = true;
    response.payload = std::move(frames[1]);
  }
  return Result<RpcResponse>(std::move(response));
}

}  // namespace

bool IsNotConnected(const Status& status) {
  return status.code() == ErrorCode::kUnavailable &&
         status.message().rfind(kNotConnectedPrefix, 0) == 0;
}

bool IsKeyRefused(const Status& status) {
  return status.code() == ErrorCode::kUnauthenticated &&
         status.message().rfind(kNotConnectedPrefix, 0) == 0;
}

uint64_t NextRequestId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

RpcChannel::RpcChannel(zmq::context_t& context, std::string endpoint)
    : context_(context), endpoint_(std::move(endpoint)) {}

RpcChannel::~RpcChannel() = default;

PooledSocket RpcChannel::Borrow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      return s;
    }
  }
  PooledSocket s;
  s.socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  zmq::socket_t& socket = *s.socket;
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::immediate, 1);
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxPayloadBytes + 4096));
  if (Status st = SecureClientSocket(context_, socket); !st.ok()) {
    // The server refuses the plain connection and the call says so.
    spdlog::error("rpc: {}", st.ToString());
  }
  s.watch = HandshakeWatch::Start(context_, socket);
  socket.connect(endpoint_);
  return s;
}

void RpcChannel::GiveBack(PooledSocket socket) {
  // A reply came, so the handshake is done: stop watching a socket that
  // may live long in the pool.
  if (socket.watch) {
    socket.watch->Stop(*socket.socket);
    socket.watch.reset();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < kMaxIdleSockets) idle_.push_back(std::move(socket));
}

Result<RpcResponse> RpcChannel::Call(MessageType type, const FieldWriter& fields,
                                     std::chrono::milliseconds timeout, std::string_view payload,
                                     bool has_payload) {
  RpcCall call;
  call.channel = this;
  call.type = type;
  call.fields = &fields;
  call.payload = payload;
  call.has_payload = has_payload;
  return std::move(RunBatch(std::span<RpcCall>(&call, 1), 1, timeout)[0]);
}

std::vector<Result<RpcResponse>> RpcChannel::CallAll(std::span<RpcCall> calls,
                                                     std::chrono::milliseconds timeout) {
  return RunBatch(calls, calls.size(), timeout);
}

std::vector<Result<RpcResponse>> RpcChannel::CallUntil(std::span<RpcCall> calls, size_t enough,
                                                       std::chrono::milliseconds timeout) {
  return RunBatch(calls, enough, timeout);
}

std::vector<Result<RpcResponse>> RpcChannel::RunBatch(std::span<RpcCall> calls, size_t enough,
                                                      std::chrono::milliseconds timeout) {
  const auto begin = Clock::now();
  const auto deadline = begin + timeout;
  const size_t n = calls.size();
  std::vector<std::optional<Result<RpcResponse>>> results(n);
  std::vector<InFlight> flights(n);
  std::vector<bool> started(n, false);
  std::vector<bool> sent(n, false);
  size_t succeeded = 0;
  size_t finished = 0;
  size_t in_progress = 0;

  // A server that has not even accepted a connection within this long is
  // taken for dead: its call fails now instead of holding up the batch.
  const auto connect_timeout = std::min(timeout, kConnectTimeout);
  std::vector<Clock::time_point> started_at(n);
  while (finished < n && succeeded < enough) {
    auto now = Clock::now();
    if (now >= deadline) break;
    for (size_t i = 0; i < n; ++i) {
      if (started[i] && !sent[i] && !flights[i].done && now - started_at[i] >= connect_timeout) {
        flights[i].done = true;
        results[i] =
            Result<RpcResponse>(NotConnected(calls[i].channel->endpoint(), flights[i].socket));
        flights[i].socket.reset();
        ++finished;
        --in_progress;
      }
    }
    if (finished >= n) break;
    // Start the calls whose time has come, or the next one when nothing else
    // is still going.
    auto next_start = deadline;
    for (size_t i = 0; i < n; ++i) {
      if (started[i]) continue;
      if (now - begin >= calls[i].start_after || in_progress == 0) {
        started[i] = true;
        ++in_progress;
        flights[i].socket = calls[i].channel->Borrow();
        flights[i].request_id = NextRequestId();
        started_at[i] = now;
        // A pooled socket is usually connected: sent now, the first poll
        // already waits for the reply (one poll per call instead of two).
        // A new socket has no connection yet and fails here harmlessly.
        sent[i] = SendRequest(*flights[i].socket.socket, calls[i], flights[i].request_id);
      } else {
        next_start = std::min(next_start, begin + calls[i].start_after);
      }
    }
    std::vector<zmq::pollitem_t> items;
    std::vector<size_t> index;
    for (size_t i = 0; i < n; ++i) {
      if (!started[i] || flights[i].done) continue;
      // Sending waits for a connection (ZMQ_IMMEDIATE): POLLOUT until sent,
      // then POLLIN for the reply.
      short events = sent[i] ? ZMQ_POLLIN : ZMQ_POLLOUT;
      items.push_back({flights[i].socket.socket->handle(), 0, events, 0});
      index.push_back(i);
    }
    auto wake = std::min(deadline, next_start);
    for (size_t i = 0; i < n; ++i) {
      if (started[i] && !sent[i] && !flights[i].done) {
        wake = std::min(wake, started_at[i] + connect_timeout);
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now);
    try {
      zmq::poll(items.data(), items.size(), std::max(left, std::chrono::milliseconds(1)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    for (size_t k = 0; k < items.size(); ++k) {
      size_t i = index[k];
      if (!sent[i] && (items[k].revents & ZMQ_POLLOUT)) {
        if (SendRequest(*flights[i].socket.socket, calls[i], flights[i].request_id)) sent[i] = true;
        continue;
      }
      if (sent[i] && (items[k].revents & ZMQ_POLLIN)) {
        auto reply = ReadReply(*flights[i].socket.socket, flights[i].request_id, calls[i].type);
        if (!reply) continue;  // stale, keep waiting
        flights[i].done = true;
        ++finished;
        --in_progress;
        // A well-formed reply (even an error) leaves the socket clean.
        if (reply->ok() || (reply->status().code() != ErrorCode::kBadMessage &&
                            reply->status().code() != ErrorCode::kIoError)) {
          calls[i].channel->GiveBack(std::move(flights[i].socket));
        }
        if (reply->ok()) ++succeeded;
        results[i] = std::move(*reply);
      }
    }
  }
  std::vector<Result<RpcResponse>> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (results[i]) {
      out.push_back(std::move(*results[i]));
    } else if (!started[i]) {
      out.push_back(Status::Error(ErrorCode::kUnavailable, "not sent: enough replies came"));
    } else {
      // Never sent means never connected: the caller may safely try again,
      // even a request that is not idempotent.
      out.push_back(sent[i] ? Status::Error(ErrorCode::kTimeout,
                                            "no reply from " + calls[i].channel->endpoint())
                            : NotConnected(calls[i].channel->endpoint(), flights[i].socket));
      // The socket may still receive the late reply: drop it rather than
      // return it to the pool.
      flights[i].socket.reset();
    }
  }
  return out;
}

}  // namespace shardfs
