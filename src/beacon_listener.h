// BeaconListener: how a node server or mount given no --registry finds one.
//
// Binds UDP 0.0.0.0:PORT with SO_REUSEADDR and SO_REUSEPORT, so several
// programs on one machine (a node, a mount, a test) can all listen for the
// beacon on the same port: broadcast datagrams are delivered to every socket
// bound to the port. Beacons of another cluster name or protocol version are
// ignored (logged once per sender, so a neighbouring cluster does not flood
// the log), and garbage is dropped. A beacon whose endpoints carry a wildcard
// host gets the sender's address instead, so what comes out is connectable.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "protocol/beacon.h"
#include "src/status.h"
#include "src/unique_fd.h"

namespace shardfs {

// Used by one thread at a time.
class BeaconListener {
 public:
  // Binds the port; fails if it cannot (another program bound it without
  // SO_REUSEPORT).
  static Result<BeaconListener> Open(uint16_t port);

  // Waits up to `timeout` for a beacon of `cluster` with our protocol
  // version. kTimeout when none came.
  Result<BeaconInfo> Wait(std::string_view cluster, std::chrono::milliseconds timeout);

  uint16_t port() const { return port_; }

 private:
  BeaconListener(UniqueFd fd, uint16_t port) : fd_(std::move(fd)), port_(port) {}

  UniqueFd fd_;
  uint16_t port_ = 0;
  std::set<std::string> reported_;  // senders already logged as ignored
};

// One-shot convenience: open, wait, close.
Result<BeaconInfo> WaitForBeacon(std::string_view cluster, uint16_t port,
                                 std::chrono::milliseconds timeout);

}  // namespace shardfs
