// Placement: which nodes hold the replicas of a shard.
//
// Rendezvous (highest random weight) hashing: every candidate node gets a
// score hash(shard key, node id) and the shard goes to the best-scoring
// nodes. Nobody needs a shared table, the answer depends only on the key and
// the set of candidates (not their order), and when a node leaves only the
// shards it held move (each to the next node on its own ranking), when one
// joins only shards for which it now scores in the top R move to it.
//
// Rules, in order:
//   - a node that is not accepting new data, or has fewer free bytes than the
//     shard needs, is skipped; a node id listed twice counts once;
//   - never two replicas on one node;
//   - first pass: in score order, take a node only if no replica is on its
//     host yet (so a machine running several nodes holds one copy while other
//     machines are available);
//   - second pass: if hosts ran out, fill the remaining replicas from the
//     nodes left, in score order.
// Fewer than R ids come back when there are not enough eligible nodes; the
// caller decides whether that is an error (DESIGN.md: a write needs
// min(2, R)).
//
// The commit records the replica set actually written, so readers never
// recompute placement; this only picks targets for writes and repairs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/shard_key.h"

namespace shardfs {

struct PlacementCandidate {
  std::string node_id;
  std::string host;  // nodes on the same machine share it
  uint64_t free_bytes = 0;
  bool accepting = true;  // false: draining, read-only, or not up
};

// The rendezvous score of `node_id` for `key`: XXH64 of the node id, seeded
// with XXH64 of the key's 20 bytes (inode, index, generation, little-endian).
uint64_t RendezvousScore(const ShardKey& key, std::string_view node_id);

// Picks up to `replicas` nodes for `key`, best first. `already_placed` lists
// nodes that hold a copy already (a repair adding replicas): they count
// toward `replicas`, their hosts count as used, and they are never returned.
std::vector<std::string> PlaceShard(const ShardKey& key,
                                    std::span<const PlacementCandidate> candidates, size_t replicas,
                                    uint64_t bytes_needed,
                                    std::span<const std::string> already_placed = {});

// Every eligible candidate ranked by score, best first (for repair sources,
// read order, or diagnostics).
std::vector<std::string> RankNodes(const ShardKey& key,
                                   std::span<const PlacementCandidate> candidates,
                                   uint64_t bytes_needed);

}  // namespace shardfs
