// Socket security: ZeroMQ CURVE with the cluster key on every TCP socket.
//
// Every member of a cluster holds the same CURVE keypair (src/cluster_key.h).
// A socket that binds (a server's ROUTER, the registry's PUB) is a CURVE
// server with the key's secret half; a socket that connects (every DEALER,
// the cluster-map SUB) is a CURVE client that expects the server to hold
// that key and presents the same pair as its own. On top of the handshake,
// which already fails for anyone without the secret, each context that has a
// server socket runs a ZAP handler (ZeroMQ's authentication hook,
// inproc://zeromq.zap.01, one per context) that admits only clients whose
// public key is the cluster's. Everything after the handshake is encrypted.
//
// The key belongs to the process: main() sets it once (SetProcessClusterKey)
// before making sockets, because every program is a member of exactly one
// cluster and the sockets are made deep inside the clients and servers. A
// test may give one context a key of its own (ScopedContextKey) to play a
// member of another cluster, or an outsider. With no key (--insecure, or
// nothing set, as in unit tests) sockets are plain TCP.
//
// A failed CURVE handshake looks to ZeroMQ like a connection that never
// completes, so the two sides watch their sockets' handshakes (socket
// monitors): a client's HandshakeWatch turns "could not connect" into why
// (see RpcChannel), and the server logs every refused peer with its address,
// at most once per 10 s per address and reason.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "src/cluster_key.h"
#include "src/status.h"

namespace shardfs {

// The process-wide key; nullopt for plain TCP. Thread-safe, but sockets
// made before the call keep what they had: call it first thing in main().
void SetProcessClusterKey(std::optional<ClusterKey> key);

// Gives `context` its own key (or none: plain TCP), overriding the process
// key, for as long as this object lives. Must outlive every socket made in
// the context. For tests that need two clusters in one process.
class ScopedContextKey {
 public:
  ScopedContextKey(zmq::context_t& context, std::optional<ClusterKey> key);
  ~ScopedContextKey();
  ScopedContextKey(const ScopedContextKey&) = delete;
  ScopedContextKey& operator=(const ScopedContextKey&) = delete;

 private:
  void* context_;
};

// True when sockets made in `context` use CURVE.
bool ContextIsSecure(zmq::context_t& context);

// Makes a connecting socket a CURVE client when the context has a key. Call
// before connect(), on the thread that owns the socket.
Status SecureClientSocket(zmq::context_t& context, zmq::socket_t& socket);

// The context's ZAP handler and the watcher of its server sockets: one
// thread per context, shared by every server socket in it and stopped when
// the last one lets go. Opaque to callers; they only hold it.
class Authenticator;

// Makes a binding socket a CURVE server when the context has a key, and
// makes sure the context's ZAP handler runs before the socket can take a
// connection. Call before bind(), on the thread that owns the socket.
// `name` says which socket it is in the log ("registry requests").
// The returned handle (null without a key) must be kept until the socket is
// closed, and released before the context is destroyed: the handler's own
// sockets would otherwise keep the context from terminating.
Result<std::shared_ptr<Authenticator>> SecureServerSocket(zmq::context_t& context,
                                                          zmq::socket_t& socket,
                                                          const std::string& name);

// Watches a connecting socket's connections until the first handshake
// succeeds, so that a call that never got connected can say why: a server
// that refused our key, one that speaks plain TCP (or we do), or one that
// dropped us mid-handshake (it has another key). Owned by the thread that
// owns the socket; made and read on it.
class HandshakeWatch {
 public:
  // Starts watching `socket` (before it connects). Null if a monitor cannot
  // be set up: the watch is an aid to error messages, never a requirement.
  static std::unique_ptr<HandshakeWatch> Start(zmq::context_t& context, zmq::socket_t& socket);
  ~HandshakeWatch();
  HandshakeWatch(const HandshakeWatch&) = delete;
  HandshakeWatch& operator=(const HandshakeWatch&) = delete;

  // Ends the watch on a socket that is still open and stays in use (its
  // handshake succeeded), so no events pile up for it.
  void Stop(zmq::socket_t& socket);

  // Reads the events so far; if they show the security handshake failing,
  // says why in words for an operator, else returns nullopt.
  std::optional<std::string> Explain();

 private:
  HandshakeWatch(std::unique_ptr<zmq::socket_t> events, bool secure);

  std::unique_ptr<zmq::socket_t> events_;  // PAIR connected to the monitor
  const bool secure_;                      // we run CURVE
  bool stopped_ = false;
  bool in_handshake_ = false;     // connected, handshake not over
  int dropped_in_handshake_ = 0;  // connections the server closed mid-handshake
  bool succeeded_ = false;
  std::optional<int> auth_failure_;      // ZAP status code the server sent
  std::optional<int> protocol_failure_;  // ZMQ_PROTOCOL_ERROR_*
};

}  // namespace shardfs
