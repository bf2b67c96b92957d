// RecentShardEntries: the shard-table entry of small files a client had open
// lately, so that opening one again can fetch its bytes from a node while
// the registry confirms the table, instead of after.
//
// Reading a small file costs two round trips one after the other: the open
// (the registry's current shard table, which close-to-open requires) and the
// read (the bytes from a node). A shard object never changes once written
// (a write makes a new generation), so bytes fetched for the generation this
// client last knew are exactly right whenever the open's table still names
// that generation, and are dropped unused when it does not. The cost of a
// wrong guess is one small read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "src/inode.h"

namespace shardfs {

// Thread-safe. One per client (the mount), owned by its ShardFs.
class RecentShardEntries {
 public:
  // Files whose only shard holds more than this are not remembered: a
  // guessed fetch that turns out wrong should cost little.
  static constexpr uint64_t kMaxRememberedLength = 256 << 10;

  explicit RecentShardEntries(size_t capacity) : capacity_(capacity) {}

  // The file `ino` is one shard, `entry`, as far as this client knows
  // (after a close with nothing left to store). Longer entries are ignored.
  void Remember(uint64_t ino, const ShardEntry& entry);
  void Forget(uint64_t ino);
  std::optional<ShardEntry> Find(uint64_t ino) const;

  size_t size() const;

 private:
  struct Remembered {
    ShardEntry entry;
    uint64_t seq = 0;  // when first remembered; names its place in order_
  };

  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Remembered> entries_;  // guarded by mu_
  // (inode, seq) in the order remembered, for dropping the oldest past
  // capacity_. A pair whose seq no longer matches the inode's entry is left
  // over from a forgotten one and is skipped.
  std::deque<std::pair<uint64_t, uint64_t>> order_;  // guarded by mu_
  uint64_t next_seq_ = 0;                            // guarded by mu_
};

}  // namespace shardfs
