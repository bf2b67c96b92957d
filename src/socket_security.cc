#include "src/socket_security.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <zmq.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>
#include <zmq_addon.hpp>

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

// The address libzmq sends authentication requests to (ZAP, RFC 27).
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr std::chrono::milliseconds kLoopWake{100};
// A refused peer is logged at most this often (per address and reason), so a client
// retrying ten times a second with a stale key does not flood the log.
constexpr std::chrono::seconds kRefusalLogInterval{10};
constexpr size_t kMaxRememberedPeers = 4096;

struct KeyMaterial {
  ClusterKey key;
  std::string public_raw;  // 32 bytes: what ZAP hands us as the client's key
};

std::shared_ptr<const KeyMaterial> MakeMaterial(std::optional<ClusterKey> key) {
  if (!key) return nullptr;
  auto m = std::make_shared<KeyMaterial>();
  m->public_raw.resize(32);
  zmq_z85_decode(reinterpret_cast<uint8_t*>(m->public_raw.data()), key->public_z85.c_str());
  m->key = std::move(*key);
  return m;
}

std::mutex g_mu;
std::shared_ptr<const KeyMaterial> g_process_key;                    // guarded by g_mu
std::map<void*, std::shared_ptr<const KeyMaterial>> g_context_keys;  // guarded by g_mu
std::map<void*, std::weak_ptr<Authenticator>> g_authenticators;      // guarded by g_mu

std::shared_ptr<const KeyMaterial> KeyFor(zmq::context_t& context) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_context_keys.find(context.handle());
  return it != g_context_keys.end() ? it->second : g_process_key;
}

std::string UniqueInproc(const char* what) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("inproc://shardfs-{}-{}", what, counter.fetch_add(1));
}

// One monitor event: [event id (2 bytes) + value (4 bytes)][endpoint].
struct MonitorEvent {
  uint16_t event = 0;
  uint32_t value = 0;
};

// Reads one event if one is waiting.
std::optional<MonitorEvent> ReadEvent(zmq::socket_t& pair) {
  std::vector<zmq::message_t> frames;
  try {
    if (!zmq::recv_multipart(pair, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      return std::nullopt;
    }
  } catch (const zmq::error_t&) {
    return std::nullopt;
  }
  if (frames.empty() || frames[0].size() < 6) return MonitorEvent{};
  MonitorEvent e;
  std::memcpy(&e.event, frames[0].data(), 2);
  std::memcpy(&e.value, static_cast<const char*>(frames[0].data()) + 2, 4);
  return e;
}

// Starts a monitor on `socket` and connects a PAIR to it, on the calling
// thread (the socket's owner). Null if libzmq refuses.
std::unique_ptr<zmq::socket_t> MonitorSocket(zmq::context_t& context, zmq::socket_t& socket,
                                             int events, const char* what) {
  std::string endpoint = UniqueInproc(what);
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), events) != 0) return nullptr;
  try {
    auto pair = std::make_unique<zmq::socket_t>(context, zmq::socket_type::pair);
    pair->set(zmq::sockopt::linger, 0);
    pair->connect(endpoint);
    return pair;
  } catch (const zmq::error_t&) {
    zmq_socket_monitor(socket.handle(), nullptr, 0);
    return nullptr;
  }
}

std::string PeerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return fmt::format("{}:{}", host, ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
  }
  return "";
}

// "10.0.0.7:51234" -> "10.0.0.7", the unit of rate limiting (a client
// retrying comes from a new port every time).
std::string HostOf(const std::string& peer) {
  if (!peer.empty() && peer[0] == '[') return peer.substr(0, peer.find(']') + 1);
  return peer.substr(0, peer.rfind(':'));
}

std::string ProtocolFailureText(uint32_t code, bool for_server) {
  switch (code) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
      return for_server ? "it has no cluster key (plain TCP, --insecure)" : "mechanism mismatch";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
      return for_server ? "it has another cluster key (the CURVE handshake failed)"
                        : "the CURVE handshake failed";
    default:
      return fmt::format("security handshake failed (ZMTP protocol error {:#x})", code);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Authenticator: the context's ZAP handler and server-socket watcher.

class Authenticator {
 public:
  Authenticator(zmq::context_t& context, std::shared_ptr<const KeyMaterial> key)
      : context_(context), key_(std::move(key)) {}
  ~Authenticator() {
    stopping_ = true;
    Wake();
    if (thread_.joinable()) thread_.join();
  }
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Binds the ZAP socket (on the handler's thread) and returns once it is
  // bound: a CURVE server socket handshaking before that would let every
  // holder of the server key in without asking.
  Status Start() {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Status> ready;
    thread_ = std::thread([&] { Loop(mu, cv, ready); });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return ready.has_value(); });
    return *ready;
  }

  const KeyMaterial& key() const { return *key_; }

  // Watches `server` (not bound yet) for refused handshakes. Called on the
  // server socket's thread; the PAIR made here moves to the handler's
  // thread through watch_mu_ (a full barrier, as ZeroMQ requires).
  void Watch(zmq::socket_t& server, const std::string& name) {
    constexpr int kEvents = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                            ZMQ_EVENT_MONITOR_STOPPED;
    auto pair = MonitorSocket(context_, server, kEvents, "server-watch");
    if (!pair) {
      spdlog::warn("security: cannot watch {} for refused peers: {}", name,
                   zmq_strerror(zmq_errno()));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      pending_.push_back(Watched{std::move(pair), name, {}, std::nullopt});
    }
    // Wake the handler so it polls the new PAIR at once: it must read each
    // ZMQ_EVENT_ACCEPTED while that connection is still open to learn the
    // peer's address, and a refused one is closed within milliseconds.
    Wake();
  }

 private:
  // Interrupts the handler's poll (for a new watch, or to stop).
  void Wake() {
    try {
      zmq::socket_t wake(context_, zmq::socket_type::push);
      wake.set(zmq::sockopt::linger, 100);  // the handler may be gone: never hold up the context
      wake.connect(wake_endpoint_);
      (void)wake.send(zmq::str_buffer("w"), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
      // It wakes by itself within kLoopWake.
    }
  }

  struct Watched {
    std::unique_ptr<zmq::socket_t> pair;
    std::string name;
    std::map<int, std::string> peers;  // fd -> address, from ZMQ_EVENT_ACCEPTED
    // Of the connection about to be dropped: why, and whether it is surely
    // a refusal (a peer that gave up waiting looks like one that left).
    std::optional<std::pair<std::string, bool>> failure;
  };
  struct Refusals {
    Clock::time_point last{};
    uint64_t suppressed = 0;
  };

  void Loop(std::mutex& mu, std::condition_variable& cv, std::optional<Status>& ready) {
    // Everything below belongs to this thread.
    // Heap-held rather than std::optional: GCC 12 at -O3 takes optional's
    // storage for uninitialised here (-Wmaybe-uninitialized) and breaks
    // release builds with -Werror.
    std::unique_ptr<zmq::socket_t> zap;
    std::unique_ptr<zmq::socket_t> wake;
    Status bound = Status::Ok();
    try {
      wake = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pull);
      wake->set(zmq::sockopt::linger, 0);
      wake->bind(wake_endpoint_);
      zap = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::rep);
      zap->set(zmq::sockopt::linger, 0);
      // A handler of the same context that just stopped may still hold the
      // address: ZeroMQ releases inproc names when its reaper gets to the
      // closed socket, a moment later.
      for (int attempt = 0;; ++attempt) {
        try {
          zap->bind(kZapEndpoint);
          break;
        } catch (const zmq::error_t& e) {
          if (e.num() != EADDRINUSE || attempt >= 200) throw;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    } catch (const zmq::error_t& e) {
      bound = Status::Error(ErrorCode::kInternal,
                            std::string("cannot start the ZAP handler: ") + e.what());
    }
    {
      // Notified under the lock: Start() returns (and its cv goes) as soon
      // as it sees `ready`.
      std::lock_guard<std::mutex> lock(mu);
      ready = bound;
      cv.notify_all();
    }
    if (!bound.ok()) return;

    std::vector<Watched> watched;
    std::vector<zmq::pollitem_t> items;
    while (!stopping_.load()) {
      {
        std::lock_guard<std::mutex> lock(watch_mu_);
        for (auto& w : pending_) watched.push_back(std::move(w));
        pending_.clear();
      }
      items.clear();
      items.push_back({zap->handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({wake->handle(), 0, ZMQ_POLLIN, 0});
      for (auto& w : watched) items.push_back({w.pair->handle(), 0, ZMQ_POLLIN, 0});
      try {
        zmq::poll(items.data(), items.size(), kLoopWake);
        if (items[0].revents & ZMQ_POLLIN) HandleZap(*zap);
        if (items[1].revents & ZMQ_POLLIN) {
          zmq::message_t drop;
          while (wake->recv(drop, zmq::recv_flags::dontwait)) {
          }
        }
        for (size_t i = 0; i < watched.size(); ++i) {
          if (items[i + 2].revents & ZMQ_POLLIN) ReadEvents(watched[i]);
        }
      } catch (const zmq::error_t& e) {
        // Never let an exception end the thread: without it every CURVE
        // handshake of the context would wait for a ZAP reply.
        if (e.num() != EINTR) spdlog::warn("security: ZAP handler: {}", e.what());
      }
      std::erase_if(watched, [](const Watched& w) { return w.pair == nullptr; });
    }
  }

  // One ZAP request (RFC 27): [version][request id][domain][address]
  // [routing id][mechanism][credentials...]; the reply echoes the id.
  void HandleZap(zmq::socket_t& zap) {
    std::vector<zmq::message_t> req;
    if (!zmq::recv_multipart(zap, std::back_inserter(req), zmq::recv_flags::dontwait)) return;
    auto text = [&](size_t i) { return i < req.size() ? req[i].to_string() : std::string(); };
    const std::string request_id = text(1);
    const std::string address = text(3);
    const std::string mechanism = text(5);
    const bool member = text(0) == "1.0" && mechanism == "CURVE" && req.size() >= 7 &&
                        req[6].to_string() == key_->public_raw;
    std::vector<zmq::message_t> reply;
    reply.emplace_back(std::string_view("1.0"));
    reply.emplace_back(request_id.data(), request_id.size());
    reply.emplace_back(std::string_view(member ? "200" : "400"));
    reply.emplace_back(std::string_view(member ? "OK" : "not a member of this cluster"));
    reply.emplace_back();  // user id
    reply.emplace_back();  // metadata
    (void)zmq::send_multipart(zap, reply);
    if (!member) {
      LogRefusal(address, "a server socket",
                 mechanism == "CURVE" ? "its public key is not this cluster's key"
                                      : "it did not use the cluster key (" + mechanism + ")",
                 /*certain=*/true);
    }
  }

  void ReadEvents(Watched& w) {
    while (auto e = ReadEvent(*w.pair)) {
      switch (e->event) {
        case ZMQ_EVENT_ACCEPTED:
          if (w.peers.size() > kMaxRememberedPeers) w.peers.clear();
          w.peers[static_cast<int>(e->value)] = PeerAddress(static_cast<int>(e->value));
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
          w.failure.emplace(ProtocolFailureText(e->value, /*for_server=*/true), true);
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
          // The peer hung up mid-handshake: typically it found out first
          // that we do not share its key (or its lack of one).
          w.failure.emplace(
              "the peer hung up (a client without the cluster key, or one that gave up waiting)",
              false);
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          // The ZAP handler said no and has logged it already.
          w.failure.reset();
          break;
        case ZMQ_EVENT_DISCONNECTED: {
          // The engine reports the failure and then drops that connection,
          // one right after the other on the I/O thread, so the failure
          // belongs to this fd.
          auto it = w.peers.find(static_cast<int>(e->value));
          std::string peer = it != w.peers.end() ? it->second : std::string();
          if (it != w.peers.end()) w.peers.erase(it);
          if (w.failure) {
            LogRefusal(peer.empty() ? "an unknown address" : peer, w.name, w.failure->first,
                       w.failure->second);
            w.failure.reset();
          }
          break;
        }
        case ZMQ_EVENT_MONITOR_STOPPED:
          w.pair.reset();  // the server socket is closed
          return;
        default:
          break;
      }
    }
  }

  // `certain`: a refusal (warning); else a connection that may just have
  // been abandoned, such as one accepted while this process was stopped
  // (info).
  void LogRefusal(const std::string& peer, const std::string& socket_name, const std::string& why,
                  bool certain) {
    const std::string host = HostOf(peer);
    auto now = Clock::now();
    if (refusals_.size() > kMaxRememberedPeers) refusals_.clear();
    // Per reason too: a second, different mistake from one host is news.
    Refusals& r = refusals_[host + "|" + why];
    if (r.last != Clock::time_point{} && now - r.last < kRefusalLogInterval) {
      ++r.suppressed;
      return;
    }
    const std::string more =
        r.suppressed > 0 ? fmt::format(" ({} more from {} since)", r.suppressed, host) : "";
    if (certain) {
      spdlog::warn("security: refused a connection to {} from {}: {}{}", socket_name, peer, why,
                   more);
    } else {
      spdlog::info("security: a connection to {} from {} ended during the handshake: {}{}",
                   socket_name, peer, why, more);
    }
    r.last = now;
    r.suppressed = 0;
  }

  zmq::context_t& context_;
  const std::shared_ptr<const KeyMaterial> key_;
  const std::string wake_endpoint_ = UniqueInproc("auth-wake");
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex watch_mu_;
  std::vector<Watched> pending_;  // guarded by watch_mu_
  // The handler's thread only:
  std::map<std::string, Refusals> refusals_;
};

// ---------------------------------------------------------------------------

void SetProcessClusterKey(std::optional<ClusterKey> key) {
  auto material = MakeMaterial(std::move(key));
  std::lock_guard<std::mutex> lock(g_mu);
  g_process_key = std::move(material);
}

ScopedContextKey::ScopedContextKey(zmq::context_t& context, std::optional<ClusterKey> key)
    : context_(context.handle()) {
  auto material = MakeMaterial(std::move(key));
  std::lock_guard<std::mutex> lock(g_mu);
  g_context_keys[context_] = std::move(material);
}

ScopedContextKey::~ScopedContextKey() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_context_keys.erase(context_);
}

bool ContextIsSecure(zmq::context_t& context) {
  return KeyFor(context) != nullptr;
}

Status SecureClientSocket(zmq::context_t& context, zmq::socket_t& socket) {
  auto key = KeyFor(context);
  if (!key) return Status::Ok();
  try {
    socket.set(zmq::sockopt::curve_serverkey, key->key.public_z85);
    socket.set(zmq::sockopt::curve_publickey, key->key.public_z85);
    socket.set(zmq::sockopt::curve_secretkey, key->key.secret_z85);
  } catch (const zmq::error_t& e) {
    return Status::Error(ErrorCode::kInternal, std::string("cannot set the cluster key on a "
                                                           "socket: ") +
                                                   e.what());
  }
  return Status::Ok();
}

Result<std::shared_ptr<Authenticator>> SecureServerSocket(zmq::context_t& context,
                                                          zmq::socket_t& socket,
                                                          const std::string& name) {
  auto key = KeyFor(context);
  if (!key) return std::shared_ptr<Authenticator>();
  std::shared_ptr<Authenticator> auth;
  {
    // Held while starting a new handler, so two servers of one context
    // starting at once share one instead of racing for the ZAP address.
    std::lock_guard<std::mutex> lock(g_mu);
    auth = g_authenticators[context.handle()].lock();
    if (auth && auth->key().key.secret_z85 != key->key.secret_z85) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "a ZeroMQ context cannot serve two cluster keys");
    }
    if (!auth) {
      auth = std::make_shared<Authenticator>(context, key);
      SHARDFS_RETURN_IF_ERROR(auth->Start());
      g_authenticators[context.handle()] = auth;
    }
  }
  try {
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, key->key.secret_z85);
    // A domain makes libzmq ask the handler for every connection.
    socket.set(zmq::sockopt::zap_domain, "shardfs");
  } catch (const zmq::error_t& e) {
    return Status::Error(ErrorCode::kInternal,
                         std::string("cannot set the cluster key on a socket: ") + e.what());
  }
  auth->Watch(socket, name);
  return auth;
}

// ---------------------------------------------------------------------------

std::unique_ptr<HandshakeWatch> HandshakeWatch::Start(zmq::context_t& context,
                                                      zmq::socket_t& socket) {
  constexpr int kEvents = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                          ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                          ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  auto pair = MonitorSocket(context, socket, kEvents, "client-watch");
  if (!pair) return nullptr;
  return std::unique_ptr<HandshakeWatch>(
      new HandshakeWatch(std::move(pair), ContextIsSecure(context)));
}

HandshakeWatch::HandshakeWatch(std::unique_ptr<zmq::socket_t> events, bool secure)
    : events_(std::move(events)), secure_(secure) {}

HandshakeWatch::~HandshakeWatch() = default;

void HandshakeWatch::Stop(zmq::socket_t& socket) {
  if (stopped_) return;
  stopped_ = true;
  zmq_socket_monitor(socket.handle(), nullptr, 0);
  events_.reset();
}

std::optional<std::string> HandshakeWatch::Explain() {
  if (events_) {
    while (auto e = ReadEvent(*events_)) {
      switch (e->event) {
        case ZMQ_EVENT_CONNECTED:
          in_handshake_ = true;
          break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
          succeeded_ = true;
          in_handshake_ = false;
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          auth_failure_ = static_cast<int>(e->value);
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
          protocol_failure_ = static_cast<int>(e->value);
          break;
        case ZMQ_EVENT_DISCONNECTED:
          if (in_handshake_) ++dropped_in_handshake_;
          in_handshake_ = false;
          break;
        default:
          break;
      }
    }
  }
  const std::string fix =
      secure_ ? "; this program and the cluster must use the same cluster key (--key)"
              : "; this program runs without a cluster key (--insecure): give it the "
                "cluster's key with --key";
  if (auth_failure_) {
    return fmt::format("the server refused this program's cluster key (ZAP status {}){}",
                       *auth_failure_, fix);
  }
  if (protocol_failure_) {
    if (*protocol_failure_ == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      return secure_ ? std::string(
                           "the server runs without a cluster key (--insecure) but this "
                           "program has one; start both the same way")
                     : std::string("the server requires a cluster key") + fix;
    }
    return ProtocolFailureText(static_cast<uint32_t>(*protocol_failure_), false) + fix;
  }
  // The server closing the connection mid-handshake is all a client sees
  // when the server cannot open its CURVE HELLO: the server's key differs.
  // A server without a key usually shows as a mechanism mismatch above, but
  // when it hangs up before the client has read its greeting (a loaded
  // machine) it looks the same. Twice at least, since a server that dies
  // during one handshake looks the same once (and then refuses connections,
  // or comes back and succeeds).
  if (dropped_in_handshake_ >= 2 && !succeeded_) {
    return secure_ ? "the server dropped the connection during the CURVE handshake: it has a "
                     "different cluster key (was the key replaced?), or it runs without a "
                     "cluster key (--insecure)" +
                         fix
                   : "the server dropped the connection during the handshake: it most likely "
                     "requires a cluster key" +
                         fix;
  }
  return std::nullopt;
}

}  // namespace shardfs
