#include "src/namespace_db.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include "src/meta_snapshot.h"

namespace shardfs {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kLogPrefix = "log.";

// The number in "log.NNNNNN" (six digits or more), or nullopt.
std::optional<uint64_t> ParseLogFileName(std::string_view name) {
  if (!name.starts_with(kLogPrefix) || name.size() < kLogPrefix.size() + 6) return std::nullopt;
  std::string_view digits = name.substr(kLogPrefix.size());
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return n;
}

Result<std::vector<uint64_t>> ListLogFiles(const std::string& dir) {
  std::vector<uint64_t> numbers;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (auto n = ParseLogFileName(entry.path().filename().string())) numbers.push_back(*n);
  }
  if (ec) return Status::Error(ErrorCode::kIoError, "list " + dir + ": " + ec.message());
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

}  // namespace

NamespaceDb::NamespaceDb(std::string meta_dir, NamespaceDbOptions options)
    : meta_dir_(std::move(meta_dir)), options_(std::move(options)) {}

std::string NamespaceDb::LogPath(uint64_t number) const {
  char name[32];
  std::snprintf(name, sizeof(name), "log.%06llu", static_cast<unsigned long long>(number));
  return (fs::path(meta_dir_) / name).string();
}

int64_t NamespaceDb::Now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<NamespaceDb>> NamespaceDb::Open(const std::string& meta_dir,
                                                       NamespaceDbOptions options) {
  std::error_code ec;
  fs::create_directories(meta_dir, ec);
  if (ec) return Status::Error(ErrorCode::kIoError, "create " + meta_dir + ": " + ec.message());
  std::unique_ptr<NamespaceDb> db(new NamespaceDb(meta_dir, std::move(options)));

  const std::string lock_path = (fs::path(meta_dir) / "LOCK").string();
  db->lock_fd_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!db->lock_fd_.valid()) {
    return Status::Error(ErrorCode::kIoError, "open " + lock_path + ": " + std::strerror(errno));
  }
  if (::flock(db->lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    return Status::Error(ErrorCode::kBusy, meta_dir + " is in use by another registry");
  }

  SHARDFS_RETURN_IF_ERROR(db->Recover());

  // Nothing is open after a restart: orphans left from before go now, with
  // logged ops like any other removal.
  for (uint64_t ino : db->store_.Orphans()) {
    auto r = db->Mutate(DropOrphanOp{.ino = ino});
    if (!r.ok()) return r.status();
  }
  if (db->options_.snapshot_every_records > 0) {
    // A long replay is the reason snapshots exist: take one right away.
    db->snapshot_wanted_ = db->records_since_snapshot_ >= db->options_.snapshot_every_records;
    db->snapshot_thread_ = std::thread([raw = db.get()] { raw->SnapshotLoop(); });
  }
  return db;
}

Status NamespaceDb::Recover() {
  // 1. The newest snapshot that verifies.
  SHARDFS_ASSIGN_OR_RETURN(std::vector<uint64_t> snapshots, ListSnapshots(meta_dir_));
  bool loaded = false;
  for (uint64_t seq : snapshots) {
    auto read = ReadSnapshotFile((fs::path(meta_dir_) / SnapshotFileName(seq)).string());
    Status st = read.ok() ? store_.LoadSnapshot(read->payload) : read.status();
    if (st.ok()) {
      snapshot_seq_ = seq;
      loaded = true;
      break;
    }
    // An older snapshot only helps if the logs after it still exist; the gap
    // check below decides.
    spdlog::warn("namespace: skipping snapshot {}: {}", seq, st.ToString());
  }
  if (!snapshots.empty() && !loaded) {
    return Status::Error(ErrorCode::kCorrupt, "no snapshot in " + meta_dir_ + " verifies");
  }

  // 2. Every log record after it, in order, without gaps.
  uint64_t applied_seq = snapshot_seq_;
  auto replay = [&](uint64_t seq, std::string_view payload) -> Status {
    if (seq <= applied_seq) return Status::Ok();  // covered by the snapshot
    if (seq != applied_seq + 1) {
      return Status::Error(
          ErrorCode::kCorrupt,
          "log jumps from seq " + std::to_string(applied_seq) + " to " + std::to_string(seq));
    }
    auto op = DecodeOp(payload);
    if (!op.ok()) {
      return Status::Error(ErrorCode::kCorrupt,
                           "log record " + std::to_string(seq) + ": " + op.status().message());
    }
    auto applied = store_.Apply(*op);
    if (!applied.ok()) {
      // The store is deterministic, so a logged op must apply again; if it
      // does not, the log and the snapshot disagree and starting would serve
      // a namespace that never existed.
      return Status::Error(ErrorCode::kCorrupt,
                           "log record " + std::to_string(seq) + " (" + std::string(OpName(*op)) +
                               ") does not replay: " + applied.status().ToString());
    }
    applied_seq = seq;
    replayed_records_++;
    return Status::Ok();
  };

  SHARDFS_ASSIGN_OR_RETURN(std::vector<uint64_t> logs, ListLogFiles(meta_dir_));
  for (size_t i = 0; i + 1 < logs.size(); ++i) {
    auto read = MetaLog::ReadFile(LogPath(logs[i]), replay);
    if (!read.ok()) return read.status();
    if (!read->stopped_because.empty()) {
      spdlog::warn("namespace: {} ends early: {}", LogPath(logs[i]), read->stopped_because);
    }
  }
  log_number_ = logs.empty() ? 1 : logs.back();
  LogReadResult last_read;
  SHARDFS_ASSIGN_OR_RETURN(
      log_, MetaLog::Open(LogPath(log_number_), applied_seq + 1, replay, &last_read));
  if (!last_read.stopped_because.empty()) {
    spdlog::warn("namespace: dropped the damaged tail of {}: {}", LogPath(log_number_),
                 last_read.stopped_because);
  }
  records_since_snapshot_ = applied_seq - snapshot_seq_;
  // Leftovers of a crash inside Snapshot(): a temp file, superseded snapshots.
  return RemoveSnapshotsBefore(meta_dir_, snapshot_seq_);
}

NamespaceDb::~NamespaceDb() {
  {
    std::lock_guard lock(thread_mu_);
    stop_ = true;
  }
  thread_cv_.notify_all();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  if (log_) (void)log_->Sync();
}

Result<std::pair<ApplyResult, uint64_t>> NamespaceDb::ApplyAndAppendLocked(NamespaceOp& op) {
  if (!broken_.ok()) return broken_;
  if (Status health = log_->health(); !health.ok()) {
    broken_ = health;
    return broken_;
  }
  if (int64_t* t = OpTime(&op); t != nullptr && *t == 0) *t = Now();
  store_.Prepare(&op);
  SHARDFS_ASSIGN_OR_RETURN(ApplyResult result, store_.Apply(op));
  auto seq = log_->Append(EncodeOp(op));
  if (!seq.ok()) {
    // Applied in memory but not logged: from here on memory and disk may
    // differ, so accept nothing more.
    broken_ =
        Status::Error(ErrorCode::kIoError, "metadata log append failed: " + seq.status().message());
    return broken_;
  }
  // Ask for a snapshot at N records, and again every N more if one failed.
  const uint64_t every = options_.snapshot_every_records;
  ++records_since_snapshot_;
  if (every > 0 && records_since_snapshot_ >= every && records_since_snapshot_ % every == 0) {
    {
      std::lock_guard lock(thread_mu_);
      snapshot_wanted_ = true;
    }
    thread_cv_.notify_all();
  }
  return std::make_pair(std::move(result), *seq);
}

Result<ApplyResult> NamespaceDb::WaitAndReturn(Result<std::pair<ApplyResult, uint64_t>> applied) {
  if (!applied.ok()) return applied.status();
  SHARDFS_RETURN_IF_ERROR(log_->WaitDurable(applied->second));
  return std::move(applied->first);
}

Result<ApplyResult> NamespaceDb::Mutate(NamespaceOp op) {
  std::unique_lock lock(mutate_mu_);
  auto applied = ApplyAndAppendLocked(op);
  lock.unlock();
  // log_ is only replaced in Open, so using it unlocked is safe.
  return WaitAndReturn(std::move(applied));
}

Status NamespaceDb::OpenFile(uint64_t ino) {
  return store_.OpenRef(ino);
}

Result<std::optional<ApplyResult>> NamespaceDb::CloseFile(uint64_t ino) {
  std::unique_lock lock(mutate_mu_);
  std::optional<DropOrphanOp> drop = store_.CloseRef(ino, Now());
  if (!drop.has_value()) return std::optional<ApplyResult>();
  NamespaceOp op = *drop;
  auto applied = ApplyAndAppendLocked(op);
  lock.unlock();
  if (!applied.ok() && applied.status().code() == ErrorCode::kBusy) {
    // Reopened in between: the last close of that handle will drop it.
    return std::optional<ApplyResult>();
  }
  SHARDFS_ASSIGN_OR_RETURN(ApplyResult result, WaitAndReturn(std::move(applied)));
  return std::optional<ApplyResult>(std::move(result));
}

Status NamespaceDb::Snapshot() {
  std::lock_guard snapshot_lock(snapshot_mu_);
  uint64_t seq = 0;
  uint64_t old_log_number = 0;
  std::string payload;
  {
    std::lock_guard lock(mutate_mu_);
    if (!broken_.ok()) return broken_;
    seq = log_->last_seq();
    if (seq == snapshot_seq_) return Status::Ok();  // nothing new to cover
    payload = store_.EncodeSnapshot();
    // Records after `seq` go to a new file, so the ones the snapshot covers
    // can be deleted as whole files.
    old_log_number = log_number_;
    SHARDFS_RETURN_IF_ERROR(log_->SwitchFile(LogPath(log_number_ + 1)));
    log_number_++;
    records_since_snapshot_ = log_->last_seq() - seq;
  }
  SHARDFS_RETURN_IF_ERROR(WriteSnapshotFile(meta_dir_, seq, payload).status());
  {
    std::lock_guard lock(mutate_mu_);
    snapshot_seq_ = seq;
  }
  // The snapshot is durable: what it covers is no longer needed. A crash
  // before these deletions only leaves files that the next Open skips.
  SHARDFS_ASSIGN_OR_RETURN(std::vector<uint64_t> logs, ListLogFiles(meta_dir_));
  bool removed = false;
  for (uint64_t n : logs) {
    if (n > old_log_number) continue;
    if (::unlink(LogPath(n).c_str()) != 0 && errno != ENOENT) {
      return Status::Error(ErrorCode::kIoError,
                           "remove " + LogPath(n) + ": " + std::strerror(errno));
    }
    removed = true;
  }
  if (removed) SHARDFS_RETURN_IF_ERROR(SyncParentDirectory(LogPath(0)));
  return RemoveSnapshotsBefore(meta_dir_, seq);
}

void NamespaceDb::SnapshotLoop() {
  std::unique_lock lock(thread_mu_);
  while (true) {
    thread_cv_.wait(lock, [&] { return stop_ || snapshot_wanted_; });
    if (stop_) return;
    snapshot_wanted_ = false;
    lock.unlock();
    Status st = Snapshot();
    if (!st.ok()) spdlog::error("namespace: automatic snapshot failed: {}", st.ToString());
    lock.lock();
  }
}

NamespaceDbStats NamespaceDb::stats() const {
  std::lock_guard lock(mutate_mu_);
  NamespaceDbStats s;
  s.last_seq = log_->last_seq();
  s.snapshot_seq = snapshot_seq_;
  s.records_since_snapshot = records_since_snapshot_;
  s.log_syncs = log_->sync_count();
  s.replayed_records = replayed_records_;
  s.log_path = log_->path();
  return s;
}

}  // namespace shardfs
