// Which parts of a shard file hold data. The shard store leaves whole pages
// of zeros unwritten, as holes, so a shard with gaps inside (the shard of a
// sparse file, or one grown by a write past its end) takes disk space only
// for the bytes that were written; reads of a hole give zeros, which the
// block checksums were computed over.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace shardfs {

// The page size holes are made of: every shard file's data starts on a
// multiple of it.
inline constexpr uint64_t kHolePageBytes = 4096;

// A byte range of a file.
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;

  uint64_t end() const { return offset + length; }
  bool operator==(const Extent&) const = default;
};

// Appends `extent` to `extents` (sorted, not overlapping), joining it to the
// last one when they touch. Empty extents are dropped. `extent` must not
// start before the last one ends.
void AppendExtent(std::vector<Extent>* extents, Extent extent);

// The parts of `bytes`, to be stored from file offset `at` (a multiple of
// kHolePageBytes), that are not whole pages of zeros, as file extents in
// order. A final partial page counts as a page. Bytes without a zero page
// give one extent covering all of them.
std::vector<Extent> NonZeroExtents(std::span<const uint8_t> bytes, uint64_t at);

uint64_t TotalLength(std::span<const Extent> extents);

}  // namespace shardfs
