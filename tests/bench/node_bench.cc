// node_bench: shardfs-node throughput over loopback next to plain file I/O.
//
// Starts a real shardfs-node on a free loopback port and measures, with 1 and
// 8 concurrent clients (threads, each with its own NodeClient):
//   - put of 4 MiB shards, without sync and with sync,
//   - get of whole 4 MiB shards,
//   - 4 KiB reads at random 4 KiB-aligned offsets of those shards;
// and beside each, the same number of bytes and operations done with plain
// write(2)/read(2) on the same disk in the same run, with the same sync
// semantics as the node's put (sync: fsync of the file and its directory):
//   put      <-> open(O_CREAT|O_TRUNC) + write + close    (+ fsync file, dir)
//   get      <-> open + read of the whole file + close
//   4 KiB    <-> open + pread of 4 KiB + close            (the node opens per read too)
// Reads in both columns come from a warm page cache: everything read was just
// written, and no cache is dropped (that would disturb the whole machine).
// The ratio column shows what the node costs on top of the disk: the
// network hop, the copies, the checksums and the tmp-file-and-rename
// publication.
//
// First, the floor under every get (the "ceiling" table): the same number
// of 4 KiB and of 4 MiB request/reply round trips over loopback with nothing
// behind them, once over plain blocking TCP sockets (a server thread per
// client) and once through ZeroMQ (DEALER clients, one ROUTER thread that
// answers from memory: the node's socket thread with no disk and no
// checksum), with the same 1 and 8 client threads. No get can beat its
// row there.
//
// The whole matrix runs once with a cluster key (ZeroMQ CURVE on every
// connection, as in production) and once with --insecure (plain TCP), each
// against a node of its own, and a last table sets the two side by side: the
// cost of encryption. --security picks one of the two.
//
//   node_bench [--node PATH] [--dir DIR] [--shards N] [--sync-shards N] [--reads N]
//              [--security both|curve|insecure] [--no-ceiling]
//
// Not a test: it prints a table and always exits 0 unless something fails.
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/block_checksum.h"
#include "src/node_client.h"
#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr size_t kShardBytes = 4u << 20;
constexpr size_t kSmallRead = 4096;

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "node_bench: " << message << "\n";
  std::exit(1);
}

void Check(const Status& st, const std::string& what) {
  if (!st.ok()) Die(what + ": " + st.ToString());
}

void CheckErrno(bool ok, const std::string& what) {
  if (!ok) Die(what + ": " + std::strerror(errno));
}

std::string RandomBytes(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

uint64_t Hash(std::string_view s) {
  return ShardChecksum({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

// Runs body(thread, op) for ops [0, ops) split over `threads` threads;
// returns the wall time of the whole.
double Timed(int threads, size_t ops, const std::function<void(int, size_t)>& body) {
  std::vector<std::thread> pool;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t op = t; op < ops; op += threads) body(t, op);
    });
  }
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Row {
  std::string op;
  int clients = 0;
  size_t ops = 0;
  size_t bytes_per_op = 0;
  double node_seconds = 0;
  double plain_seconds = 0;
};

void PrintTable(const std::vector<Row>& rows) {
  std::cout << fmt::format("{:<22} {:>7} {:>6} | {:>10} {:>10} | {:>10} {:>10} | {:>7}\n",
                           "operation", "clients", "ops", "node MiB/s", "node op/s", "plain MiB/s",
                           "plain op/s", "node %");
  std::cout << std::string(100, '-') << "\n";
  for (const Row& r : rows) {
    const double mib = static_cast<double>(r.ops * r.bytes_per_op) / (1 << 20);
    std::cout << fmt::format(
        "{:<22} {:>7} {:>6} | {:>10.1f} {:>10.0f} | {:>11.1f} {:>10.0f} | {:>6.0f}%\n", r.op,
        r.clients, r.ops, mib / r.node_seconds, r.ops / r.node_seconds, mib / r.plain_seconds,
        r.ops / r.plain_seconds, 100.0 * r.plain_seconds / r.node_seconds);
  }
}

void FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  CheckErrno(fd >= 0, "open " + path);
  CheckErrno(::fsync(fd) == 0, "fsync " + path);
  ::close(fd);
}

void PlainWrite(const std::string& dir, const std::string& name, const std::string& data,
                bool sync) {
  const std::string path = dir + "/" + name;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CheckErrno(fd >= 0, "create " + path);
  CheckErrno(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()),
             "write " + path);
  if (sync) CheckErrno(::fsync(fd) == 0, "fsync " + path);
  CheckErrno(::close(fd) == 0, "close " + path);
  if (sync) FsyncPath(dir);
}

void PlainRead(const std::string& path, uint64_t offset, size_t length, std::string* buffer) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CheckErrno(fd >= 0, "open " + path);
  buffer->resize(length);
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, buffer->data() + done, length - done, offset + done);
    CheckErrno(n > 0, "read " + path);
    done += n;
  }
  ::close(fd);
}

// Reads or writes exactly `n` bytes on a blocking socket; false on EOF or error.
bool SocketIo(int fd, char* buffer, size_t n, bool write) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = write ? ::send(fd, buffer + done, n - done, MSG_NOSIGNAL)
                      : ::recv(fd, buffer + done, n - done, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

// A request of about a GetShard's size, answered by `reply_bytes` (a 4 KiB
// read or a whole shard), over plain TCP: one server thread per client
// connection.
double TcpEchoSeconds(int threads, size_t ops, size_t reply_bytes) {
  constexpr size_t kRequest = 64;
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CheckErrno(listener >= 0, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CheckErrno(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "bind");
  socklen_t len = sizeof(addr);
  CheckErrno(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0, "name");
  CheckErrno(::listen(listener, threads) == 0, "listen");
  std::vector<std::thread> servers;
  for (int t = 0; t < threads; ++t) {
    servers.emplace_back([listener, reply_bytes] {
      int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::string request(kRequest, '\0');
      std::string reply(reply_bytes, 'r');
      while (SocketIo(fd, request.data(), kRequest, false) &&
             SocketIo(fd, reply.data(), reply_bytes, true)) {
      }
      ::close(fd);
    });
  }
  std::vector<int> fds(threads);
  for (int& fd : fds) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CheckErrno(fd >= 0, "socket");
    CheckErrno(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "connect");
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  const double seconds = Timed(threads, ops, [&](int t, size_t) {
    std::string request(kRequest, 'q');
    std::string reply(reply_bytes, '\0');
    if (!SocketIo(fds[t], request.data(), kRequest, true) ||
        !SocketIo(fds[t], reply.data(), reply_bytes, false)) {
      Die("tcp echo failed");
    }
  });
  for (int fd : fds) ::close(fd);
  for (auto& th : servers) th.join();
  ::close(listener);
  return seconds;
}

// The same over ZeroMQ, shaped like an RpcServer: the clients' DEALERs in
// one context, a ROUTER served by one thread in another (each with its own
// I/O thread), replying from memory at once, without copying the reply into
// the message (the node sends a shard's bytes the same way).
double ZmqEchoSeconds(int threads, size_t ops, size_t reply_bytes) {
  zmq::context_t server_context;
  zmq::socket_t router(server_context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:0");
  const std::string ep = router.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> done{false};
  std::thread server([&] {
    std::string reply(reply_bytes, 'r');
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    while (!done) {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      (void)zmq::recv_multipart(router, std::back_inserter(frames));
      router.send(frames[0], zmq::send_flags::sndmore);
      router.send(zmq::message_t(reply.data(), reply.size(), nullptr), zmq::send_flags::none);
    }
  });
  zmq::context_t client_context;
  std::vector<zmq::socket_t> dealers;
  for (int t = 0; t < threads; ++t) {
    dealers.emplace_back(client_context, zmq::socket_type::dealer);
    dealers.back().set(zmq::sockopt::linger, 0);
    dealers.back().connect(ep);
  }
  const std::string request(64, 'q');
  const double seconds = Timed(threads, ops, [&](int t, size_t) {
    dealers[t].send(zmq::buffer(request), zmq::send_flags::none);
    zmq::message_t reply;
    if (!dealers[t].recv(reply) || reply.size() != reply_bytes) Die("zmq echo failed");
  });
  done = true;
  server.join();
  dealers.clear();
  return seconds;
}

// The loopback floor under the node's reads: what a round trip costs, and
// how fast a whole shard can cross, before any disk or node work.
void PrintCeiling(size_t small_ops, size_t shard_ops) {
  std::cout << "\nThe floor under every get: round trips with nothing behind them\n";
  std::cout << fmt::format("{:<34} {:>7} {:>7} | {:>10} {:>12} {:>10}\n", "round trip", "reply",
                           "clients", "op/s", "us per op", "MiB/s");
  std::cout << std::string(90, '-') << "\n";
  for (auto [reply, ops] : {std::pair{kSmallRead, small_ops}, std::pair{kShardBytes, shard_ops}}) {
    for (int threads : {1, 8}) {
      const double tcp = TcpEchoSeconds(threads, ops, reply);
      const double zmq = ZmqEchoSeconds(threads, ops, reply);
      for (auto [name, seconds] : {std::pair{"plain TCP, blocking sockets", tcp},
                                   std::pair{"ZeroMQ DEALER -> ROUTER thread", zmq}}) {
        std::cout << fmt::format("{:<34} {:>7} {:>7} | {:>10.0f} {:>12.1f} {:>10.1f}\n", name,
                                 reply == kSmallRead ? "4 KiB" : "4 MiB", threads, ops / seconds,
                                 1e6 * seconds * threads / ops,
                                 ops * (reply / 1048576.0) / seconds);
      }
    }
  }
}

struct Settings {
  std::string node_binary;
  size_t shards = 64;
  size_t sync_shards = 32;
  size_t reads = 20000;
};

// Starts a node (with the key file `key_path`, or --insecure if it is
// empty), runs the whole matrix against it and next to plain files, stops
// the node. The process key must already match (TestKey, or none).
std::vector<Row> RunMatrix(const Settings& settings, const TempDir& dir, const std::string& mode,
                           const std::string& key_path) {
  const std::string node_dir = dir.Sub("node-" + mode);
  const std::string plain_dir = dir.Sub("plain-" + mode);
  std::filesystem::create_directories(plain_dir);
  const uint16_t port = FreeTcpPort();
  if (port == 0) Die("no free port");
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(port);
  DaemonProcess::Options o;
  o.argv = {settings.node_binary,
            "--data",
            node_dir,
            "--listen",
            ep,
            "--log-level",
            "warn",
            "--cluster",
            "node-bench-" + std::to_string(getpid()),
            "--beacon-port",
            std::to_string(FreeUdpPort())};
  if (key_path.empty()) {
    o.argv.push_back("--insecure");
  } else {
    o.argv.insert(o.argv.end(), {"--key", key_path});
  }
  o.log_path = dir.Sub("node-" + mode + ".log");
  auto started = DaemonProcess::Start(o);
  Check(started.status(), "start " + settings.node_binary);
  DaemonProcess node = std::move(started).value();

  zmq::context_t context;
  {
    NodeClient::Options quick;
    quick.attempt_timeout = 200ms;
    quick.attempts = 1;
    NodeClient probe(context, quick);
    if (!WaitUntil([&] { return probe.Ping(ep).ok(); }, 15s)) {
      Die("shardfs-node (" + mode + ") does not answer:\n" + node.ReadLog());
    }
  }
  std::cout << fmt::format("node_bench: {} run, shardfs-node at {}\n", mode, ep);

  // One random 4 MiB buffer per thread, hashed up front as a client would.
  constexpr int kMaxThreads = 8;
  std::vector<std::string> buffers;
  std::vector<uint64_t> hashes;
  for (int t = 0; t < kMaxThreads; ++t) {
    buffers.push_back(RandomBytes(t + 1, kShardBytes));
    hashes.push_back(Hash(buffers.back()));
  }
  std::vector<std::unique_ptr<NodeClient>> clients;
  for (int t = 0; t < kMaxThreads; ++t) {
    clients.push_back(std::make_unique<NodeClient>(context));
    Check(clients.back()->Ping(ep), "ping");
  }

  const size_t reads = settings.reads;
  std::vector<Row> rows;
  uint64_t next_inode = 1;
  for (int threads : {1, 8}) {
    for (bool sync : {false, true}) {
      const size_t n = sync ? settings.sync_shards : settings.shards;
      const uint64_t inode = next_inode++;
      Row put{sync ? "put 4 MiB, sync" : "put 4 MiB", threads, n, kShardBytes};
      put.node_seconds = Timed(threads, n, [&](int t, size_t op) {
        Check(clients[t]->Put(ep, ShardKey{inode, static_cast<uint32_t>(op), 1}, buffers[t], sync,
                              hashes[t]),
              "put");
      });
      const std::string prefix = fmt::format("f{}-", inode);
      put.plain_seconds = Timed(threads, n, [&](int t, size_t op) {
        PlainWrite(plain_dir, prefix + std::to_string(op), buffers[t], sync);
      });
      rows.push_back(put);
      if (sync) continue;

      Row get{"get 4 MiB", threads, n, kShardBytes};
      get.node_seconds = Timed(threads, n, [&](int t, size_t op) {
        auto r = clients[t]->Get(ep, ShardKey{inode, static_cast<uint32_t>(op), 1}, 0, kShardBytes);
        Check(r.status(), "get");
        if (r->bytes.size() != kShardBytes) Die("short get");
      });
      get.plain_seconds = Timed(threads, n, [&](int, size_t op) {
        std::string buffer;
        PlainRead(plain_dir + "/" + prefix + std::to_string(op), 0, kShardBytes, &buffer);
      });
      rows.push_back(get);

      // The same (shard, offset) sequence for both columns.
      std::vector<std::pair<uint32_t, uint64_t>> targets(reads);
      std::mt19937_64 rng(threads);
      for (auto& [shard, offset] : targets) {
        shard = static_cast<uint32_t>(rng() % n);
        offset = (rng() % (kShardBytes / kSmallRead)) * kSmallRead;
      }
      Row small{"read 4 KiB, random", threads, reads, kSmallRead};
      small.node_seconds = Timed(threads, reads, [&](int t, size_t op) {
        auto r = clients[t]->Get(ep, ShardKey{inode, targets[op].first, 1}, targets[op].second,
                                 kSmallRead);
        Check(r.status(), "get 4 KiB");
        if (r->bytes.size() != kSmallRead) Die("short 4 KiB read");
      });
      small.plain_seconds = Timed(threads, reads, [&](int, size_t op) {
        std::string buffer;
        PlainRead(plain_dir + "/" + prefix + std::to_string(targets[op].first), targets[op].second,
                  kSmallRead, &buffer);
      });
      rows.push_back(small);
    }
  }
  clients.clear();
  int status = node.Stop(SIGTERM, 10s);
  if (!DaemonProcess::ExitedWith(status, 0)) Die("shardfs-node did not exit cleanly");
  return rows;
}

// Node throughput with CURVE next to without, row by row.
void PrintCost(const std::vector<Row>& insecure, const std::vector<Row>& curve) {
  std::cout << fmt::format("{:<22} {:>7} | {:>14} {:>14} | {:>12}\n", "operation", "clients",
                           "insecure MiB/s", "CURVE MiB/s", "CURVE/insec.");
  std::cout << std::string(78, '-') << "\n";
  for (size_t i = 0; i < insecure.size() && i < curve.size(); ++i) {
    const Row& a = insecure[i];
    const Row& b = curve[i];
    const double mib = static_cast<double>(a.ops * a.bytes_per_op) / (1 << 20);
    const double mib_b = static_cast<double>(b.ops * b.bytes_per_op) / (1 << 20);
    std::cout << fmt::format("{:<22} {:>7} | {:>14.1f} {:>14.1f} | {:>11.0f}%\n", a.op, a.clients,
                             mib / a.node_seconds, mib_b / b.node_seconds,
                             100.0 * a.node_seconds / b.node_seconds);
  }
}

}  // namespace
}  // namespace shardfs

int main(int argc, char** argv) {
  using namespace shardfs;
  Settings settings;
  settings.node_binary = BuildPath("nodeserver/shardfs-node");
  std::string base_dir;
  std::string security = "both";
  CLI::App app{"node_bench: shardfs-node over loopback next to plain write(2)/read(2)"};
  app.add_option("--node", settings.node_binary, "the shardfs-node binary")->capture_default_str();
  app.add_option("--dir", base_dir, "directory on the disk to measure (default: $TMPDIR)");
  app.add_option("--shards", settings.shards, "4 MiB shards per put/get run")
      ->capture_default_str();
  app.add_option("--sync-shards", settings.sync_shards, "4 MiB shards per synced put run")
      ->capture_default_str();
  app.add_option("--reads", settings.reads, "4 KiB reads per run")->capture_default_str();
  app.add_option("--security", security,
                 "both: a run with a cluster key (CURVE) and one without (--insecure); or one")
      ->check(CLI::IsMember({"both", "curve", "insecure"}))
      ->capture_default_str();
  bool ceiling = true;
  app.add_flag("!--no-ceiling", ceiling, "skip the round trips with nothing behind them");
  CLI11_PARSE(app, argc, argv);
  if (!base_dir.empty()) setenv("TMPDIR", base_dir.c_str(), 1);
  // Each node gets its key (or --insecure) on its command line.
  unsetenv("SHARDFS_KEY");
  // Alone in a cluster of its own: no registry traffic in the measurement.
  unsetenv("SHARDFS_REGISTRY");

  TempDir dir("node-bench");
  struct statfs fs {};
  ::statfs(dir.path().c_str(), &fs);
  std::cout << fmt::format("node_bench: data and plain files under {} (fs type 0x{:x}), {} CPUs\n",
                           dir.path(), static_cast<uint64_t>(fs.f_type),
                           std::thread::hardware_concurrency());

  if (ceiling) PrintCeiling(settings.reads, settings.shards);
  std::vector<Row> insecure_rows;
  std::vector<Row> curve_rows;
  if (security != "curve") insecure_rows = RunMatrix(settings, dir, "insecure", "");
  if (security != "insecure") {
    // This process's clients use the key while it lives; the node reads it
    // from the file.
    TestKey key(dir.Sub("cluster.key"));
    curve_rows = RunMatrix(settings, dir, "curve", key.path());
  }
  const char* note =
      "node % = plain time / node time: the share of plain-file speed the node reaches.\n";
  if (!insecure_rows.empty()) {
    std::cout << "\nWithout a cluster key (--insecure, plain TCP):\n";
    PrintTable(insecure_rows);
  }
  if (!curve_rows.empty()) {
    std::cout << "\nWith a cluster key (CURVE on every connection):\n";
    PrintTable(curve_rows);
  }
  std::cout << "\n" << note;
  if (!insecure_rows.empty() && !curve_rows.empty()) {
    std::cout << "\nThe cost of encryption (node throughput; CURVE/insec. = insecure time / "
                 "CURVE time):\n";
    PrintCost(insecure_rows, curve_rows);
  }
  return 0;
}
