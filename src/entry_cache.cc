#include "src/entry_cache.h"

#include <algorithm>

namespace shardfs {

namespace {

// Bookkeeping maps past these sizes are cleared (conservatively: every
// cached answer older than the clear is treated as stale).
constexpr size_t kMaxChangeMarks = 65536;
constexpr size_t kMaxWalks = 4096;
// Names in a readdirplus listing that cost about as much as one lookup
// round trip (pages of 1,000 names with attributes).
constexpr size_t kNamesPerRoundTrip = 256;

}  // namespace

EntryCache::EntryCache(Limits limits) : limits_(limits) {}

uint64_t EntryCache::ChangedAtLocked(uint64_t key) const {
  auto it = changed_.find(key);
  if (it == changed_.end()) return forgotten_changes_;
  return std::max(it->second, forgotten_changes_);
}

void EntryCache::NoteChangeLocked(uint64_t key) {
  if (changed_.size() >= kMaxChangeMarks) {
    changed_.clear();
    forgotten_changes_ = epoch_++;
  }
  changed_[key] = epoch_++;
}

std::optional<EntryCache::Answer> EntryCache::Find(uint64_t dir, std::string_view name,
                                                   Clock::time_point now) {
  if (limits_.ttl.count() <= 0) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  auto l = listings_.find(dir);
  if (l == listings_.end()) return std::nullopt;
  const auto age = now - l->second.asked;
  if (age >= limits_.ttl) {
    entry_count_ -= l->second.names.size();
    listings_.erase(l);
    walks_[dir].expired_listing = now;
    return std::nullopt;
  }
  Answer answer;
  answer.left = limits_.ttl - age;
  auto e = l->second.names.find(name);
  if (e == l->second.names.end()) return answer;  // not in the listing: missing
  const Entry& entry = e->second;
  if (!entry.attrs.has_value() || ChangedAtLocked(entry.attrs->ino) >= entry.epoch) {
    return std::nullopt;
  }
  answer.attrs = entry.attrs;
  return answer;
}

EntryCache::Walk& EntryCache::WalkLocked(uint64_t dir, Clock::time_point now) {
  if (walks_.size() >= kMaxWalks && !walks_.contains(dir)) {
    std::erase_if(walks_, [&](const auto& w) {
      return !w.second.listing && now - w.second.first_miss >= limits_.ttl &&
             now - w.second.expired_listing >= limits_.ttl && now >= w.second.too_large_until;
    });
    if (walks_.size() >= kMaxWalks)
      std::erase_if(walks_, [](const auto& w) { return !w.second.listing; });
  }
  return walks_[dir];
}

bool EntryCache::ShouldList(uint64_t dir, Clock::time_point now) {
  if (limits_.ttl.count() <= 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  Walk& walk = WalkLocked(dir, now);
  if (walk.listing || now < walk.too_large_until) return false;
  if (auto l = listings_.find(dir); l != listings_.end()) {
    // A live listing whose entries this mount changed since (files written
    // after they were listed): listing again pays once it costs less than
    // the round trips of the names it can no longer answer.
    if (++l->second.misses < 2 + l->second.names.size() / 64) return false;
    walk.listing = true;
    return true;
  }
  const bool still_walked =
      walk.expired_listing != Clock::time_point() && now - walk.expired_listing < limits_.ttl;
  if (now - walk.first_miss >= limits_.ttl) {
    walk.first_miss = now;
    walk.misses = 0;
  }
  ++walk.misses;
  // A listing costs about one round trip per kNamesPerRoundTrip names, so
  // a directory known to be large is listed only once enough of its names
  // are asked within one ttl to pay for it: random lookups spread over
  // large directories (a web server's files, stats of random paths) would
  // otherwise list 10,000 names to answer one. Unknown size: the second
  // miss; a listing that just ran out while walked: the first.
  const size_t needed = (still_walked ? 1 : 2) + walk.last_listed / kNamesPerRoundTrip;
  if (static_cast<size_t>(walk.misses) < needed) return false;
  walk.listing = true;
  return true;
}

EntryCache::Ticket EntryCache::Begin(uint64_t dir, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  return Ticket{dir, epoch_++, now};
}

void EntryCache::Store(const Ticket& ticket, const std::vector<DirEntry>& entries) {
  if (limits_.ttl.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  Walk& walk = WalkLocked(ticket.dir, ticket.asked);
  walk.listing = false;
  walk.last_listed = entries.size();
  if (entries.size() > limits_.max_dir_entries) {
    walk.too_large_until = ticket.asked + 10 * limits_.ttl;
    return;
  }
  // Changed here after the listing was asked for: it may predate the change.
  if (ChangedAtLocked(ticket.dir) >= ticket.epoch) return;
  Listing listing;
  listing.asked = ticket.asked;
  for (const auto& e : entries) listing.names.emplace(e.name, Entry{e.attrs, ticket.epoch});
  auto old = listings_.find(ticket.dir);
  if (old != listings_.end()) {
    if (old->second.asked > listing.asked) return;  // a later listing is here already
    entry_count_ -= old->second.names.size();
  }
  entry_count_ += listing.names.size();
  listings_[ticket.dir] = std::move(listing);
  TrimLocked(ticket.asked);
}

void EntryCache::Abandon(const Ticket& ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto w = walks_.find(ticket.dir); w != walks_.end()) w->second.listing = false;
}

void EntryCache::TrimLocked(Clock::time_point now) {
  if (entry_count_ <= limits_.max_entries) return;
  std::erase_if(listings_, [&](const auto& l) {
    const bool expired = now - l.second.asked >= limits_.ttl;
    if (expired) entry_count_ -= l.second.names.size();
    return expired;
  });
  while (entry_count_ > limits_.max_entries && !listings_.empty()) {
    auto oldest = std::min_element(
        listings_.begin(), listings_.end(),
        [](const auto& a, const auto& b) { return a.second.asked < b.second.asked; });
    entry_count_ -= oldest->second.names.size();
    listings_.erase(oldest);
  }
}

void EntryCache::Added(uint64_t dir, std::string_view name, const InodeAttrs& attrs) {
  if (limits_.ttl.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  NoteChangeLocked(dir);
  NoteChangeLocked(attrs.ino);  // a new link changes its other names' nlink
  auto l = listings_.find(dir);
  if (l == listings_.end()) return;
  auto [it, inserted] = l->second.names.insert_or_assign(std::string(name), Entry{attrs, epoch_});
  if (inserted) ++entry_count_;
}

void EntryCache::Removed(uint64_t dir, std::string_view name) {
  if (limits_.ttl.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  NoteChangeLocked(dir);
  auto l = listings_.find(dir);
  if (l == listings_.end()) return;
  auto e = l->second.names.find(name);
  if (e == l->second.names.end()) return;
  if (e->second.attrs.has_value()) NoteChangeLocked(e->second.attrs->ino);  // its nlink
  l->second.names.erase(e);
  --entry_count_;
}

void EntryCache::Renamed(uint64_t dir, std::string_view name, uint64_t new_dir,
                         std::string_view new_name) {
  if (limits_.ttl.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  NoteChangeLocked(dir);
  NoteChangeLocked(new_dir);
  // Both names, when present, change inodes (the moved one's ctime, a
  // replaced or exchanged one's nlink or place): their attributes are asked
  // for again, under the name they have now.
  for (auto [d, n] : {std::pair{dir, name}, std::pair{new_dir, new_name}}) {
    auto l = listings_.find(d);
    if (l == listings_.end()) continue;
    auto e = l->second.names.find(n);
    if (e == l->second.names.end()) continue;
    if (e->second.attrs.has_value()) NoteChangeLocked(e->second.attrs->ino);
  }
  // A plain rename leaves the old name missing, an exchange leaves it naming
  // the other inode: "ask" is right for both.
  if (auto l = listings_.find(dir); l != listings_.end()) {
    auto e = l->second.names.find(name);
    if (e != l->second.names.end()) e->second = Entry{std::nullopt, 0};
  }
  if (auto l = listings_.find(new_dir); l != listings_.end()) {
    auto [it, inserted] =
        l->second.names.insert_or_assign(std::string(new_name), Entry{std::nullopt, 0});
    if (inserted) ++entry_count_;
  }
}

void EntryCache::Changed(uint64_t ino) {
  if (limits_.ttl.count() <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  NoteChangeLocked(ino);
}

size_t EntryCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entry_count_;
}

}  // namespace shardfs
