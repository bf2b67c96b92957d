#include "src/beacon_sender.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace shardfs {
namespace {

Status Invalid(std::string message) {
  return Status::Error(ErrorCode::kInvalidArgument, std::move(message));
}

Result<in_addr> ParseIpv4(std::string_view text) {
  in_addr addr{};
  std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), &addr) != 1) {
    return Invalid("'" + s + "' is not an IPv4 address");
  }
  return addr;
}

std::string FormatIpv4(in_addr addr) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &addr, buf, sizeof(buf));
  return buf;
}

Result<BeaconSpec> ParseOneSpec(std::string_view item, uint16_t default_port) {
  BeaconSpec spec;
  spec.port = default_port;
  size_t colon = item.find(':');
  std::string_view address = item.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view port = item.substr(colon + 1);
    uint32_t value = 0;
    if (port.empty() || port.size() > 5)
      return Invalid("bad beacon port in '" + std::string(item) + "'");
    for (char c : port) {
      if (c < '0' || c > '9') return Invalid("bad beacon port in '" + std::string(item) + "'");
      value = value * 10 + static_cast<uint32_t>(c - '0');
    }
    if (value == 0 || value > 65535)
      return Invalid("beacon port out of range in '" + std::string(item) + "'");
    spec.port = static_cast<uint16_t>(value);
  }
  if (address == "lan") {
    spec.kind = BeaconSpec::Kind::kLan;
    return spec;
  }
  SHARDFS_ASSIGN_OR_RETURN(in_addr parsed, ParseIpv4(address));
  spec.address = FormatIpv4(parsed);
  return spec;
}

}  // namespace

Result<std::vector<BeaconSpec>> ParseBeaconSpecs(std::string_view value, uint16_t default_port) {
  if (default_port == 0) return Invalid("beacon port 0");
  if (value.empty()) {
    return std::vector<BeaconSpec>{
        BeaconSpec{BeaconSpec::Kind::kAddress, std::string(kLoopbackBroadcast), default_port}};
  }
  if (value == "off") return std::vector<BeaconSpec>{};
  std::vector<BeaconSpec> out;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    std::string_view item = value.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item == "off") return Invalid("'off' cannot be combined with other beacon targets");
    SHARDFS_ASSIGN_OR_RETURN(BeaconSpec spec, ParseOneSpec(item, default_port));
    out.push_back(std::move(spec));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<std::string> SourceAddressToward(std::string_view address) {
  SHARDFS_ASSIGN_OR_RETURN(in_addr dst, ParseIpv4(address));
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::Error(ErrnoToErrorCode(errno), strerror(errno));
  // connect() on a UDP socket only picks a route and a source address; the
  // kernel refuses broadcast destinations unless SO_BROADCAST is set.
  int on = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_BROADCAST, &on, sizeof(on));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = dst;
  sa.sin_port = htons(9);  // any non-zero port; nothing is sent
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    return Status::Error(ErrorCode::kUnavailable,
                         "no route to " + std::string(address) + ": " + strerror(errno));
  }
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return Status::Error(ErrorCode::kIoError, strerror(errno));
  }
  return FormatIpv4(local.sin_addr);
}

std::vector<BeaconTarget> ResolveBeaconTargets(const std::vector<BeaconSpec>& specs) {
  std::vector<BeaconTarget> out;
  auto add = [&out](BeaconTarget t) {
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(std::move(t));
  };
  for (const BeaconSpec& spec : specs) {
    if (spec.kind == BeaconSpec::Kind::kAddress) {
      auto source = SourceAddressToward(spec.address);
      if (!source.ok()) {
        spdlog::debug("beacon: skipping {}: {}", spec.address, source.status().ToString());
        continue;
      }
      add(BeaconTarget{spec.address, spec.port, *source});
      continue;
    }
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
      spdlog::warn("beacon: cannot list interfaces: {}", strerror(errno));
      continue;
    }
    for (ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
      if (ifa->ifa_addr == nullptr || ifa->ifa_addr->sa_family != AF_INET) continue;
      unsigned flags = ifa->ifa_flags;
      if (!(flags & IFF_UP) || (flags & IFF_LOOPBACK) || !(flags & IFF_BROADCAST)) continue;
      in_addr addr = reinterpret_cast<sockaddr_in*>(ifa->ifa_addr)->sin_addr;
      in_addr bcast{};
      if (ifa->ifa_broadaddr != nullptr) {
        bcast = reinterpret_cast<sockaddr_in*>(ifa->ifa_broadaddr)->sin_addr;
      }
      // An address added without "brd" has none recorded; the subnet's
      // broadcast address is still address | ~netmask.
      if (bcast.s_addr == 0 && ifa->ifa_netmask != nullptr) {
        in_addr mask = reinterpret_cast<sockaddr_in*>(ifa->ifa_netmask)->sin_addr;
        bcast.s_addr = addr.s_addr | ~mask.s_addr;
      }
      if (bcast.s_addr == 0 || bcast.s_addr == addr.s_addr) continue;  // /32: no subnet
      add(BeaconTarget{FormatIpv4(bcast), spec.port, FormatIpv4(addr)});
    }
    freeifaddrs(list);
  }
  return out;
}

std::string AdvertisedEndpoint(std::string_view endpoint, std::string_view source) {
  auto parsed = ParseTcpEndpoint(endpoint);
  if (!parsed.ok() || !parsed->IsWildcard() || source.empty()) return std::string(endpoint);
  parsed->host = std::string(source);
  return parsed->ToString();
}

BeaconSender::BeaconSender(Options options) : options_(std::move(options)) {}

BeaconSender::~BeaconSender() {
  Stop();
}

Status BeaconSender::Start() {
  if (options_.specs.empty()) {
    spdlog::info("beacon: off");
    return Status::Ok();
  }
  // Refuse to start with a beacon that could never be decoded by anyone.
  SHARDFS_RETURN_IF_ERROR(EncodeBeacon(options_.info).status());
  fd_.reset(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd_.valid()) {
    return Status::Error(ErrnoToErrorCode(errno), std::string("beacon socket: ") + strerror(errno));
  }
  int on = 1;
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_BROADCAST, &on, sizeof(on)) != 0) {
    return Status::Error(ErrnoToErrorCode(errno), std::string("SO_BROADCAST: ") + strerror(errno));
  }
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void BeaconSender::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  fd_.reset();
}

void BeaconSender::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    SendRound();
    lock.lock();
    cv_.wait_for(lock, options_.interval, [this] { return stopping_; });
  }
}

void BeaconSender::SendRound() {
  std::vector<BeaconTarget> targets = ResolveBeaconTargets(options_.specs);
  if (targets != last_targets_) {
    if (targets.empty()) {
      spdlog::warn("beacon: no target is reachable now; retrying every round");
    }
    for (const BeaconTarget& t : targets) {
      spdlog::info("beacon: to {}:{} from {} announcing {}", t.address, t.port, t.source,
                   AdvertisedEndpoint(options_.info.registry_endpoint, t.source));
    }
    last_targets_ = targets;
  }
  for (const BeaconTarget& t : targets) {
    BeaconInfo info = options_.info;
    info.registry_endpoint = AdvertisedEndpoint(info.registry_endpoint, t.source);
    info.publish_endpoint = AdvertisedEndpoint(info.publish_endpoint, t.source);
    auto datagram = EncodeBeacon(info);
    if (!datagram.ok()) continue;  // checked in Start; cannot fail for a valid source
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(t.port);
    inet_pton(AF_INET, t.address.c_str(), &sa.sin_addr);
    ssize_t n = sendto(fd_.get(), datagram->data(), datagram->size(), 0,
                       reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    if (n < 0) {
      spdlog::debug("beacon: send to {}:{} failed: {}", t.address, t.port, strerror(errno));
    } else {
      sent_.fetch_add(1);
    }
  }
}

}  // namespace shardfs
