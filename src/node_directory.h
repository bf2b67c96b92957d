// NodeDirectory: where each node (by id) can be reached, as a client last heard.
//
// Registry replies that name nodes (shard tables, placements) carry their
// endpoints, and the cluster map brings updates; both feed this table so a
// shard entry's node ids can be turned into endpoints without a round trip.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "protocol/namespace_messages.h"

namespace shardfs {

// Thread-safe; shared by every open file of a client.
class NodeDirectory {
 public:
  void Learn(const std::vector<NodeAddress>& nodes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& n : nodes) endpoints_[n.id] = n.endpoint;
  }
  std::optional<std::string> Endpoint(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) return std::nullopt;
    return it->second;
  }
  // Endpoints for the ids that are known, in order; unknown ids are skipped.
  std::vector<std::string> Endpoints(const std::vector<std::string>& ids) const {
    std::vector<std::string> out;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& id : ids) {
      auto it = endpoints_.find(id);
      if (it != endpoints_.end()) out.push_back(it->second);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> endpoints_;  // guarded by mu_
};

}  // namespace shardfs
