#include "src/recent_shard_entries.h"

namespace shardfs {

void RecentShardEntries::Remember(uint64_t ino, const ShardEntry& entry) {
  if (capacity_ == 0) return;
  if (entry.length == 0 || entry.length > kMaxRememberedLength || entry.replicas.empty()) {
    return Forget(ino);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(ino); it != entries_.end()) {
    it->second.entry = entry;  // keeps its place in the order
    return;
  }
  const uint64_t seq = next_seq_++;
  entries_.emplace(ino, Remembered{entry, seq});
  order_.emplace_back(ino, seq);
  auto current = [&](const std::pair<uint64_t, uint64_t>& named) {
    auto it = entries_.find(named.first);
    return it != entries_.end() && it->second.seq == named.second;
  };
  while (entries_.size() > capacity_ && !order_.empty()) {
    if (current(order_.front())) entries_.erase(order_.front().first);
    order_.pop_front();
  }
  // Forgotten inodes leave their pairs behind; drop them before they pile up.
  if (order_.size() > 2 * capacity_)
    std::erase_if(order_, [&](const auto& p) { return !current(p); });
}

void RecentShardEntries::Forget(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(ino);
}

std::optional<ShardEntry> RecentShardEntries::Find(uint64_t ino) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(ino);
  if (it == entries_.end()) return std::nullopt;
  return it->second.entry;
}

size_t RecentShardEntries::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace shardfs
