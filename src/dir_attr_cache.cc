#include "src/dir_attr_cache.h"

namespace shardfs {

DirAttrCache::DirAttrCache(std::chrono::nanoseconds ttl, size_t max_entries)
    : ttl_(ttl), max_entries_(max_entries) {}

void DirAttrCache::Put(const std::vector<InodeAttrs>& dirs, Clock::time_point now) {
  if (ttl_.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& attrs : dirs) {
    auto it = entries_.find(attrs.ino);
    if (it != entries_.end()) {
      if (attrs.ctime_ns < it->second.attrs.ctime_ns) continue;
      it->second = Entry{attrs, now + ttl_};
      continue;
    }
    if (entries_.size() >= max_entries_) {
      std::erase_if(entries_, [now](const auto& e) { return e.second.expires <= now; });
      if (entries_.size() >= max_entries_) entries_.clear();
    }
    entries_.emplace(attrs.ino, Entry{attrs, now + ttl_});
  }
}

std::optional<InodeAttrs> DirAttrCache::Get(uint64_t ino, Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(ino);
  if (it == entries_.end() || it->second.expires <= now) return std::nullopt;
  return it->second.attrs;
}

void DirAttrCache::Forget(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(ino);
}

size_t DirAttrCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace shardfs
