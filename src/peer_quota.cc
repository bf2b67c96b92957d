#include "src/peer_quota.h"

namespace shardfs {

PeerQuota::Verdict PeerQuota::Admit(std::string_view peer, size_t bytes) {
  auto it = peers_.find(std::string(peer));
  const Usage current = it != peers_.end() ? it->second : Usage{};
  if (current.requests >= limits_.max_requests_per_peer) return Verdict::kPeerRequests;
  if (current.requests > 0 && current.bytes + bytes > limits_.max_bytes_per_peer) {
    return Verdict::kPeerBytes;
  }
  if (total_bytes_ > 0 && total_bytes_ + bytes > limits_.max_bytes_total) {
    return Verdict::kTotalBytes;
  }
  if (it == peers_.end()) it = peers_.emplace(std::string(peer), Usage{}).first;
  it->second.requests += 1;
  it->second.bytes += bytes;
  total_bytes_ += bytes;
  return Verdict::kAdmitted;
}

void PeerQuota::Release(std::string_view peer, size_t bytes) {
  auto it = peers_.find(std::string(peer));
  if (it == peers_.end()) return;  // never admitted: nothing to give back
  Usage& u = it->second;
  const size_t give_back = bytes < u.bytes ? bytes : u.bytes;
  u.bytes -= give_back;
  total_bytes_ -= give_back < total_bytes_ ? give_back : total_bytes_;
  if (u.requests > 0) u.requests -= 1;
  if (u.requests == 0) peers_.erase(it);
}

size_t PeerQuota::requests(std::string_view peer) const {
  auto it = peers_.find(std::string(peer));
  return it != peers_.end() ? it->second.requests : 0;
}

size_t PeerQuota::bytes(std::string_view peer) const {
  auto it = peers_.find(std::string(peer));
  return it != peers_.end() ? it->second.bytes : 0;
}

const char* PeerQuota::Explain(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAdmitted:
      return "admitted";
    case Verdict::kPeerRequests:
      return "too many requests outstanding on this connection";
    case Verdict::kPeerBytes:
      return "too many request bytes outstanding on this connection";
    case Verdict::kTotalBytes:
      return "the server's request queue is full (bytes)";
  }
  return "refused";
}

}  // namespace shardfs
