#include "src/xattr_negative_cache.h"

namespace shardfs {

XattrNegativeCache::XattrNegativeCache(std::chrono::nanoseconds ttl, size_t max_entries)
    : ttl_(ttl), max_entries_(max_entries) {}

bool XattrNegativeCache::KnownAbsent(uint64_t ino, std::string_view name, Clock::time_point now) {
  if (ttl_.count() <= 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(ino);
  if (it == entries_.end()) return false;
  if (now < it->second.none_until) return true;
  auto n = it->second.absent.find(name);
  return n != it->second.absent.end() && now < n->second;
}

uint64_t XattrNegativeCache::Version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

void XattrNegativeCache::NoteAbsent(uint64_t ino, std::string_view name, uint64_t version,
                                    Clock::time_point now) {
  if (ttl_.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  // A setxattr through this mount since the request went out may have
  // created the name: the answer is stale.
  if (version != version_) return;
  MakeRoomLocked(now);
  auto [it, fresh] = entries_.try_emplace(ino);
  if (fresh) ++names_;
  auto [n, added] = it->second.absent.insert_or_assign(std::string(name), now + ttl_);
  (void)n;
  if (added) ++names_;
}

void XattrNegativeCache::NoteNoXattrs(uint64_t ino, Clock::time_point now) {
  if (ttl_.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  NoteNoXattrsLocked(ino, now);
}

void XattrNegativeCache::NoteNoXattrsLocked(uint64_t ino, Clock::time_point now) {
  MakeRoomLocked(now);
  auto [it, fresh] = entries_.try_emplace(ino);
  if (fresh) ++names_;
  it->second.none_until = now + ttl_;
}

void XattrNegativeCache::NoteNoXattrs(uint64_t ino, uint64_t version, Clock::time_point now) {
  if (ttl_.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (version != version_) return;  // an xattr changed here since the listing was asked for
  NoteNoXattrsLocked(ino, now);
}

void XattrNegativeCache::Invalidate(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  ++version_;
  auto it = entries_.find(ino);
  if (it == entries_.end()) return;
  names_ -= 1 + it->second.absent.size();
  entries_.erase(it);
}

size_t XattrNegativeCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return names_;
}

void XattrNegativeCache::MakeRoomLocked(Clock::time_point now) {
  if (names_ < max_entries_) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    for (auto n = e.absent.begin(); n != e.absent.end();) {
      if (n->second <= now) {
        n = e.absent.erase(n);
        --names_;
      } else {
        ++n;
      }
    }
    if (e.absent.empty() && e.none_until <= now) {
      it = entries_.erase(it);
      --names_;
    } else {
      ++it;
    }
  }
  // Still full of live entries: start over rather than grow; forgetting
  // only costs a registry round trip.
  if (names_ >= max_entries_) {
    entries_.clear();
    names_ = 0;
  }
}

}  // namespace shardfs
