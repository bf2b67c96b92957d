// BeaconSender: the registry's once-a-second UDP announcement of itself.
//
// `--beacon` says where the beacon goes:
//   (default)       127.255.255.255, the loopback broadcast: one machine, no flags
//   lan[:PORT]      the broadcast address of every up, non-loopback interface
//                   that can broadcast (re-read every round, so interfaces that
//                   come up later are covered)
//   ADDR[:PORT]     one address (a subnet's broadcast address or a unicast host)
//   off             no beacon; clients need --registry
// Several targets may be given separated by commas. The port defaults to
// --beacon-port (7400).
//
// A registry bound to every interface (tcp://0.0.0.0:7400) is not reachable
// at 0.0.0.0, so each target's beacon carries the address of the interface
// the datagram leaves from (127.0.0.1 on loopback): what a receiver on that
// subnet can connect to.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "protocol/beacon.h"
#include "src/status.h"
#include "src/unique_fd.h"

namespace shardfs {

inline constexpr std::string_view kLoopbackBroadcast = "127.255.255.255";

// One parsed element of --beacon.
struct BeaconSpec {
  enum class Kind { kLan, kAddress };
  Kind kind = Kind::kAddress;
  std::string address;  // dotted IPv4, for kAddress
  uint16_t port = kDefaultBeaconPort;
};

// Parses a --beacon value. "off" gives an empty list; "" gives the default
// (the loopback broadcast address).
Result<std::vector<BeaconSpec>> ParseBeaconSpecs(std::string_view value, uint16_t default_port);

// Where one beacon datagram goes and which local address it leaves from.
struct BeaconTarget {
  std::string address;  // destination, dotted IPv4
  uint16_t port = 0;
  std::string source;  // local interface address used to reach it
  bool operator==(const BeaconTarget&) const = default;
};

// Resolves specs to targets as the network looks now. A spec that cannot be
// reached (no route) is left out with a warning; an empty result is not an
// error (the network may come up later).
std::vector<BeaconTarget> ResolveBeaconTargets(const std::vector<BeaconSpec>& specs);

// The local IPv4 address the kernel would send from to reach `address`
// (nothing is sent). Works for broadcast addresses too.
Result<std::string> SourceAddressToward(std::string_view address);

// `endpoint` with a wildcard host replaced by `source`; unchanged otherwise.
std::string AdvertisedEndpoint(std::string_view endpoint, std::string_view source);

// Sends the beacon every `interval` on its own thread. Start/Stop from one
// owning thread (the registry's main thread); sent() is thread-safe.
class BeaconSender {
 public:
  struct Options {
    std::vector<BeaconSpec> specs;
    // The registry's endpoints as bound; wildcard hosts are filled in per target.
    BeaconInfo info;
    std::chrono::milliseconds interval{1000};
  };

  explicit BeaconSender(Options options);
  ~BeaconSender();
  BeaconSender(const BeaconSender&) = delete;
  BeaconSender& operator=(const BeaconSender&) = delete;

  // Opens the socket and starts the thread. Does nothing when specs is empty.
  Status Start();
  void Stop();
  // Datagrams sent so far (for tests and status).
  uint64_t sent() const { return sent_.load(); }

 private:
  void Loop();
  void SendRound();

  const Options options_;
  UniqueFd fd_;
  std::vector<BeaconTarget> last_targets_;  // used by the sender thread only
  std::atomic<uint64_t> sent_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace shardfs
