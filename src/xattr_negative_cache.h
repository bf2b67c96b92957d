// XattrNegativeCache: extended attribute names a mount knows a file lacks.
//
// Before every write(2) the kernel asks for `security.capability` (to clear
// it, as it clears setuid bits); nearly every file lacks it, and asking the
// registry each time cost a round trip per write. Knowing a name absent is
// kept for the attribute timeout, the same staleness the mount already
// allows for attributes another mount changes. A setxattr or removexattr
// through this mount forgets what is known about the inode at once, and an
// answer that was on its way while one happened is not recorded, so this
// mount always sees its own changes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace shardfs {

// Thread-safe. One per mount, owned by its ShardFs.
class XattrNegativeCache {
 public:
  using Clock = std::chrono::steady_clock;

  // `ttl` zero or less turns the cache off. At most `max_entries` names are
  // kept; past that, expired ones are dropped, and if that is not enough,
  // everything.
  explicit XattrNegativeCache(std::chrono::nanoseconds ttl, size_t max_entries = 100000);

  // True when `name` is known absent on `ino`: answer ENODATA without asking.
  bool KnownAbsent(uint64_t ino, std::string_view name, Clock::time_point now = Clock::now());
  // Taken before asking the registry; hand it back to NoteAbsent.
  uint64_t Version() const;
  // The registry said `ino` has no `name`, in answer to a request made at
  // Version() == `version`.
  void NoteAbsent(uint64_t ino, std::string_view name, uint64_t version,
                  Clock::time_point now = Clock::now());
  // `ino` was just created by this mount, so it has no xattrs at all.
  void NoteNoXattrs(uint64_t ino, Clock::time_point now = Clock::now());
  // The same, learned from a directory listing asked for when Version() was
  // `version`: not recorded if this mount changed an xattr since.
  void NoteNoXattrs(uint64_t ino, uint64_t version, Clock::time_point now = Clock::now());
  // A setxattr or removexattr of `ino` through this mount (call before and
  // after it, so an answer that crossed it is not recorded).
  void Invalidate(uint64_t ino);

  size_t size() const;

 private:
  struct Entry {
    Clock::time_point none_until{};  // no xattr at all until then
    std::map<std::string, Clock::time_point, std::less<>> absent;
  };
  void NoteNoXattrsLocked(uint64_t ino, Clock::time_point now);
  void MakeRoomLocked(Clock::time_point now);

  const std::chrono::nanoseconds ttl_;
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::map<uint64_t, Entry> entries_;  // guarded by mu_
  size_t names_ = 0;                   // guarded by mu_; entries_ plus their names
  uint64_t version_ = 0;               // guarded by mu_; bumped by Invalidate
};

}  // namespace shardfs
