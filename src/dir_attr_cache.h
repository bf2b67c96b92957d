// DirAttrCache: directory attributes a mount learned from the replies to its
// own changes, so it can answer the kernel's next GETATTR of the directory.
//
// The kernel forgets a directory's cached attributes whenever this mount
// creates, removes or renames a name in it, and asks for them again before
// its next permission check there: one registry round trip per file in
// create, rename and unlink workloads (fsbench's rename spent one of its four
// round trips on it). The registry sends the directory's attributes with the
// reply to each such change (EncodeChangedDirs); they are as fresh as a
// GETATTR sent at that moment, so for the attribute timeout the mount
// answers from them, the same staleness the kernel's own cache allows for
// changes made through other mounts.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "src/inode.h"

namespace shardfs {

// Thread-safe. One per mount, owned by its ShardFs.
class DirAttrCache {
 public:
  using Clock = std::chrono::steady_clock;

  // `ttl` zero or less turns the cache off. At most `max_entries` are kept;
  // past that, expired ones are dropped, and if that is not enough, all.
  explicit DirAttrCache(std::chrono::nanoseconds ttl, size_t max_entries = 4096);

  // Attributes the registry reported. Replies can overtake each other on
  // their way through the mount's threads, so an entry is only replaced by
  // attributes with the same or a later change time.
  void Put(const std::vector<InodeAttrs>& dirs, Clock::time_point now = Clock::now());
  // Attributes of `ino` learned less than the ttl ago.
  std::optional<InodeAttrs> Get(uint64_t ino, Clock::time_point now = Clock::now()) const;
  // A change whose reply carries no attributes (an xattr): ask next time.
  void Forget(uint64_t ino);

  size_t size() const;

 private:
  struct Entry {
    InodeAttrs attrs;
    Clock::time_point expires{};
  };

  const std::chrono::nanoseconds ttl_;
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Entry> entries_;  // guarded by mu_
};

}  // namespace shardfs
