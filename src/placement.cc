#include "src/placement.h"

#include <xxhash.h>

#include <algorithm>
#include <unordered_set>

namespace shardfs {
namespace {

uint64_t KeySeed(const ShardKey& key) {
  unsigned char bytes[20];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(key.inode >> (8 * i));
  for (int i = 0; i < 4; ++i) bytes[8 + i] = static_cast<unsigned char>(key.index >> (8 * i));
  for (int i = 0; i < 8; ++i) bytes[12 + i] = static_cast<unsigned char>(key.generation >> (8 * i));
  return XXH64(bytes, sizeof(bytes), 0);
}

struct Scored {
  uint64_t score;
  const PlacementCandidate* node;
};

// Eligible candidates, each id once, best score first; ties (as good as
// impossible with 64-bit scores) go to the smaller id so the order is total.
std::vector<Scored> Rank(const ShardKey& key, std::span<const PlacementCandidate> candidates,
                         uint64_t bytes_needed) {
  const uint64_t seed = KeySeed(key);
  std::vector<Scored> ranked;
  ranked.reserve(candidates.size());
  std::unordered_set<std::string_view> seen;
  for (const PlacementCandidate& c : candidates) {
    if (!c.accepting || c.free_bytes < bytes_needed || c.node_id.empty()) continue;
    if (!seen.insert(c.node_id).second) continue;
    ranked.push_back({XXH64(c.node_id.data(), c.node_id.size(), seed), &c});
  }
  std::sort(ranked.begin(), ranked.end(), [](const Scored& a, const Scored& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.node->node_id < b.node->node_id;
  });
  return ranked;
}

}  // namespace

uint64_t RendezvousScore(const ShardKey& key, std::string_view node_id) {
  return XXH64(node_id.data(), node_id.size(), KeySeed(key));
}

std::vector<std::string> PlaceShard(const ShardKey& key,
                                    std::span<const PlacementCandidate> candidates, size_t replicas,
                                    uint64_t bytes_needed,
                                    std::span<const std::string> already_placed) {
  std::unordered_set<std::string_view> used_nodes(already_placed.begin(), already_placed.end());
  std::unordered_set<std::string_view> used_hosts;
  for (const PlacementCandidate& c : candidates) {
    if (used_nodes.contains(c.node_id)) used_hosts.insert(c.host);
  }
  const size_t have = used_nodes.size();
  const size_t want = replicas > have ? replicas - have : 0;

  std::vector<std::string> picked;
  if (want == 0) return picked;
  std::vector<Scored> ranked = Rank(key, candidates, bytes_needed);
  std::vector<bool> taken(ranked.size(), false);
  // Pass 1: one replica per host.
  for (size_t i = 0; i < ranked.size() && picked.size() < want; ++i) {
    const PlacementCandidate& c = *ranked[i].node;
    if (used_nodes.contains(c.node_id) || used_hosts.contains(c.host)) continue;
    picked.push_back(c.node_id);
    used_nodes.insert(c.node_id);
    used_hosts.insert(c.host);
    taken[i] = true;
  }
  // Pass 2: hosts ran out; distinct nodes are still required.
  for (size_t i = 0; i < ranked.size() && picked.size() < want; ++i) {
    const PlacementCandidate& c = *ranked[i].node;
    if (taken[i] || used_nodes.contains(c.node_id)) continue;
    picked.push_back(c.node_id);
    used_nodes.insert(c.node_id);
  }
  return picked;
}

std::vector<std::string> RankNodes(const ShardKey& key,
                                   std::span<const PlacementCandidate> candidates,
                                   uint64_t bytes_needed) {
  std::vector<std::string> out;
  for (const Scored& s : Rank(key, candidates, bytes_needed)) out.push_back(s.node->node_id);
  return out;
}

}  // namespace shardfs
