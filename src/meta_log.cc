#include "src/meta_log.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace shardfs {
namespace {

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

Status ErrnoStatus(const std::string& what, int err) {
  return Status::Error(err == ENOSPC ? ErrorCode::kNoSpace : ErrorCode::kIoError,
                       what + ": " + std::strerror(err));
}

Result<std::string> ReadWholeFile(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat " + path, errno);
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read " + path, errno);
    if (n == 0) break;  // shrank under us; what we have is what there is
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

bool IsAllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == '\0'; });
}

// Writes all of `bytes` at `offset`.
Status PwriteAll(int fd, std::string_view bytes, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write " + path, errno);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeLogRecord(uint64_t seq, std::string_view payload) {
  const uint32_t length = static_cast<uint32_t>(8 + payload.size());
  std::string body;
  body.reserve(length);
  PutU64(&body, seq);
  body.append(payload);
  std::string out;
  out.reserve(kLogRecordHeaderSize + payload.size());
  PutU32(&out, length);
  PutU64(&out, XXH64(body.data(), body.size(), length));
  out += body;
  return out;
}

LogRecordCheck DecodeLogRecord(std::string_view buffer, LogRecordView* out) {
  if (buffer.size() < 4) return LogRecordCheck::kShort;
  const uint32_t length = GetU32(buffer.data());
  // A zero length is what a crash leaves in preallocated or zero-filled
  // space: damage, not a record.
  if (length < 8 || length > 8 + kMaxLogPayloadSize) return LogRecordCheck::kBad;
  if (buffer.size() < 12 + static_cast<size_t>(length)) return LogRecordCheck::kShort;
  const uint64_t checksum = GetU64(buffer.data() + 4);
  std::string_view body = buffer.substr(12, length);
  if (XXH64(body.data(), body.size(), length) != checksum) return LogRecordCheck::kBad;
  out->seq = GetU64(body.data());
  out->payload = body.substr(8);
  out->encoded_size = 12 + length;
  return LogRecordCheck::kOk;
}

Status SyncParentDirectory(const std::string& path) {
  // Built in one expression: assigning "." afterwards trips GCC 12's
  // -Wrestrict false positive at -O3, which breaks release builds.
  const std::string parent = std::filesystem::path(path).parent_path().string();
  const std::string dir = parent.empty() ? std::string(".") : parent;
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("open directory " + dir, errno);
  if (::fsync(fd.get()) != 0) return ErrnoStatus("fsync directory " + dir, errno);
  return Status::Ok();
}

Result<LogReadResult> MetaLog::ReadFile(const std::string& path, const RecordFn& fn) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::Error(ErrorCode::kNotFound, "no log file " + path);
    return ErrnoStatus("open " + path, errno);
  }
  SHARDFS_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(fd.get(), path));
  return ReadBuffer(data, fn);
}

Result<LogReadResult> MetaLog::ReadBuffer(std::string_view data, const RecordFn& fn) {
  LogReadResult result;
  result.file_bytes = data.size();
  size_t pos = 0;
  while (pos < data.size()) {
    LogRecordView rec;
    LogRecordCheck check = DecodeLogRecord(data.substr(pos), &rec);
    if (check != LogRecordCheck::kOk && IsAllZero(data.substr(pos))) break;  // preallocated
    if (check == LogRecordCheck::kShort) {
      result.stopped_because = "torn record at offset " + std::to_string(pos);
      break;
    }
    if (check == LogRecordCheck::kBad) {
      result.stopped_because = "damaged record at offset " + std::to_string(pos);
      break;
    }
    // Numbering starts at 1 and the next seq must exist: 0 and 2^64-1 are
    // forged (with 2^64-1, the next record's seq would wrap to 0 and Open
    // would number new records below it, so the next read would drop them).
    if (rec.seq == 0 || rec.seq == UINT64_MAX) {
      result.stopped_because = "impossible sequence number " + std::to_string(rec.seq) +
                               " at offset " + std::to_string(pos);
      break;
    }
    if (result.records > 0 && rec.seq != result.last_seq + 1) {
      result.stopped_because = "sequence jumps from " + std::to_string(result.last_seq) + " to " +
                               std::to_string(rec.seq) + " at offset " + std::to_string(pos);
      break;
    }
    if (fn) SHARDFS_RETURN_IF_ERROR(fn(rec.seq, rec.payload));
    if (result.records == 0) result.first_seq = rec.seq;
    result.last_seq = rec.seq;
    result.records++;
    pos += rec.encoded_size;
  }
  result.valid_bytes = pos;
  return result;
}

Result<std::unique_ptr<MetaLog>> MetaLog::Open(const std::string& path, uint64_t next_seq,
                                               const RecordFn& fn, LogReadResult* read_result) {
  bool created = false;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) {
    fd.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    created = true;
  }
  if (!fd.valid()) return ErrnoStatus("open " + path, errno);

  LogReadResult result;
  if (!created) {
    SHARDFS_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(fd.get(), path));
    SHARDFS_ASSIGN_OR_RETURN(result, ReadBuffer(data, fn));
    if (result.valid_bytes < result.file_bytes) {
      // Drop the damaged tail now, so new records follow the last good one
      // and the next replay does not stop early again. (Zero-filled space
      // goes too; the first flush adds it back.)
      if (::ftruncate(fd.get(), static_cast<off_t>(result.valid_bytes)) != 0) {
        return ErrnoStatus("truncate " + path, errno);
      }
      if (::fdatasync(fd.get()) != 0) return ErrnoStatus("fdatasync " + path, errno);
    }
  } else {
    SHARDFS_RETURN_IF_ERROR(SyncParentDirectory(path));
  }
  if (read_result != nullptr) *read_result = result;
  if (result.records > 0) next_seq = std::max(next_seq, result.last_seq + 1);
  if (next_seq == 0) next_seq = 1;
  return std::unique_ptr<MetaLog>(new MetaLog(path, std::move(fd), result.valid_bytes, next_seq));
}

MetaLog::MetaLog(std::string path, UniqueFd fd, uint64_t end, uint64_t next_seq)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      end_(end),
      allocated_(end),
      next_seq_(next_seq),
      durable_seq_(next_seq - 1) {}

MetaLog::~MetaLog() {
  // Records never waited for were never acknowledged; still, keep them if we
  // can, so a clean shutdown loses nothing.
  if (Sync().ok()) TrimPreallocated();
}

void MetaLog::TrimPreallocated() {
  // Only tidiness: readers take a zero tail as the end of the log, so a
  // failed or unsynced truncate loses nothing.
  if (allocated_ > end_ && ::ftruncate(fd_.get(), static_cast<off_t>(end_)) == 0) {
    allocated_ = end_;
  }
}

Result<uint64_t> MetaLog::Append(std::string_view payload) {
  if (payload.size() > kMaxLogPayloadSize) {
    return Status::Error(ErrorCode::kTooLarge, "log record too large");
  }
  std::lock_guard lock(mu_);
  if (!failed_.ok()) return failed_;
  const uint64_t seq = next_seq_++;
  pending_ += EncodeLogRecord(seq, payload);
  return seq;
}

Status MetaLog::WriteAndSync(int fd, const std::string& bytes) {
  if (end_ + bytes.size() > allocated_) {
    // Once per kLogPreallocateBytes: this one sync also carries the new
    // size and extents through the journal, so later ones need not.
    static const std::string kZeros(1u << 20, '\0');
    const uint64_t target = end_ + bytes.size() + kLogPreallocateBytes;
    while (allocated_ < target) {
      const uint64_t n = std::min<uint64_t>(kZeros.size(), target - allocated_);
      SHARDFS_RETURN_IF_ERROR(
          PwriteAll(fd, std::string_view(kZeros).substr(0, n), allocated_, path_));
      allocated_ += n;
    }
  }
  SHARDFS_RETURN_IF_ERROR(PwriteAll(fd, bytes, end_, path_));
  end_ += bytes.size();
  const auto started = std::chrono::steady_clock::now();
  if (::fdatasync(fd) != 0) return ErrnoStatus("fdatasync " + path_, errno);
  sync_count_++;
  // Every acknowledged change waits for this; a disk that takes seconds
  // shows to clients as a registry that stopped answering.
  const auto took = std::chrono::steady_clock::now() - started;
  if (took >= std::chrono::seconds(1)) {
    spdlog::warn("metadata log: fdatasync of {} bytes took {} ms (the disk is slow or busy)",
                 bytes.size(), std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
  }
  return Status::Ok();
}

void MetaLog::Fail(const Status& st) {
  if (failed_.ok())
    failed_ = Status::Error(ErrorCode::kIoError, "metadata log failed: " + st.message());
  flushed_.notify_all();
}

Status MetaLog::WaitDurable(uint64_t seq) {
  std::unique_lock lock(mu_);
  if (seq >= next_seq_) {
    return Status::Error(ErrorCode::kInvalidArgument, "wait for a record never appended");
  }
  while (durable_seq_ < seq) {
    if (!failed_.ok()) return failed_;
    if (flushing_) {
      flushed_.wait(lock);
      continue;
    }
    // Become the flusher for everything appended so far.
    flushing_ = true;
    std::string batch;
    batch.swap(pending_);
    const uint64_t target = next_seq_ - 1;
    const int fd = fd_.get();
    lock.unlock();
    Status st = WriteAndSync(fd, batch);
    lock.lock();
    flushing_ = false;
    if (!st.ok()) {
      Fail(st);
      return failed_;
    }
    durable_seq_ = target;
    flushed_.notify_all();
  }
  return Status::Ok();
}

Status MetaLog::Sync() {
  uint64_t last;
  {
    std::lock_guard lock(mu_);
    last = next_seq_ - 1;
    if (durable_seq_ >= last) return failed_;
  }
  return WaitDurable(last);
}

Status MetaLog::SwitchFile(const std::string& path) {
  std::unique_lock lock(mu_);
  flushed_.wait(lock, [&] { return !flushing_; });
  if (!failed_.ok()) return failed_;
  // No flush can start while we hold mu_, so writing here keeps order.
  if (durable_seq_ < next_seq_ - 1) {
    Status st = WriteAndSync(fd_.get(), pending_);
    if (!st.ok()) {
      Fail(st);
      return failed_;
    }
    pending_.clear();
    durable_seq_ = next_seq_ - 1;
    flushed_.notify_all();
  }
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus("create " + path, errno);
  SHARDFS_RETURN_IF_ERROR(SyncParentDirectory(path));
  TrimPreallocated();
  // The old file's data is already synced, so a close error cannot lose any.
  (void)fd_.Close();
  fd_ = std::move(fd);
  path_ = path;
  end_ = 0;
  allocated_ = 0;
  return Status::Ok();
}

Status MetaLog::health() const {
  std::lock_guard lock(mu_);
  return failed_;
}

uint64_t MetaLog::last_seq() const {
  std::lock_guard lock(mu_);
  return next_seq_ - 1;
}

uint64_t MetaLog::durable_seq() const {
  std::lock_guard lock(mu_);
  return durable_seq_;
}

uint64_t MetaLog::sync_count() const {
  return sync_count_.load();
}

std::string MetaLog::path() const {
  std::lock_guard lock(mu_);
  return path_;
}

}  // namespace shardfs
