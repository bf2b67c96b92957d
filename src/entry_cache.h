// EntryCache: whole directory listings a mount fetched recently, so it can
// answer the kernel's LOOKUPs in a directory that is being walked without a
// registry round trip for each name.
//
// The kernel asks for every name again once its entry timeout has passed:
// `stat` of each file of a directory, `ls -l` after its READDIRPLUS entries
// aged, diff -r, rsync, make and git status each cost one registry round trip
// per name. A directory listed whole (by OPENDIR, or by the mount itself
// once a second name there was asked within the timeout) answers those for
// the entry timeout: names it holds with their attributes, names it lacks as
// missing. That is the staleness the kernel's own entry and negative-entry
// caches already allow for changes made through other mounts (DESIGN.md:
// visible within the attribute timeout), and the kernel is told only the
// time the answer has left, so it never stretches it.
//
// This mount's own changes never read stale: each is applied to the cached
// listings (a created name is added, a removed one erased, a renamed one
// moved as "ask the registry") and every inode this mount changes (writes,
// setattr, link, xattrs) is marked, so its cached attributes are not used
// again. A listing asked for before a change in its directory that lands
// after it is dropped instead of stored.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/inode.h"

namespace shardfs {

// Thread-safe. One per mount, owned by its ShardFs.
class EntryCache {
 public:
  using Clock = std::chrono::steady_clock;

  struct Limits {
    // How long a listing answers; zero or less turns the cache off.
    std::chrono::nanoseconds ttl{0};
    // Larger directories are not listed for the cache: a walk of them is
    // better served by the kernel's READDIRPLUS entries.
    size_t max_dir_entries = 20000;
    // Names kept over all directories; past it the oldest listings go.
    size_t max_entries = 200000;
  };

  struct Answer {
    std::optional<InodeAttrs> attrs;   // nullopt: there is no such name
    std::chrono::nanoseconds left{0};  // how much longer this answer holds
  };

  // Marks a listing's start: changes made in the directory after it make
  // the listing stale before it arrives.
  struct Ticket {
    uint64_t dir = 0;
    uint64_t epoch = 0;
    Clock::time_point asked{};
  };

  explicit EntryCache(Limits limits);

  // The answer for `name` in `dir`, or nullopt: ask the registry.
  std::optional<Answer> Find(uint64_t dir, std::string_view name,
                             Clock::time_point now = Clock::now());

  // After a Find that was not answered: true when the caller should list
  // `dir` whole now (a second name asked there within the ttl, a listing
  // that just ran out while the directory is still being walked, or a live
  // listing too many of whose names this mount changed since; for a
  // directory whose last listing was large, more names within the ttl, in
  // proportion to its size), and no other thread is listing it already. A true return must be
  // followed by Store or Abandon with the ticket from Begin.
  bool ShouldList(uint64_t dir, Clock::time_point now = Clock::now());
  // Call before asking for the first page.
  Ticket Begin(uint64_t dir, Clock::time_point now = Clock::now());
  // The whole listing, every entry with attributes (readdirplus). One of
  // more than max_dir_entries names is not kept, and the directory is not
  // listed for lookups again for a while.
  void Store(const Ticket& ticket, const std::vector<DirEntry>& entries);
  // The listing could not be had.
  void Abandon(const Ticket& ticket);

  // This mount's own changes, after the registry acknowledged them.
  void Added(uint64_t dir, std::string_view name, const InodeAttrs& attrs);
  void Removed(uint64_t dir, std::string_view name);
  void Renamed(uint64_t dir, std::string_view name, uint64_t new_dir, std::string_view new_name);
  // Attributes of `ino` changed here (write, truncate, chmod, link, xattr).
  void Changed(uint64_t ino);

  size_t entries() const;
  const Limits& limits() const { return limits_; }

 private:
  struct Entry {
    std::optional<InodeAttrs> attrs;  // nullopt: the name exists, ask for it
    uint64_t epoch = 0;               // attributes as of this epoch
  };
  struct Listing {
    std::map<std::string, Entry, std::less<>> names;
    Clock::time_point asked{};
    size_t misses = 0;  // names asked that it could not answer
  };
  struct Walk {  // lookups the cache could not answer, per directory
    Clock::time_point first_miss{};
    int misses = 0;
    bool listing = false;
    Clock::time_point expired_listing{};
    Clock::time_point too_large_until{};
    size_t last_listed = 0;  // names in its last listing; 0: never listed
  };

  // Epoch of the last change to `key` made here (inodes and directories).
  uint64_t ChangedAtLocked(uint64_t key) const;
  // The walk of `dir`, made room for: past kMaxWalks idle ones are dropped.
  Walk& WalkLocked(uint64_t dir, Clock::time_point now);
  void NoteChangeLocked(uint64_t key);
  void TrimLocked(Clock::time_point now);

  const Limits limits_;
  mutable std::mutex mu_;
  uint64_t epoch_ = 1;                              // guarded by mu_
  std::unordered_map<uint64_t, uint64_t> changed_;  // guarded by mu_
  uint64_t forgotten_changes_ = 0;                  // guarded by mu_
  std::unordered_map<uint64_t, Listing> listings_;  // guarded by mu_
  std::unordered_map<uint64_t, Walk> walks_;        // guarded by mu_
  size_t entry_count_ = 0;                          // guarded by mu_
};

}  // namespace shardfs
