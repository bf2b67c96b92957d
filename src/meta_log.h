// MetaLog: the registry's append-only, checksummed, group-committed log.
//
// Each record is framed as
//   [u32 length][u64 checksum][u64 seq][payload]      (integers little-endian)
// where `length` counts seq + payload and `checksum` is XXH64 of seq + payload
// seeded with `length` (so a damaged length is caught too). Sequence numbers
// are consecutive across the whole log, also across files (NamespaceDb starts
// a new file after each snapshot and keeps numbering).
//
// Reading stops at the first record that is short (a torn write at the end of
// the file after a crash), has an impossible length, a checksum that does not
// match, or a sequence number that does not follow the previous one. What is
// before it is returned; Open() then cuts the file there, so the damaged tail
// is dropped once and new records follow the last good one. A bad record in
// the middle of a file (bit rot, not a crash) therefore also ends the log at
// that point: everything after it is lost, by design. A crash can only tear
// the last record, because records are written strictly in order, and the
// records after a torn one were never acknowledged.
//
// Durability: Append() only puts a record in memory and returns its seq.
// WaitDurable(seq) returns once that record is on stable storage. It uses
// group commit with no background thread: the first waiter to find no flush
// in progress becomes the flusher, writes every record appended so far and
// calls fdatasync once, while later appends collect in a fresh buffer; when it
// is done, one of the threads still waiting becomes the next flusher. So N
// threads appending at once cost about one fdatasync per flush, not N.
//
// Space ahead of the records is zero-filled in advance (kLogPreallocateBytes
// at a time), so a flush overwrites blocks the file already has: fdatasync
// then writes only those blocks, not the file size and extent map through
// the file system's journal, whose commit also waits for every other
// change on the disk (the nodes' shard files when they share it). A reader
// treats an all-zero tail as the clean end of the log; a clean close and
// SwitchFile cut it off.
//
// After a write or sync error the log is failed: every later Append and
// WaitDurable returns kIoError (the caller cannot know which records made it,
// so the registry must restart and replay).
//
// Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "src/status.h"
#include "src/unique_fd.h"

namespace shardfs {

// Framing header bytes: length + checksum + seq.
inline constexpr size_t kLogRecordHeaderSize = 4 + 8 + 8;
// Zero-filled space added ahead of the records whenever they reach the end.
inline constexpr uint64_t kLogPreallocateBytes = 4u << 20;
// Larger records are refused on write and treated as damage on read.
inline constexpr size_t kMaxLogPayloadSize = 64u << 20;

std::string EncodeLogRecord(uint64_t seq, std::string_view payload);

enum class LogRecordCheck {
  kOk,
  kShort,  // the buffer ends inside the record (a torn tail)
  kBad,    // impossible length or checksum mismatch
};

struct LogRecordView {
  uint64_t seq = 0;
  std::string_view payload;  // points into the decoded buffer
  size_t encoded_size = 0;   // bytes of the whole record
};

// Decodes the record at the start of `buffer`.
LogRecordCheck DecodeLogRecord(std::string_view buffer, LogRecordView* out);

struct LogReadResult {
  uint64_t records = 0;
  uint64_t first_seq = 0;  // 0 if no records
  uint64_t last_seq = 0;   // 0 if no records
  uint64_t valid_bytes = 0;
  uint64_t file_bytes = 0;
  // Why reading stopped before the end of the file; empty if it did not, or
  // if only zeros follow the last record (preallocated space).
  std::string stopped_because;
};

// fsyncs the directory holding `path`, so a file created, renamed or removed
// there stays so after a crash.
Status SyncParentDirectory(const std::string& path);

class MetaLog {
 public:
  // Called for each good record in order; a non-OK status stops the read and
  // is returned.
  using RecordFn = std::function<Status(uint64_t seq, std::string_view payload)>;

  // Reads every good record of an existing file; changes nothing on disk.
  static Result<LogReadResult> ReadFile(const std::string& path, const RecordFn& fn);
  // The same on a log file's bytes already in memory: what ReadFile and Open
  // do once they have read the file. Never fails on damage (that only ends
  // the read, see stopped_because); fails only with what `fn` returns.
  static Result<LogReadResult> ReadBuffer(std::string_view data, const RecordFn& fn);

  // Opens `path` for appending, creating it (and syncing its directory) when
  // absent. Existing records are passed to `fn` first, a damaged tail is cut
  // off, and new records are numbered from max(next_seq, last seq + 1).
  // `read_result`, if given, reports what was read.
  static Result<std::unique_ptr<MetaLog>> Open(const std::string& path, uint64_t next_seq,
                                               const RecordFn& fn,
                                               LogReadResult* read_result = nullptr);

  ~MetaLog();
  MetaLog(const MetaLog&) = delete;
  MetaLog& operator=(const MetaLog&) = delete;

  // Buffers one record and returns its seq; kIoError once the log failed,
  // kTooLarge past kMaxLogPayloadSize.
  Result<uint64_t> Append(std::string_view payload);
  // Blocks until record `seq` (and every record before it) is durable.
  Status WaitDurable(uint64_t seq);
  // Makes everything appended so far durable.
  Status Sync();
  // Makes the current file durable, closes it, and continues in a new empty
  // file at `path` (created, directory synced). Numbering continues.
  Status SwitchFile(const std::string& path);

  // OK, or the kIoError that failed the log.
  Status health() const;
  uint64_t last_seq() const;     // the last seq appended (next_seq - 1)
  uint64_t durable_seq() const;  // the last seq known durable
  uint64_t sync_count() const;   // fdatasync calls made, for tests and stats
  std::string path() const;

 private:
  MetaLog(std::string path, UniqueFd fd, uint64_t end, uint64_t next_seq);

  // Writes `bytes` at end_ (zero-filling more space first when they do not
  // fit) and syncs; called without mu_ held by the one flusher (or with mu_
  // held by SwitchFile, when no flush can run). Only that caller touches
  // end_ and allocated_.
  Status WriteAndSync(int fd, const std::string& bytes);
  // Cuts the zero-filled space after the last record off the current file.
  void TrimPreallocated();
  // Wakes everyone and refuses further work after an I/O error (mu_ held).
  void Fail(const Status& st);

  mutable std::mutex mu_;
  std::condition_variable flushed_;
  std::string path_;
  UniqueFd fd_;
  uint64_t end_ = 0;        // file offset after the last record written
  uint64_t allocated_ = 0;  // file size: end_ plus zero-filled space
  std::string pending_;     // encoded records not yet handed to a flusher
  uint64_t next_seq_ = 1;   // seq of the next Append
  uint64_t durable_seq_ = 0;
  bool flushing_ = false;
  Status failed_;  // non-OK once a write or sync failed
  std::atomic<uint64_t> sync_count_{0};
};

}  // namespace shardfs
