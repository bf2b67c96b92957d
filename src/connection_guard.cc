#include "src/connection_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fmt/format.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace shardfs {
namespace {

// What arrives beyond the frames' own bytes: the ZMTP greeting and the
// security handshake once per connection (under 1 KiB), and per frame its
// header (CURVE wraps each frame in a MESSAGE command with a nonce and a
// MAC). Generous, since overestimating only makes the guard more lenient,
// but not so generous that thousands of connections could each hide much
// below it. (The server sends no ZMTP heartbeats, so no PONGs arrive.)
constexpr uint64_t kHandshakeAllowance = 4u << 10;
constexpr uint64_t kPerFrameAllowance = 96;
constexpr auto kLogInterval = std::chrono::seconds(10);

// "ip:port" of either end of a socket; "" if it has none.
std::string AddressOf(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return fmt::format("{}:{}", host, ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
  }
  return "";
}

std::string PeerOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return AddressOf(ss);
}

// The local TCP port of `fd`, or 0 if it is not an IP socket.
uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

struct Connection {
  int fd = -1;
  std::string address;
  uint64_t received = 0;  // bytes the kernel took in, less those still unread
  uint64_t acked = 0;     // bytes the peer acknowledged
  uint64_t usage = 0;     // what libzmq is estimated to hold for it
};

// The TCP connections accepted on `port`, read from the kernel.
std::vector<Connection> ListConnections(uint16_t port) {
  std::vector<Connection> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  const int dir_fd = dirfd(dir);
  while (dirent* d = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(d->d_name, &end, 10);
    if (end == d->d_name || *end != '\0' || fd == dir_fd) continue;
    if (LocalPort(static_cast<int>(fd)) != port) continue;
    Connection c;
    c.fd = static_cast<int>(fd);
    c.address = PeerOf(c.fd);
    if (c.address.empty()) continue;  // the listening socket
    tcp_info info{};
    socklen_t len = sizeof(info);
    if (getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) continue;
    // Older kernels fill a shorter struct: without the byte counters the
    // connection cannot be judged, so it is left alone.
    if (len < offsetof(tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received)) continue;
    int unread = 0;
    if (ioctl(c.fd, SIOCINQ, &unread) != 0) unread = 0;
    c.received = info.tcpi_bytes_received -
                 std::min<uint64_t>(info.tcpi_bytes_received, static_cast<uint64_t>(unread));
    c.acked = info.tcpi_bytes_acked;
    out.push_back(std::move(c));
  }
  closedir(dir);
  return out;
}

}  // namespace

uint16_t PortOfEndpoint(std::string_view endpoint) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos) return 0;
  uint32_t port = 0;
  for (char c : endpoint.substr(colon + 1)) {
    if (c < '0' || c > '9') return 0;
    port = port * 10 + static_cast<uint32_t>(c - '0');
    if (port > 65535) return 0;
  }
  return static_cast<uint16_t>(port);
}

ConnectionGuard::ConnectionGuard(uint16_t port, Limits limits) : port_(port), limits_(limits) {}

ConnectionGuard::~ConnectionGuard() {
  Stop();
}

void ConnectionGuard::Start() {
  if (thread_.joinable() || port_ == 0) return;
  thread_ = std::thread([this] { Loop(); });
}

void ConnectionGuard::Stop() {
  {
    std::lock_guard<std::mutex> lock(run_mu_);
    stopping_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionGuard::Loop() {
  std::unique_lock<std::mutex> lock(run_mu_);
  while (!run_cv_.wait_for(lock, limits_.interval, [this] { return stopping_; })) {
    lock.unlock();
    Scan();
    lock.lock();
  }
}

ConnectionGuard::Ticket ConnectionGuard::Received(int fd, std::string_view routing_id,
                                                  uint64_t bytes, uint64_t frames) {
  if (fd < 0) return Ticket{};
  // Routing ids libzmq makes start with a zero byte and are never reused by
  // a socket, so the same one on the same fd is the same connection. An id
  // the peer chose may come back on a new connection: ask the kernel.
  const bool generated = !routing_id.empty() && routing_id[0] == '\0';
  std::string address;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(fd);
    if (it != entries_.end() && generated && it->second.routing_id == routing_id) {
      Entry& e = it->second;
      e.received_bytes += bytes;
      e.received_frames += frames;
      e.epoch = epoch_;
      return Ticket{fd, e.serial};
    }
  }
  address = PeerOf(fd);  // a system call: outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[fd];
  if (e.serial == 0 || e.routing_id != routing_id || e.address != address) {
    e = Entry{};
    e.routing_id = std::string(routing_id);
    e.address = std::move(address);
    e.serial = ++next_serial_;
  }
  e.received_bytes += bytes;
  e.received_frames += frames;
  e.epoch = epoch_;
  return Ticket{fd, e.serial};
}

void ConnectionGuard::Sent(const Ticket& ticket, uint64_t bytes, uint64_t /*frames*/) {
  if (ticket.fd < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(ticket.fd);
  if (it == entries_.end() || it->second.serial != ticket.serial) return;  // gone
  it->second.sent_bytes += bytes;
}

size_t ConnectionGuard::Scan() {
  std::lock_guard<std::mutex> scan_lock(scan_mu_);
  uint64_t listed_epoch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listed_epoch = ++epoch_;
  }
  std::vector<Connection> connections = ListConnections(port_);
  uint64_t total = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::unordered_map<int, bool> listed;
    listed.reserve(connections.size());
    for (Connection& c : connections) {
      listed[c.fd] = true;
      auto it = entries_.find(c.fd);
      const Entry* e =
          it != entries_.end() && it->second.address == c.address ? &it->second : nullptr;
      const uint64_t handed_over = e != nullptr ? e->received_bytes : 0;
      const uint64_t allowance =
          kHandshakeAllowance + kPerFrameAllowance * (e != nullptr ? e->received_frames : 0);
      const uint64_t inbound =
          c.received > handed_over + allowance ? c.received - handed_over - allowance : 0;
      const uint64_t sent = e != nullptr ? e->sent_bytes : 0;
      const uint64_t outbound = sent > c.acked ? sent - c.acked : 0;
      c.usage = inbound + outbound;
      total += c.usage;
    }
    // Forget connections that are gone, but not one whose first message
    // arrived after the listing was made.
    std::erase_if(entries_, [&](const auto& kv) {
      return kv.second.epoch < listed_epoch && !listed.contains(kv.first);
    });
  }
  uint64_t peak = peak_total_.load();
  while (total > peak && !peak_total_.compare_exchange_weak(peak, total)) {
  }

  std::vector<const Connection*> drop;
  std::vector<const Connection*> by_usage;
  for (const Connection& c : connections) {
    if (c.usage > limits_.max_bytes_per_connection) {
      drop.push_back(&c);
      total -= c.usage;
    } else if (c.usage > 0) {
      by_usage.push_back(&c);
    }
  }
  if (total > limits_.max_bytes_total) {
    std::sort(by_usage.begin(), by_usage.end(),
              [](const Connection* a, const Connection* b) { return a->usage > b->usage; });
    for (const Connection* c : by_usage) {
      if (total <= limits_.max_bytes_total) break;
      drop.push_back(c);
      total -= c->usage;
    }
  }
  size_t dropped = 0;
  for (const Connection* c : drop) {
    // The fd may have been closed and reused since the listing: only the
    // same peer is cut off.
    if (PeerOf(c->fd) != c->address) continue;
    if (shutdown(c->fd, SHUT_RDWR) != 0) continue;
    ++dropped;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log_ >= kLogInterval) {
      spdlog::warn(
          "rpc: dropped the connection from {} on port {}: it held {} bytes of unfinished "
          "messages or unread replies{}",
          c->address, port_, c->usage,
          unlogged_drops_ > 0
              ? fmt::format(" ({} more dropped since the last report)", unlogged_drops_)
              : "");
      last_log_ = now;
      unlogged_drops_ = 0;
    } else {
      ++unlogged_drops_;
    }
  }
  dropped_ += dropped;
  return dropped;
}

}  // namespace shardfs
