// Snapshot files of the registry's namespace.
//
// A snapshot is the whole NamespaceStore (NamespaceStore::EncodeSnapshot) as
// of one log sequence number: replaying the log records after that seq on top
// of it gives the current state, and the log files it covers can be deleted.
//
// File: META_DIR/snap.<seq, 20 decimal digits> (zero-padded so name order is
// seq order), laid out as
//   "SHFSSNAP" | u32 version (1) | u64 seq | u64 payload length |
//   u64 XXH64(payload, seed = seq) | payload            (little-endian)
// Written to snap.tmp, fsync'd, renamed into place, and the directory fsync'd,
// so a crash leaves either the old set of snapshots or the new one, never a
// half-written file under a snapshot name. A file that fails any check (magic,
// version, length, checksum, seq matching its name) is not a snapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/status.h"

namespace shardfs {

struct LoadedSnapshot {
  uint64_t seq = 0;
  std::string payload;
  std::string path;
};

// "snap.00000000000000000042".
std::string SnapshotFileName(uint64_t seq);
// The seq in a snapshot file name, or nullopt for any other name.
std::optional<uint64_t> ParseSnapshotFileName(std::string_view name);

// The file's bytes for `payload` as of `seq`: header and payload.
std::string EncodeSnapshotFile(uint64_t seq, std::string_view payload);

struct SnapshotFileView {
  uint64_t seq = 0;
  std::string_view payload;  // points into the decoded bytes
};

// Checks a snapshot file's bytes (magic, version, length, checksum):
// kCorrupt on anything that is not a whole snapshot file. What
// ReadSnapshotFile does once it has read the file, and what the fuzz target
// feeds hostile bytes.
Result<SnapshotFileView> DecodeSnapshotFile(std::string_view data);

// Writes the snapshot covering `seq` durably; returns its path.
Result<std::string> WriteSnapshotFile(const std::string& dir, uint64_t seq,
                                      std::string_view payload);

// Reads and verifies one snapshot file: kNotFound, kIoError, or kCorrupt.
Result<LoadedSnapshot> ReadSnapshotFile(const std::string& path);

// Every snapshot file in `dir` by seq, newest first (names only; not read).
Result<std::vector<uint64_t>> ListSnapshots(const std::string& dir);

// Deletes snapshot files older than `keep_seq` and any leftover temp file.
Status RemoveSnapshotsBefore(const std::string& dir, uint64_t keep_seq);

}  // namespace shardfs
