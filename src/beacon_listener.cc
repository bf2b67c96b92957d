#include "src/beacon_listener.h"

#include <arpa/inet.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "protocol/message_type.h"
#include "src/beacon_sender.h"

namespace shardfs {

Result<BeaconListener> BeaconListener::Open(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    return Status::Error(ErrnoToErrorCode(errno), std::string("beacon socket: ") + strerror(errno));
  }
  int on = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
    return Status::Error(ErrnoToErrorCode(errno), std::string("beacon socket: ") + strerror(errno));
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = htons(port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    return Status::Error(
        ErrorCode::kUnavailable,
        "cannot listen for beacons on UDP port " + std::to_string(port) + ": " + strerror(errno));
  }
  return BeaconListener(std::move(fd), port);
}

Result<BeaconInfo> BeaconListener::Wait(std::string_view cluster,
                                        std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  // One byte more than a beacon may have, so an oversized datagram is seen
  // as such instead of being silently truncated into something decodable.
  char buf[kMaxBeaconBytes + 1];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    pollfd pfd{fd_.get(), POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) {
      return Status::Error(ErrorCode::kIoError, std::string("beacon poll: ") + strerror(errno));
    }
    if (ready <= 0) {
      if (Clock::now() >= deadline) {
        return Status::Error(ErrorCode::kTimeout, "no beacon of cluster '" + std::string(cluster) +
                                                      "' on UDP port " + std::to_string(port_) +
                                                      " within " + std::to_string(timeout.count()) +
                                                      " ms");
      }
      continue;
    }
    sockaddr_in from{};
    socklen_t from_len = sizeof(from);
    ssize_t n =
        recvfrom(fd_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) continue;  // EAGAIN after a spurious wakeup
    char sender_buf[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &from.sin_addr, sender_buf, sizeof(sender_buf));
    const std::string sender = sender_buf;
    auto info = DecodeBeacon(std::string_view(buf, static_cast<size_t>(n)));
    if (!info.ok()) {
      spdlog::debug("beacon: dropped a datagram from {}: {}", sender, info.status().ToString());
      continue;
    }
    if (info->cluster != cluster || info->version != kProtocolVersion) {
      if (reported_.insert(sender + " " + info->cluster + " " + std::to_string(info->version))
              .second) {
        spdlog::info(
            "beacon: ignoring registry {} from {}: cluster '{}' protocol {} (we want cluster '{}' "
            "protocol {})",
            info->registry_endpoint, sender, info->cluster, info->version, cluster,
            kProtocolVersion);
      }
      continue;
    }
    info->registry_endpoint = AdvertisedEndpoint(info->registry_endpoint, sender);
    info->publish_endpoint = AdvertisedEndpoint(info->publish_endpoint, sender);
    return std::move(info).value();
  }
}

Result<BeaconInfo> WaitForBeacon(std::string_view cluster, uint16_t port,
                                 std::chrono::milliseconds timeout) {
  SHARDFS_ASSIGN_OR_RETURN(BeaconListener listener, BeaconListener::Open(port));
  return listener.Wait(cluster, timeout);
}

}  // namespace shardfs
