#include "src/unsynced_shards.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace shardfs {

void UnsyncedShards::Stored(const ShardKey& key, Replicas replicas, bool synced) {
  std::lock_guard<std::mutex> lock(mu_);
  // Older generations of this shard sort just before it.
  auto it = entries_.lower_bound(ShardKey{key.inode, key.index, 0});
  while (it != entries_.end() && it->first.inode == key.inode && it->first.index == key.index &&
         it->first.generation < key.generation) {
    it = entries_.erase(it);
  }
  if (!synced) entries_[key] = Entry{std::move(replicas), Clock::now()};
}

UnsyncedShards::Set UnsyncedShards::OfInode(uint64_t ino) const {
  Set out;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = entries_.lower_bound(ShardKey{ino, 0, 0});
       it != entries_.end() && it->first.inode == ino; ++it) {
    out.emplace(it->first, it->second.replicas);
  }
  return out;
}

void UnsyncedShards::Forget(const std::vector<ShardKey>& keys) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const ShardKey& key : keys) entries_.erase(key);
}

UnsyncedShards::Set UnsyncedShards::Due(Clock::time_point now) const {
  Set out;
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<Clock::time_point, const ShardKey*>> young;
  for (const auto& [key, entry] : entries_) {
    if (now - entry.since >= limits_.max_age) {
      out.emplace(key, entry.replicas);
    } else {
      young.emplace_back(entry.since, &key);
    }
  }
  // Over the count limit: the oldest of the rest too, down to the limit.
  if (entries_.size() > limits_.max_shards && !young.empty()) {
    const size_t excess = std::min(young.size(), entries_.size() - limits_.max_shards);
    std::nth_element(young.begin(), young.begin() + static_cast<std::ptrdiff_t>(excess - 1),
                     young.end());
    for (size_t i = 0; i < excess; ++i) {
      out.emplace(*young[i].second, entries_.at(*young[i].second).replicas);
    }
  }
  return out;
}

UnsyncedShards::Set UnsyncedShards::All() const {
  Set out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, entry] : entries_) out.emplace(key, entry.replicas);
  return out;
}

void UnsyncedShards::Postpone(const std::vector<ShardKey>& keys, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const ShardKey& key : keys) {
    if (auto it = entries_.find(key); it != entries_.end()) it->second.since = now;
  }
}

size_t UnsyncedShards::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

SyncOutcome SyncShardsOnNodes(NodeClient& nodes, const NodeDirectory& directory,
                              const UnsyncedShards::Set& keys) {
  SyncOutcome out;
  std::map<std::string, SyncShardsRequest> by_node;  // endpoint -> keys
  for (const auto& [key, replicas] : keys) {
    for (const std::string& id : replicas) {
      if (auto ep = directory.Endpoint(id)) by_node[*ep].keys.push_back(key);
    }
  }
  // Requests stay below the message's key limit.
  std::vector<std::pair<std::string, SyncShardsRequest>> requests;
  for (auto& [endpoint, request] : by_node) {
    for (size_t i = 0; i < request.keys.size(); i += kMaxSyncKeys) {
      SyncShardsRequest part;
      const size_t end = std::min(request.keys.size(), i + kMaxSyncKeys);
      part.keys.assign(request.keys.begin() + static_cast<std::ptrdiff_t>(i),
                       request.keys.begin() + static_cast<std::ptrdiff_t>(end));
      requests.emplace_back(endpoint, std::move(part));
    }
  }
  std::vector<std::pair<std::string, SyncShardsRequest>> one_by_one;
  auto tally = [&](const std::vector<std::pair<std::string, SyncShardsRequest>>& sent,
                   const std::vector<Status>& results, bool split_missing) {
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& [endpoint, request] = sent[i];
      if (results[i].ok()) {
        for (const ShardKey& key : request.keys) out.synced[key]++;
      } else if (results[i].code() == ErrorCode::kNotFound && request.keys.size() == 1) {
        out.missing[request.keys[0]]++;
      } else if (results[i].code() == ErrorCode::kNotFound && split_missing) {
        for (const ShardKey& key : request.keys) one_by_one.push_back({endpoint, {{key}}});
      } else {
        out.last_error = results[i];
        spdlog::warn("fsync of {} shard(s) on {} failed: {}", request.keys.size(), endpoint,
                     results[i].ToString());
      }
    }
  };
  tally(requests, nodes.SyncOnAll(requests), true);
  // A few at a time: each call in flight holds a connection of its own.
  const auto retry = std::move(one_by_one);
  one_by_one.clear();
  constexpr size_t kRetryBatch = 16;
  for (size_t i = 0; i < retry.size(); i += kRetryBatch) {
    const std::vector<std::pair<std::string, SyncShardsRequest>> batch(
        retry.begin() + static_cast<std::ptrdiff_t>(i),
        retry.begin() + static_cast<std::ptrdiff_t>(std::min(retry.size(), i + kRetryBatch)));
    tally(batch, nodes.SyncOnAll(batch), false);
  }
  return out;
}

}  // namespace shardfs
