// RpcChannel: requests to one server endpoint, with deadlines.
//
// Each call borrows a DEALER socket from the channel's pool and returns it
// afterwards, so connections are reused and many threads can call at once.
// Every call has a deadline; a socket whose call timed out is closed, not
// reused, so a late reply can never be mistaken for the answer to a later
// request. CallAll() sends several requests (to one or many servers) at once
// and waits for all of them under one deadline: the building block of
// parallel shard transfers and hedged reads.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol/envelope.h"
#include "src/socket_security.h"
#include "src/status.h"

namespace shardfs {

struct RpcResponse {
  Envelope header;
  bool has_payload = false;
  zmq::message_t payload;

  std::string_view payload_view() const {
    return std::string_view(static_cast<const char*>(payload.data()), payload.size());
  }
};

class RpcChannel;

// One request of a CallAll batch.
struct RpcCall {
  RpcChannel* channel = nullptr;
  MessageType type{};
  // Not owned; must outlive the call.
  const FieldWriter* fields = nullptr;
  // Bytes for the payload frame; not owned, must outlive the call.
  std::string_view payload;
  bool has_payload = false;
  // Hedging: not sent before this much time has passed since the batch
  // began, unless every call started before it has already failed.
  std::chrono::milliseconds start_after{0};
};

// A pooled DEALER socket, and while its first handshake has not succeeded,
// the watch that can tell why it failed (a wrong or missing cluster key).
struct PooledSocket {
  std::unique_ptr<zmq::socket_t> socket;
  std::unique_ptr<HandshakeWatch> watch;

  explicit operator bool() const { return socket != nullptr; }
  void reset() {
    watch.reset();
    socket.reset();
  }
};

// Thread-safe. Owned by whoever owns the connection to that server (a
// NodeClient, a RegistryClient); `context` must outlive it. Sockets use the
// context's cluster key (src/socket_security.h); a server that does not
// complete the CURVE handshake within the connect timeout is kUnauthenticated
// when the handshake's events show why (refused key, no key on one side, a
// different key), else kUnavailable like any server that cannot be reached.
class RpcChannel {
 public:
  RpcChannel(zmq::context_t& context, std::string endpoint);
  ~RpcChannel();
  RpcChannel(const RpcChannel&) = delete;
  RpcChannel& operator=(const RpcChannel&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // Sends one request and waits for its reply. An error reply becomes its
  // Status; no reply before the deadline is kTimeout, and no connection
  // before the deadline (the request was never sent) is kUnavailable.
  Result<RpcResponse> Call(MessageType type, const FieldWriter& fields,
                           std::chrono::milliseconds timeout, std::string_view payload = {},
                           bool has_payload = false);

  // Sends every call at once and waits for all replies (or the deadline).
  // Results are in the order of `calls`.
  static std::vector<Result<RpcResponse>> CallAll(std::span<RpcCall> calls,
                                                  std::chrono::milliseconds timeout);

  // Like CallAll, but returns as soon as `enough` calls have succeeded; the
  // rest are abandoned (their sockets closed) and reported as kTimeout, or
  // kUnavailable when they were never sent. With start_after set on the
  // calls this is a hedged request: the next copy goes out when the earlier
  // ones are slow or have failed.
  static std::vector<Result<RpcResponse>> CallUntil(std::span<RpcCall> calls, size_t enough,
                                                    std::chrono::milliseconds timeout);

 private:
  static std::vector<Result<RpcResponse>> RunBatch(std::span<RpcCall> calls, size_t enough,
                                                   std::chrono::milliseconds timeout);
  PooledSocket Borrow();
  void GiveBack(PooledSocket socket);

  zmq::context_t& context_;
  const std::string endpoint_;
  std::mutex mu_;
  std::vector<PooledSocket> idle_;  // guarded by mu_
};

// True for the error a call gets when no connection to the server could be
// made: the request was never sent, so even a mutation may be sent again. A
// server's own kUnavailable reply ("too few live nodes") is not this, nor is
// a refused handshake (kUnauthenticated), which trying again will not mend.
bool IsNotConnected(const Status& status);

// True for the error a call gets when the server and this process do not
// share the cluster key (never sent either).
bool IsKeyRefused(const Status& status);

// Unique across the process, so replies can be matched to requests.
uint64_t NextRequestId();

}  // namespace shardfs
