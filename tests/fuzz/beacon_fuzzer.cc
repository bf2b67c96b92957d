// Fuzz target: DecodeBeacon() and the endpoint and cluster-name syntax.
//
// Beacons are UDP datagrams that anyone on the subnet can send to a node or a
// mount looking for its registry, before any key is involved, so
// DecodeBeacon() must turn every byte string into a BeaconInfo or a
// kBadMessage error. The input is tried twice: as a whole datagram, and as
// the body after the magic (so mutations of the MessagePack map are not
// wasted on breaking the magic). What decodes must hold a valid cluster name
// and two connectable tcp:// endpoints, and must encode again into a beacon
// that decodes to the same thing. The input is also parsed as an endpoint
// and a cluster name: an endpoint that parses prints as text that parses to
// the same host and port.
//
// Built with libFuzzer under clang (-Dfuzz=true) and, through
// fuzz_replay_test.cc, as a bounded test in every ordinary build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/beacon.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace shardfs;

void CheckConnectable(const std::string& endpoint) {
  FUZZ_CHECK(endpoint.size() <= kMaxEndpointLength);
  auto parsed = ParseTcpEndpoint(endpoint);
  FUZZ_CHECK(parsed.ok() && parsed->port != 0);
}

void DecodeDatagram(std::string_view datagram) {
  auto info = DecodeBeacon(datagram);
  if (!info.ok()) {
    FUZZ_CHECK(info.status().code() == ErrorCode::kBadMessage);
    return;
  }
  FUZZ_CHECK(datagram.size() <= kMaxBeaconBytes);
  FUZZ_CHECK(ValidateClusterName(info->cluster).ok());
  CheckConnectable(info->registry_endpoint);
  CheckConnectable(info->publish_endpoint);
  // What a registry could have sent, it can send again: the largest valid
  // fields still fit in a datagram.
  auto again = EncodeBeacon(*info);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() <= kMaxBeaconBytes);
  auto info2 = DecodeBeacon(*again);
  FUZZ_CHECK(info2.ok());
  FUZZ_CHECK(info2->version == info->version && info2->cluster == info->cluster &&
             info2->registry_endpoint == info->registry_endpoint &&
             info2->publish_endpoint == info->publish_endpoint);
}

void ParseEndpoint(std::string_view text) {
  auto ep = ParseTcpEndpoint(text);
  if (!ep.ok()) {
    FUZZ_CHECK(ep.status().code() == ErrorCode::kBadMessage);
    return;
  }
  FUZZ_CHECK(text.size() <= kMaxEndpointLength && !ep->host.empty());
  // The printed form parses back to the same endpoint (ports may lose
  // leading zeros on the way).
  auto again = ParseTcpEndpoint(ep->ToString());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->host == ep->host && again->port == ep->port);
  FUZZ_CHECK(again->IsWildcard() == ep->IsWildcard());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  DecodeDatagram(bytes);
  if (size <= kMaxBeaconBytes) {
    std::string datagram(kBeaconMagic);
    datagram.append(bytes);
    DecodeDatagram(datagram);
  }
  ParseEndpoint(bytes);
  Status name = ValidateClusterName(bytes);
  FUZZ_CHECK(name.ok() || name.code() == ErrorCode::kBadMessage);
  if (name.ok()) FUZZ_CHECK(size >= 1 && size <= kMaxClusterNameLength);
  return 0;
}
