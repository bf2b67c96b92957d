// ShardStore: a node's local store of immutable shard objects.
//
// Keeps the shards a node server holds under its data directory, hands out
// byte ranges of them with every byte checked against a checksum taken when it
// was written, and never shows a half-written shard, even after kill -9 or a
// full disk. The node server's request handlers, the scrubber and repair all
// go through this class; nothing else touches the files.
//
// Directory layout (DIR = Options::dir):
//   DIR/LOCK                 flock()ed by the open store: one store per DIR
//   DIR/shards/XX/<key>      one file per shard; <key> is ShardKey::ToString()
//                            and XX two lowercase hex digits of a hash of the
//                            key (made on first use), so no directory holds
//                            more than about 1/256 of the shards
//   DIR/tmp/                 shards being written; emptied by Open()
//   DIR/quarantine/XX_<name> entries found under shards/ that are not valid
//                            shards (bad name, wrong XX, bad or inconsistent
//                            header, wrong size), kept for a human instead of
//                            deleted
//
// Shard file format (version 1; all integers little-endian):
//   offset size
//     0     8   magic "SHFSHARD"
//     8     4   format version (1)
//    12     4   block size B (a power of two, 4 KiB .. 16 MiB)
//    16     8   data length L
//    24     8   block count N = ceil(L / B)
//    32     8   whole-shard checksum, XXH3_64bits of the L data bytes
//    40     8   key.inode
//    48     4   key.index
//    52     4   reserved, 0
//    56     8   key.generation
//    64     8   data offset D = round_up(80 + 8 * N, 4096)
//    72     8   header checksum, XXH3_64bits of bytes [0, 72)
//    80   8*N   block checksums, BlockChecksum() of each block of B bytes
//               (the last one may be shorter), in block order
//    ...        zero padding up to D
//     D     L   the data; block i starts at D + i * B, so reads of whole
//               blocks are pread()s at 4096-aligned offsets
//   The file is exactly D + L bytes long. Whole 4 KiB pages of zeros in the
//   data are left as holes (never written), so a shard with gaps takes space
//   only for its bytes; the checksums cover the zeros a hole reads as. The
//   key is stored inside as well as in its name, so a file renamed by hand
//   or misplaced is not taken for another shard. A corrupt block-checksum
//   entry makes its block fail to verify, which is the safe direction, so
//   the table needs no checksum of its own; Verify() also checks the
//   whole-shard checksum independently.
//
// Writes: the file is built in DIR/tmp/, fsync'd if the request asks, and
// renamed over DIR/shards/XX/<key> (whose directory is then fsync'd too), so
// a reader sees the old object or the new one, never a mix. Put() reserves
// the space of everything but the holes with fallocate() first, so a full
// disk usually fails before any data is written (PutPatched() learns which
// pages are zeros only as it goes, and fails at the write instead); on any
// failure the temporary file is removed.
//
// Open() builds an in-memory index (key -> length, checksum, disk space) from
// the headers it finds, so List(), Stat() and Usage() never touch the disk.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "src/block_checksum.h"
#include "src/data_extents.h"
#include "src/shard_key.h"
#include "src/status.h"
#include "src/unique_fd.h"

namespace shardfs {

struct ShardInfo {
  ShardKey key;
  uint64_t length = 0;    // data bytes
  uint64_t checksum = 0;  // ShardChecksum() of the data
  // The part of `length` stored on disk: the length less the pages of zeros
  // left as holes.
  uint64_t data_bytes = 0;
};

struct StoreUsage {
  uint64_t capacity_bytes = 0;
  // Space the shard files take, headers included; the pages of zeros the
  // store leaves as holes are not counted.
  uint64_t used_bytes = 0;
  uint64_t shard_count = 0;
};

// Bytes to write at `offset` of a shard being derived from another.
struct ShardPatch {
  uint64_t offset = 0;
  std::span<const uint8_t> bytes;
};

// A verified byte range of a shard in a buffer of its own. The buffer holds
// the whole blocks the range touches, read straight from the file and
// checked there, so the bytes are never zero-filled first nor copied into a
// string: a server hands `buffer` on as it is (a ZeroMQ message that frees
// it when sent) and points at the requested window inside it.
struct ShardRange {
  std::unique_ptr<uint8_t[]> buffer;
  size_t buffer_bytes = 0;    // size of `buffer`
  size_t offset = 0;          // where the requested bytes start in `buffer`
  size_t length = 0;          // requested bytes, clipped to the shard
  uint64_t shard_length = 0;  // data length of the object the bytes came from

  std::span<const uint8_t> bytes() const { return {buffer.get() + offset, length}; }
};

// Size of the fixed header at the start of every shard file.
inline constexpr uint64_t kShardHeaderSize = 80;

// Where the data starts in the file of a shard of `length` bytes and
// `block_size`-byte blocks (D in the format above). The file is
// ShardDataOffset() + length bytes long.
uint64_t ShardDataOffset(uint64_t length, uint32_t block_size);

// Thread-safe: every method may be called from any number of threads at once.
//
// Locking: file I/O is done without holding any lock, so readers never wait
// for each other or for a writer's data. Two mutexes guard the shared state:
//  - `mutation_mu_` serializes the rename()/unlink() that publishes or
//    removes a shard file together with the matching index update, so the
//    index always agrees with the last change made on disk for a key (two
//    Puts racing on one key cannot leave the index describing the loser);
//  - `index_mu_` (reader/writer) guards the index and the byte counters; it
//    is held only for in-memory work, never across a system call.
// Lock order: mutation_mu_ before index_mu_.
// Reads open the shard's file by path and trust only the header of the file
// they opened, so a concurrent replacement or delete gives them the old
// object, the new object or kNotFound, never a mix.
class ShardStore {
 public:
  struct Options {
    std::string dir;
    // 0: the size of the file system holding `dir`.
    uint64_t capacity_bytes = 0;
    // Checksum granularity for newly written shards; a power of two between
    // 4 KiB and 16 MiB. Existing shards keep the block size they were
    // written with.
    uint32_t block_size = kDefaultBlockSize;
    // Larger Put/PutPatched requests are refused with kTooLarge.
    uint64_t max_shard_size = 64ull << 20;
    // Reserve a new file's space with fallocate() before writing it, so a full
    // disk fails up front; off only to exercise the write-time ENOSPC path.
    bool preallocate = true;
  };

  // Creates the directory layout if needed, removes leftover temporary files,
  // moves files under shards/ that are not valid shards to quarantine/, and
  // indexes the rest. kBusy if another store has `dir` open.
  static Result<std::unique_ptr<ShardStore>> Open(const Options& options);

  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;
  ~ShardStore();

  // Stores `data` as shard `key`, atomically replacing any existing object
  // with that key (repair rewrites a bad replica this way). With `sync` the
  // shard is on stable storage when this returns. If `expected_checksum` is
  // given and ShardChecksum(data) differs: kCorrupt and nothing is stored.
  // kNoSpace if the store's capacity or the disk would be exceeded, kTooLarge
  // above Options::max_shard_size.
  Status Put(const ShardKey& key, std::span<const uint8_t> data, bool sync,
             std::optional<uint64_t> expected_checksum);

  // Stores as `key` a copy of shard `base` resized to `new_length` (growth is
  // zero-filled) with `patches` applied in order (a later patch wins where
  // they overlap). Lets a client overwrite part of a shard without re-sending
  // the unchanged bytes. Every base block copied is verified: kCorrupt if one
  // is bad, kNotFound if `base` does not exist, kInvalidArgument if a patch
  // reaches past `new_length`. `key` may equal `base`.
  Status PutPatched(const ShardKey& key, const ShardKey& base, uint64_t new_length,
                    std::span<const ShardPatch> patches, bool sync);

  // Appends to *out the bytes [offset, offset + length) of the shard, clipped
  // to its length: reading past the end returns fewer bytes (none at or after
  // the end), and length 0 is valid. Only the blocks touched are read and
  // verified; on kCorrupt (or any error) *out is left as it was.
  Status Read(const ShardKey& key, uint64_t offset, uint64_t length, std::string* out);

  // Read() into a buffer of its own (ShardRange), with the length of the
  // object the bytes came from: the length and the bytes are from the same
  // file even when the shard is replaced meanwhile.
  Result<ShardRange> ReadRange(const ShardKey& key, uint64_t offset, uint64_t length);

  // ReadRange() for a caller that must never wait for the disk (a server's
  // socket thread): the file's name is resolved from the dentry cache only
  // (openat2 RESOLVE_CACHED) and every byte is read from the page cache only
  // (preadv2 RWF_NOWAIT). nullopt, with nothing done that could block, when
  // any of it is not in memory, when the blocks to read and verify exceed
  // `max_block_bytes`, or on any result it cannot be sure of (a short read,
  // an unexpected errno): the caller then does a ReadRange() where it may
  // block. Every touched block is verified exactly as in ReadRange(), and a
  // bad one is kCorrupt; a missing file is kNotFound.
  Result<std::optional<ShardRange>> TryReadRangeCached(const ShardKey& key, uint64_t offset,
                                                       uint64_t length, uint64_t max_block_bytes);

  // From the index; kNotFound if absent.
  Result<ShardInfo> Stat(const ShardKey& key);

  // kNotFound if absent.
  Status Delete(const ShardKey& key);
  // Makes a shard stored without `sync` durable: fsyncs its file and the
  // directory entry. kNotFound if it is not here.
  Status Sync(const ShardKey& key);

  // Up to `max` shards in key order, starting strictly after `after`
  // (nullopt: from the first), for inventory reports in pages.
  Result<std::vector<ShardInfo>> List(std::optional<ShardKey> after, size_t max);

  // Reads the whole shard and checks every block, the whole-shard checksum and
  // the file size (the scrubber's check). kCorrupt names what is wrong.
  Status Verify(const ShardKey& key);

  // Where the shard holds data, as extents of its bytes in order: the
  // pages of zeros its file keeps as holes are left out (a file system
  // that cannot tell reports it all as data). Every block a hole touches is
  // read and verified first, so a hole is reported only where the writer's
  // bytes were zeros: kCorrupt if such a block is bad.
  Result<std::vector<Extent>> DataExtents(const ShardKey& key);

  StoreUsage Usage() const;

  // The file that holds `key` (whether or not it exists); for tools and tests.
  std::string ShardPath(const ShardKey& key) const;

 private:
  struct IndexEntry {
    uint64_t length = 0;
    uint64_t checksum = 0;
    uint64_t disk_bytes = 0;  // the space its file takes: holes excluded
    uint64_t data_bytes = 0;  // of which shard data (ShardInfo::data_bytes)
  };
  class Reservation;

  ShardStore(Options options, uint64_t capacity_bytes, UniqueFd lock_fd);

  Status Scan();
  // Moves shards/<relative_path> to quarantine/ (with '/' turned into '_').
  void Quarantine(const std::string& relative_path);
  std::string FanOutDir(const ShardKey& key) const;
  std::string NewTempPath(const ShardKey& key);

  // Reserves room for a file taking `disk_bytes` that will replace `key`'s
  // current file, if any: kNoSpace if that would exceed the capacity.
  Status Reserve(const ShardKey& key, uint64_t disk_bytes, Reservation* reservation);
  // Renames the finished temporary file into place and records it in the
  // index, turning the reservation into used bytes; with `sync`, fsyncs the
  // directory afterwards. *renamed tells whether the temporary file is gone.
  Status Publish(const ShardKey& key, const std::string& temp_path, const IndexEntry& entry,
                 bool sync, Reservation* reservation, bool* renamed);

  const Options options_;
  const uint64_t capacity_bytes_;
  const std::string shards_dir_;
  const std::string tmp_dir_;
  const std::string quarantine_dir_;
  UniqueFd lock_fd_;  // holds the flock on DIR/LOCK for the store's lifetime

  std::mutex mutation_mu_;
  mutable std::shared_mutex index_mu_;
  std::map<ShardKey, IndexEntry> index_;  // guarded by index_mu_
  uint64_t used_bytes_ = 0;               // guarded by index_mu_
  uint64_t reserved_bytes_ = 0;           // guarded by index_mu_: writes in flight

  std::atomic<uint64_t> temp_counter_{0};
};

}  // namespace shardfs
