// A flood against a real shardfs-node and shardfs-registry.
//
// Both daemons serve through RpcServer, so both get the same treatment, at
// once: 10,000 raw TCP connections each (silent ones, garbage, a ZMTP greeting
// followed by a frame header claiming 1 TiB, frames that never end a
// message, a greeting cut short), a few thousand of them open at a time;
// ZeroMQ peers that stream the frames of a message and never send the last
// one; a frame past the size limit; a peer that pipelines thousands of
// requests without reading. Meanwhile and afterwards a well-behaved client
// must get its answers, and at the end each daemon's peak resident memory
// (VmHWM) is printed and must stay under a bound that unbounded buffering
// would pass (the half-open messages alone add up to more than it).
//
// With a cluster key (the default) raw connections never get past the
// handshake, so the half-open messages and the oversized frame come from
// peers that hold the key: the case the per-peer limits exist for. With
// --insecure anyone gets to the message layer, so the raw connections carry
// real ZMTP frames there; both modes run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol/envelope.h"
#include "protocol/namespace_messages.h"
#include "src/namespace_client.h"
#include "src/node_client.h"
#include "tests/integration/daemon_process.h"
#include "tests/raw_zmtp.h"
#include "tests/temp_dir.h"
#include "tests/test_data.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr size_t kConnectionsPerDaemon = 10000;
constexpr size_t kOpenAtOnce = 2500;  // per daemon: 5,000 fds in this process
constexpr int kHalfOpenPeers = 4;     // per daemon
constexpr size_t kHalfOpenBytesPerPeer = 256u << 20;
constexpr size_t kPipelined = 3000;
// Peak RSS bound per daemon. The half-open messages alone are 1 GiB per
// daemon if nothing bounds them.
constexpr uint64_t kMaxPeakRssKiB = 512u << 10;
// Whatever happens, the storm stops by then.
constexpr auto kStormLimit = 40s;

std::string Endpoint(uint16_t port) {
  return "tcp://127.0.0.1:" + std::to_string(port);
}

// VmHWM of a process, in KiB (0 if it cannot be read).
uint64_t PeakRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

// Lets this process (and the daemons it starts, which inherit it) have the
// fds the flood needs.
void RaiseFdLimit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

size_t FdLimit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

// What raw connection number `i` sends; "" for a silent one.
std::string RawBytes(size_t i, std::mt19937_64& rng) {
  const std::string hello = raw_zmtp::Hello();
  switch (i % 5) {
    case 0:
      return "";  // connects and says nothing: a half-open connection
    case 1: {
      std::string junk(16 + rng() % 240, '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      return junk;
    }
    case 2:
      // Claims a 1 TiB frame, then sends a little of it.
      return hello + raw_zmtp::LongFrameHeader(1ull << 40, false) + std::string(1024, 'o');
    case 3: {
      // 64 KiB of frames, each "more", and never the last one.
      std::string s = hello;
      for (int f = 0; f < 16; ++f)
        s += raw_zmtp::LongFrameHeader(4096, true) + std::string(4096, 'm');
      return s;
    }
    default:
      return raw_zmtp::Greeting().substr(0, 10);  // a greeting cut short
  }
}

int ConnectNonBlocking(uint16_t port) {
  return raw_zmtp::ConnectLoopback(port, SOCK_NONBLOCK);
}

// Closes with a reset, so that 20,000 closed connections leave no TIME_WAIT
// entries holding local ports.
void CloseWithReset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

// Opens `total` connections to `port` in batches of `at_once`; each sends its
// RawBytes once connected; a batch stays open for `hold` and is then reset.
// Returns how many got connected.
size_t RawFlood(uint16_t port, size_t total, size_t at_once, std::chrono::milliseconds hold,
                Clock::time_point give_up, std::atomic<bool>& stop) {
  std::mt19937_64 rng(port);
  size_t connected = 0;
  size_t attempted = 0;
  while (attempted < total && Clock::now() < give_up && !stop) {
    std::vector<pollfd> batch;
    std::vector<std::string> bytes;
    while (batch.size() < at_once && attempted < total) {
      int fd = ConnectNonBlocking(port);
      if (fd < 0) {
        std::this_thread::sleep_for(5ms);  // out of something: let it drain
        if (Clock::now() >= give_up) break;
        continue;
      }
      batch.push_back(pollfd{fd, POLLOUT, 0});
      bytes.push_back(RawBytes(attempted, rng));
      ++attempted;
      // Give the daemon's accept loop a moment now and then.
      if (attempted % 200 == 0) std::this_thread::sleep_for(2ms);
    }
    // Wait until each is connected, then send its bytes.
    std::vector<bool> done(batch.size(), false);
    size_t pending = batch.size();
    const auto batch_deadline = Clock::now() + 10s;
    while (pending > 0 && Clock::now() < batch_deadline && !stop) {
      std::vector<pollfd> waiting;
      std::vector<size_t> index;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!done[i]) {
          waiting.push_back(batch[i]);
          index.push_back(i);
        }
      }
      if (::poll(waiting.data(), waiting.size(), 200) <= 0) continue;
      for (size_t k = 0; k < waiting.size(); ++k) {
        if (waiting[k].revents == 0) continue;
        const size_t i = index[k];
        done[i] = true;
        --pending;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(batch[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) continue;
        ++connected;
        if (!bytes[i].empty()) {
          (void)::send(batch[i].fd, bytes[i].data(), bytes[i].size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
    }
    std::this_thread::sleep_for(hold);
    for (const pollfd& p : batch) CloseWithReset(p.fd);
  }
  return connected;
}

// --- the daemons -------------------------------------------------------------

class FloodTest : public ::testing::TestWithParam<bool> {
 protected:
  bool secure() const { return GetParam(); }

  void SetUp() override {
    RaiseFdLimit();
    if (FdLimit() < 2 * kOpenAtOnce + 1000) {
      GTEST_SKIP() << "needs " << 2 * kOpenAtOnce + 1000 << " fds, the hard limit is " << FdLimit();
    }
    key_ = std::make_unique<TestKey>(
        dir_.Sub("cluster.key"), secure() ? TestKey::Scope::kProcess : TestKey::Scope::kFileOnly);
    unsetenv("SHARDFS_REGISTRY");
    const std::vector<std::string> security =
        secure() ? key_->Flag() : std::vector<std::string>{"--insecure"};

    node_port_ = FreeTcpPort();
    registry_port_ = FreeTcpPortPair();
    ASSERT_NE(node_port_, 0);
    ASSERT_NE(registry_port_, 0);
    DaemonProcess::Options n;
    n.argv = {BuildPath("nodeserver/shardfs-node"),
              "--data",
              dir_.Sub("data"),
              "--listen",
              Endpoint(node_port_),
              "--cluster",
              "flood-" + std::to_string(getpid()),
              "--beacon-port",
              std::to_string(FreeUdpPort()),
              "--log-level",
              "warn"};
    n.argv.insert(n.argv.end(), security.begin(), security.end());
    n.log_path = dir_.Sub("node.log");
    auto node = DaemonProcess::Start(n);
    ASSERT_TRUE(node.ok()) << node.status().ToString();
    node_ = std::move(node).value();

    DaemonProcess::Options r;
    r.argv = {BuildPath("nodeserver/shardfs-registry"),
              "--meta",
              dir_.Sub("meta"),
              "--listen",
              Endpoint(registry_port_),
              "--beacon",
              "off",
              "--beacon-port",
              std::to_string(FreeUdpPort()),
              "--cluster",
              "flood-" + std::to_string(getpid()),
              "--log-level",
              "warn"};
    r.argv.insert(r.argv.end(), security.begin(), security.end());
    r.log_path = dir_.Sub("registry.log");
    auto registry = DaemonProcess::Start(r);
    ASSERT_TRUE(registry.ok()) << registry.status().ToString();
    registry_ = std::move(registry).value();

    NodeClient::Options quick;
    quick.attempt_timeout = 300ms;
    quick.attempts = 1;
    NodeClient probe(context_, quick);
    ASSERT_TRUE(
        WaitUntil([&] { return !node_.Running() || probe.Ping(Endpoint(node_port_)).ok(); }, 20s))
        << node_.ReadLog();
    NamespaceClient::Options ns;
    ns.attempt_timeout = 300ms;
    ns.budget = 300ms;
    NamespaceClient registry_probe(context_, Endpoint(registry_port_), ns);
    ASSERT_TRUE(
        WaitUntil([&] { return !registry_.Running() || registry_probe.StatFs().ok(); }, 20s))
        << registry_.ReadLog();
  }

  void TearDown() override {
    node_.Stop();
    registry_.Stop();
    if (HasFailure()) {
      for (auto* d : {&node_, &registry_}) {
        std::string log = d->ReadLog();
        if (log.size() > 6000) log = "...\n" + log.substr(log.size() - 6000);
        std::cerr << "---- " << d->log_path() << " ----\n" << log << "\n";
      }
    }
  }

  TempDir dir_{"flood"};
  std::unique_ptr<TestKey> key_;
  zmq::context_t context_;
  uint16_t node_port_ = 0;
  uint16_t registry_port_ = 0;
  DaemonProcess node_;
  DaemonProcess registry_;
};

// A peer that streams the frames of one message, `bytes` in all, and keeps
// the server from seeing it whole for as long as it can. Returns true when
// the server cut it off before it was done.
//
// Without a key it speaks raw ZMTP and never sends the last frame; when cut
// off it connects again and goes on. With the key it must be libzmq (CURVE),
// which puts a message on the wire only once it is complete, so it sends one
// message of `bytes` in 256 KiB frames, all from one static buffer (no copies
// on this side): the server receives it frame by frame, as unfinished as the
// raw one until the end. It waits for the outcome: cut off (a disconnect) or,
// if nothing stopped it, the error reply to the whole message.
bool HalfOpenPeer(zmq::context_t& context, bool secure, uint16_t port, size_t bytes,
                  std::atomic<bool>& stop, int n) {
  static const std::string chunk(256u << 10, 'h');
  if (!secure) {
    const std::string frame = raw_zmtp::LongFrameHeader(chunk.size(), /*more=*/true) + chunk;
    size_t sent = 0;
    bool cut_off = false;
    while (sent < bytes && !stop) {
      int fd = raw_zmtp::ConnectLoopback(port);
      if (fd < 0) return cut_off;
      timeval five{5, 0};
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &five, sizeof(five));
      bool alive = raw_zmtp::SendAll(fd, raw_zmtp::Hello());
      for (; alive && sent < bytes && !stop; sent += chunk.size()) {
        alive = raw_zmtp::SendAll(fd, frame);
      }
      if (!alive) cut_off = true;
      if (alive) std::this_thread::sleep_for(500ms);  // hold it a moment
      CloseWithReset(fd);
    }
    return cut_off;
  }
  zmq::socket_t s(context, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::reconnect_ivl, 60000);  // one connection
  if (!SecureClientSocket(context, s).ok()) return false;
  const std::string monitor =
      "inproc://half-open-" + std::to_string(port) + "-" + std::to_string(n);
  if (zmq_socket_monitor(s.handle(), monitor.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) return false;
  zmq::socket_t events(context, zmq::socket_type::pair);
  events.set(zmq::sockopt::linger, 0);
  events.connect(monitor);
  s.connect(Endpoint(port));
  const size_t frames = bytes / chunk.size();
  for (size_t i = 0; i < frames && !stop; ++i) {
    zmq::message_t m(const_cast<char*>(chunk.data()), chunk.size(), nullptr, nullptr);
    if (!s.send(m, i + 1 < frames ? zmq::send_flags::sndmore : zmq::send_flags::none)) break;
  }
  bool cut_off = false;
  const auto deadline = Clock::now() + 30s;
  while (!stop && Clock::now() < deadline) {
    zmq::pollitem_t items[] = {{events.handle(), 0, ZMQ_POLLIN, 0}, {s.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 2, 100ms) <= 0) continue;
    cut_off = (items[0].revents & ZMQ_POLLIN) != 0;
    break;
  }
  zmq_socket_monitor(s.handle(), nullptr, 0);
  return cut_off;
}

// One frame larger than any server accepts: the server must drop the
// connection (it cannot answer a message it never read). True if no reply.
bool OversizedFrameGetsNoReply(zmq::context_t& context, const std::string& endpoint) {
  zmq::socket_t s(context, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  if (!SecureClientSocket(context, s).ok()) return false;
  s.connect(endpoint);
  std::string header = EncodeHeader(MessageType::kPutShard, 1, FieldWriter());
  std::string payload(kMaxPayloadBytes + (8u << 20), 'b');
  s.send(zmq::buffer(header), zmq::send_flags::sndmore);
  s.send(zmq::buffer(payload), zmq::send_flags::none);
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, 2000ms);
  return !(item.revents & ZMQ_POLLIN);
}

// Sends `count` requests without reading, then reads: every one must be
// answered (done or kBusy), none lost, none answered twice.
struct PipelineResult {
  size_t answered = 0;
  size_t busy = 0;
  size_t duplicates = 0;
};
PipelineResult Pipeline(zmq::context_t& context, const std::string& endpoint, MessageType type,
                        size_t count) {
  PipelineResult result;
  zmq::socket_t s(context, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  if (!SecureClientSocket(context, s).ok()) return result;
  s.connect(endpoint);
  for (size_t i = 1; i <= count; ++i) {
    std::string header = EncodeHeader(type, i, FieldWriter());
    s.send(zmq::buffer(header), zmq::send_flags::none);
  }
  std::vector<bool> seen(count + 1, false);
  const auto deadline = Clock::now() + 20s;
  while (result.answered < count && Clock::now() < deadline) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, 500ms) <= 0) continue;
    std::vector<zmq::message_t> frames;
    (void)zmq::recv_multipart(s, std::back_inserter(frames));
    if (frames.empty()) continue;
    auto header = DecodeHeader(frames[0].to_string_view());
    if (!header.ok() || header->request_id == 0 || header->request_id > count) continue;
    if (seen[header->request_id]) {
      ++result.duplicates;
      continue;
    }
    seen[header->request_id] = true;
    ++result.answered;
    if (header->IsError() && StatusFromErrorFields(header->fields).code() == ErrorCode::kBusy) {
      ++result.busy;
    }
  }
  return result;
}

TEST_P(FloodTest, DaemonsKeepServingAndMemoryStaysBounded) {
  const auto started = Clock::now();
  const auto give_up = started + kStormLimit;
  const std::string node_ep = Endpoint(node_port_);
  const std::string registry_ep = Endpoint(registry_port_);
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> failures;
  auto fail = [&](std::string what) {
    std::lock_guard<std::mutex> lock(mu);
    if (failures.size() < 20) failures.push_back(std::move(what));
  };

  // The attackers.
  std::atomic<size_t> node_connections{0};
  std::atomic<size_t> registry_connections{0};
  std::vector<std::thread> attackers;
  attackers.emplace_back([&] {
    node_connections =
        RawFlood(node_port_, kConnectionsPerDaemon, kOpenAtOnce, 500ms, give_up, stop);
  });
  attackers.emplace_back([&] {
    registry_connections =
        RawFlood(registry_port_, kConnectionsPerDaemon, kOpenAtOnce, 500ms, give_up, stop);
  });
  // The ZeroMQ attackers use a context of their own (with the process key):
  // the good client's sockets do not share their I/O thread.
  zmq::context_t attack_context(2);  // two I/O threads: CURVE costs CPU
  std::atomic<int> cut_off{0};
  for (int i = 0; i < kHalfOpenPeers; ++i) {
    for (const std::string* ep : {&node_ep, &registry_ep}) {
      const uint16_t port = ep == &node_ep ? node_port_ : registry_port_;
      attackers.emplace_back([&, port, i] {
        if (HalfOpenPeer(attack_context, secure(), port, kHalfOpenBytesPerPeer, stop, i)) {
          ++cut_off;
        }
      });
    }
  }
  std::atomic<int> oversized_unanswered{0};
  PipelineResult node_pipeline, registry_pipeline;
  attackers.emplace_back([&] {
    for (const std::string* ep : {&node_ep, &registry_ep}) {
      if (OversizedFrameGetsNoReply(attack_context, *ep)) ++oversized_unanswered;
    }
    node_pipeline = Pipeline(attack_context, node_ep, MessageType::kNodePing, kPipelined);
    registry_pipeline = Pipeline(attack_context, registry_ep, MessageType::kStatFs, kPipelined);
  });

  // The well-behaved client, during all of it: every call must succeed
  // within the clients' own deadlines (5 s per node attempt, 10 s budget
  // per registry call).
  std::atomic<bool> attack_over{false};
  std::atomic<size_t> good_calls{0};
  std::atomic<int64_t> slowest_ms{0};
  auto timed = [&](const char* what, const std::function<Status()>& call) {
    const auto t0 = Clock::now();
    Status st = call();
    const int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    int64_t prev = slowest_ms.load();
    while (ms > prev && !slowest_ms.compare_exchange_weak(prev, ms)) {
    }
    if (!st.ok()) fail(std::string(what) + ": " + st.ToString());
    ++good_calls;
  };
  // Its connections are made before the storm: a connection flood delays
  // new connections in the kernel's accept queue whatever the server does;
  // what the server controls is that established ones are not affected.
  NodeClient node(context_);
  NamespaceClient registry(context_, registry_ep);
  ASSERT_TRUE(node.Ping(node_ep).ok());
  ASSERT_TRUE(registry.StatFs().ok());
  std::thread good([&] {
    for (uint32_t i = 0; !attack_over && Clock::now() < give_up; ++i) {
      const std::string data(4096 + i, static_cast<char>('a' + i % 26));
      const ShardKey key{7, i, 1};
      timed("node ping", [&] { return node.Ping(node_ep); });
      timed("node put", [&] { return node.Put(node_ep, key, data, false, Hash(data)); });
      timed("node get", [&] {
        auto got = node.Get(node_ep, key, 0, data.size());
        if (!got.ok()) return got.status();
        return got->bytes == data ? Status::Ok()
                                  : Status::Error(ErrorCode::kInternal, "wrong bytes");
      });
      timed("registry statfs", [&] { return registry.StatFs().status(); });
      timed("registry mkdir", [&] {
        MknodRequest m;
        m.parent = kRootIno;
        m.name = "during-" + std::to_string(i);
        m.type = FileType::kDirectory;
        m.mode = 0755;
        return registry.Mkdir(m).status();
      });
      std::this_thread::sleep_for(50ms);
    }
  });

  // New clients during the storm: each must get its first answer within
  // 15 s (connects that wait out a full accept queue included).
  std::atomic<int64_t> slowest_new_ms{0};
  std::atomic<size_t> new_clients{0};
  std::thread fresh([&] {
    while (!attack_over && Clock::now() < give_up) {
      const auto t0 = Clock::now();
      NodeClient n(context_);
      NamespaceClient r(context_, registry_ep);
      bool answered = WaitUntil([&] { return n.Ping(node_ep).ok(); }, 15s, 10ms) &&
                      WaitUntil([&] { return r.StatFs().ok(); }, 15s, 10ms);
      if (!answered) fail("a new client got no answer within 15 s");
      const int64_t ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
      if (ms > slowest_new_ms) slowest_new_ms = ms;
      ++new_clients;
      std::this_thread::sleep_for(500ms);
    }
  });

  for (auto& t : attackers) t.join();
  attack_over = true;
  good.join();
  fresh.join();
  const auto storm = Clock::now() - started;

  // Afterwards: a fresh client gets answers at once.
  {
    NodeClient node_after(context_);
    NamespaceClient registry_after(context_, registry_ep);
    const std::string data(100000, 'z');
    timed("node put after", [&] {
      return node_after.Put(node_ep, ShardKey{8, 0, 1}, data, true, Hash(data));
    });
    timed("registry lookup after", [&] {
      MknodRequest m;
      m.parent = kRootIno;
      m.name = "after";
      m.type = FileType::kDirectory;
      m.mode = 0755;
      auto made = registry_after.Mkdir(m);
      if (!made.ok()) return made.status();
      return registry_after.Lookup(kRootIno, "after").status();
    });
  }

  ASSERT_TRUE(node_.Running()) << "the node died";
  ASSERT_TRUE(registry_.Running()) << "the registry died";
  const uint64_t node_peak = PeakRssKiB(node_.pid());
  const uint64_t registry_peak = PeakRssKiB(registry_.pid());
  const std::string node_log = node_.ReadLog();
  const std::string registry_log = registry_.ReadLog();
  std::cout << (secure() ? "[cluster key] " : "[--insecure] ") << "storm "
            << std::chrono::duration_cast<std::chrono::milliseconds>(storm).count()
            << " ms: " << node_connections << " + " << registry_connections
            << " raw connections (node + registry, " << kOpenAtOnce << " open at a time each), "
            << 2 * kHalfOpenPeers << " half-open peers (" << cut_off << " cut off) x "
            << (kHalfOpenBytesPerPeer >> 20) << " MiB, pipelined " << kPipelined
            << " requests: node " << node_pipeline.answered << " answered (" << node_pipeline.busy
            << " busy), registry " << registry_pipeline.answered << " answered ("
            << registry_pipeline.busy << " busy); " << good_calls << " good calls, slowest "
            << slowest_ms << " ms; " << new_clients << " new clients, slowest first answer "
            << slowest_new_ms << " ms; peak RSS node " << node_peak / 1024 << " MiB, registry "
            << registry_peak / 1024 << " MiB\n";

  std::string all;
  for (const auto& f : failures) all += "\n  " + f;
  EXPECT_TRUE(failures.empty()) << failures.size() << " good calls failed:" << all;
  EXPECT_GE(node_connections.load(), kConnectionsPerDaemon);
  EXPECT_GE(registry_connections.load(), kConnectionsPerDaemon);
  EXPECT_EQ(oversized_unanswered.load(), 2);
  for (const PipelineResult* p : {&node_pipeline, &registry_pipeline}) {
    EXPECT_EQ(p->answered, kPipelined);
    EXPECT_EQ(p->duplicates, 0u);
  }
  EXPECT_GT(good_calls.load(), 10u);
  // The half-open peers were cut off, by the servers.
  EXPECT_EQ(cut_off.load(), 2 * kHalfOpenPeers);
  EXPECT_NE(node_log.find("dropped the connection"), std::string::npos);
  EXPECT_NE(registry_log.find("dropped the connection"), std::string::npos);
  ASSERT_GT(node_peak, 0u);
  ASSERT_GT(registry_peak, 0u);
  EXPECT_LT(node_peak, kMaxPeakRssKiB);
  EXPECT_LT(registry_peak, kMaxPeakRssKiB);
}

INSTANTIATE_TEST_SUITE_P(Security, FloodTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("ClusterKey") : std::string("Insecure");
                         });

}  // namespace
}  // namespace shardfs
