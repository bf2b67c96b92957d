#include "protocol/beacon.h"

#include <msgpack.hpp>

#include "protocol/fields.h"

namespace shardfs {
namespace {

Status Bad(std::string message) {
  return Status::Error(ErrorCode::kBadMessage, std::move(message));
}

// Tight parser bounds: a beacon is four scalars, so nothing in it may claim
// more than a handful of items or be deeper than one map.
msgpack::unpack_limit BeaconLimits() {
  return msgpack::unpack_limit(/*array=*/8, /*map=*/16, /*str=*/kMaxBeaconBytes,
                               /*bin=*/kMaxBeaconBytes, /*ext=*/0, /*depth=*/2);
}

bool IsHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

Status ValidateConnectable(std::string_view what, std::string_view endpoint) {
  auto parsed = ParseTcpEndpoint(endpoint);
  if (!parsed.ok()) return Bad(std::string(what) + ": " + parsed.status().message());
  if (parsed->port == 0) return Bad(std::string(what) + " has port 0");
  return Status::Ok();
}

}  // namespace

bool TcpEndpoint::IsWildcard() const {
  return host == "*" || host == "0.0.0.0" || host == "[::]";
}

std::string TcpEndpoint::ToString() const {
  return "tcp://" + host + ":" + std::to_string(port);
}

Result<TcpEndpoint> ParseTcpEndpoint(std::string_view endpoint) {
  constexpr std::string_view kScheme = "tcp://";
  if (endpoint.size() > kMaxEndpointLength) return Bad("endpoint is too long");
  if (endpoint.substr(0, kScheme.size()) != kScheme) {
    return Bad("endpoint '" + std::string(endpoint) + "' does not start with tcp://");
  }
  std::string_view rest = endpoint.substr(kScheme.size());
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
    return Bad("endpoint '" + std::string(endpoint) + "' is not tcp://HOST:PORT");
  }
  std::string_view host = rest.substr(0, colon);
  std::string_view port = rest.substr(colon + 1);
  if (host.front() == '[') {
    // IPv6 literal: hex digits, colons and dots between the brackets.
    if (host.size() < 3 || host.back() != ']') return Bad("bad IPv6 host in endpoint");
    for (char c : host.substr(1, host.size() - 2)) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                c == ':' || c == '.';
      if (!ok) return Bad("bad IPv6 host in endpoint");
    }
  } else if (host != "*") {
    for (char c : host) {
      if (!IsHostChar(c)) return Bad("bad character in endpoint host");
    }
  }
  if (port.size() > 5) return Bad("endpoint port out of range");
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return Bad("endpoint port is not a number");
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return Bad("endpoint port out of range");
  return TcpEndpoint{std::string(host), static_cast<uint16_t>(value)};
}

Status ValidateClusterName(std::string_view name) {
  if (name.empty()) return Bad("cluster name is empty");
  if (name.size() > kMaxClusterNameLength) return Bad("cluster name is too long");
  for (char c : name) {
    if (!IsHostChar(c)) return Bad("cluster name may only hold letters, digits, '.', '-', '_'");
  }
  return Status::Ok();
}

Result<std::string> EncodeBeacon(const BeaconInfo& info) {
  SHARDFS_RETURN_IF_ERROR(ValidateClusterName(info.cluster));
  SHARDFS_RETURN_IF_ERROR(ValidateConnectable("registry endpoint", info.registry_endpoint));
  SHARDFS_RETURN_IF_ERROR(ValidateConnectable("publish endpoint", info.publish_endpoint));
  FieldWriter w;
  w.U64("v", info.version)
      .Str("c", info.cluster)
      .Str("r", info.registry_endpoint)
      .Str("p", info.publish_endpoint);
  std::string out(kBeaconMagic);
  out += w.Finish();
  if (out.size() > kMaxBeaconBytes) return Bad("beacon is too large");
  return out;
}

Result<BeaconInfo> DecodeBeacon(std::string_view datagram) {
  if (datagram.size() > kMaxBeaconBytes) return Bad("beacon is too large");
  if (datagram.size() <= kBeaconMagic.size() ||
      datagram.substr(0, kBeaconMagic.size()) != kBeaconMagic) {
    return Bad("not a shardfs beacon");
  }
  std::string_view body = datagram.substr(kBeaconMagic.size());
  msgpack::object_handle handle;
  std::size_t offset = 0;
  try {
    msgpack::unpack(handle, body.data(), body.size(), offset, nullptr, nullptr, BeaconLimits());
  } catch (const std::exception& e) {
    return Bad(std::string("undecodable beacon: ") + e.what());
  }
  if (offset != body.size()) return Bad("trailing bytes after beacon");
  SHARDFS_ASSIGN_OR_RETURN(FieldReader fields, FieldReader::FromObject(handle.get()));
  BeaconInfo info;
  SHARDFS_ASSIGN_OR_RETURN(uint64_t version, fields.U64("v", UINT16_MAX));
  info.version = static_cast<uint16_t>(version);
  SHARDFS_ASSIGN_OR_RETURN(info.cluster, fields.Str("c", kMaxClusterNameLength));
  SHARDFS_RETURN_IF_ERROR(ValidateClusterName(info.cluster));
  SHARDFS_ASSIGN_OR_RETURN(info.registry_endpoint, fields.Str("r", kMaxEndpointLength));
  SHARDFS_RETURN_IF_ERROR(ValidateConnectable("registry endpoint", info.registry_endpoint));
  SHARDFS_ASSIGN_OR_RETURN(info.publish_endpoint, fields.Str("p", kMaxEndpointLength));
  SHARDFS_RETURN_IF_ERROR(ValidateConnectable("publish endpoint", info.publish_endpoint));
  return info;
}

}  // namespace shardfs
