// The discovery beacon: the UDP datagram a registry broadcasts every second.
//
// Nodes and mounts started without --registry listen for it to learn where the
// registry's request (ROUTER) and publish (PUB) sockets are. The datagram is a
// 4-byte magic followed by one MessagePack map {v, c, r, p}: protocol
// version, cluster name, registry request endpoint, publish endpoint. Anyone
// on the subnet can send us datagrams, so DecodeBeacon() treats its input as
// hostile: it checks the size, the magic, every field's type and every
// endpoint's syntax, and returns an error value for anything else.
//
// Also here, because both ends of every socket need them: the syntax of a
// ZeroMQ tcp endpoint and of a cluster name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "src/status.h"

namespace shardfs {

// UDP port the beacon goes to unless --beacon ADDR:PORT / --beacon-port say
// otherwise (the same number as the registry's default TCP port).
inline constexpr uint16_t kDefaultBeaconPort = 7400;
// A beacon larger than this is not ours. Small enough to never fragment.
inline constexpr size_t kMaxBeaconBytes = 1200;
inline constexpr std::string_view kBeaconMagic = "SFSB";
inline constexpr size_t kMaxClusterNameLength = 64;
inline constexpr size_t kMaxEndpointLength = 256;

struct BeaconInfo {
  uint16_t version = 0;           // protocol version of the sending registry
  std::string cluster;            // --cluster of the registry
  std::string registry_endpoint;  // tcp://HOST:PORT of the request socket
  std::string publish_endpoint;   // tcp://HOST:PORT+1 of the cluster-map PUB socket
};

// Encodes `info` as it is (the caller fills in version, normally
// kProtocolVersion). Fails only if a field is invalid or too long.
Result<std::string> EncodeBeacon(const BeaconInfo& info);
// Validates the whole datagram. A different protocol version is NOT an error
// here (the caller logs and ignores it); everything malformed is kBadMessage.
Result<BeaconInfo> DecodeBeacon(std::string_view datagram);

// A parsed "tcp://HOST:PORT". HOST is a name, a dotted IPv4 address, "*", or a
// bracketed IPv6 address (kept with its brackets).
struct TcpEndpoint {
  std::string host;
  uint16_t port = 0;

  // "*", "0.0.0.0" or "[::]": bound to every interface, not connectable.
  bool IsWildcard() const;
  std::string ToString() const;  // tcp://HOST:PORT
};

// Port 0 is accepted (bind to any free port); callers that need a
// connectable endpoint check for it.
Result<TcpEndpoint> ParseTcpEndpoint(std::string_view endpoint);

// Cluster names: 1..64 characters of [A-Za-z0-9._-].
Status ValidateClusterName(std::string_view name);

}  // namespace shardfs
