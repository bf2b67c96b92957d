#include "src/meta_snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include "src/meta_log.h"
#include "src/unique_fd.h"

namespace shardfs {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic = "SHFSSNAP";
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 8 + 4 + 8 + 8 + 8;
constexpr std::string_view kPrefix = "snap.";
constexpr std::string_view kTempName = "snap.tmp";

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

Status Errno(const std::string& what, int err) {
  return Status::Error(err == ENOSPC ? ErrorCode::kNoSpace : ErrorCode::kIoError,
                       what + ": " + std::strerror(err));
}

std::string EncodeHeader(uint64_t seq, std::string_view payload) {
  std::string header;
  header.reserve(kHeaderSize);
  header.append(kMagic);
  PutU32(&header, kVersion);
  PutU64(&header, seq);
  PutU64(&header, payload.size());
  PutU64(&header, XXH64(payload.data(), payload.size(), seq));
  return header;
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write " + path, errno);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::string SnapshotFileName(uint64_t seq) {
  std::string digits = std::to_string(seq);
  return std::string(kPrefix) + std::string(20 - digits.size(), '0') + digits;
}

std::optional<uint64_t> ParseSnapshotFileName(std::string_view name) {
  if (name.size() != kPrefix.size() + 20 || !name.starts_with(kPrefix)) return std::nullopt;
  std::string_view digits = name.substr(kPrefix.size());
  uint64_t seq = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seq);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return seq;
}

std::string EncodeSnapshotFile(uint64_t seq, std::string_view payload) {
  std::string out = EncodeHeader(seq, payload);
  out.append(payload);
  return out;
}

Result<SnapshotFileView> DecodeSnapshotFile(std::string_view data) {
  auto corrupt = [](std::string why) { return Status::Error(ErrorCode::kCorrupt, std::move(why)); };
  if (data.size() < kHeaderSize) return corrupt("shorter than its header");
  if (data.substr(0, 8) != kMagic) return corrupt("bad magic");
  const uint32_t version = static_cast<uint32_t>(GetLE(data.data() + 8, 4));
  if (version != kVersion) return corrupt("unknown version " + std::to_string(version));
  SnapshotFileView out;
  out.seq = GetLE(data.data() + 12, 8);
  const uint64_t length = GetLE(data.data() + 20, 8);
  const uint64_t checksum = GetLE(data.data() + 28, 8);
  if (length != data.size() - kHeaderSize) return corrupt("length does not match the file size");
  out.payload = data.substr(kHeaderSize);
  if (XXH64(out.payload.data(), out.payload.size(), out.seq) != checksum) {
    return corrupt("bad checksum");
  }
  return out;
}

Result<std::string> WriteSnapshotFile(const std::string& dir, uint64_t seq,
                                      std::string_view payload) {
  const std::string tmp = (fs::path(dir) / kTempName).string();
  const std::string final_path = (fs::path(dir) / SnapshotFileName(seq)).string();
  // Header and payload are written apart: the payload can be large, and a
  // copy of it would only be joined to 36 bytes.
  const std::string header = EncodeHeader(seq, payload);

  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return Errno("create " + tmp, errno);
  Status st = WriteAll(fd.get(), header, tmp);
  if (st.ok()) st = WriteAll(fd.get(), payload, tmp);
  if (st.ok() && ::fsync(fd.get()) != 0) st = Errno("fsync " + tmp, errno);
  if (st.ok()) {
    if (int err = fd.Close(); err != 0) st = Errno("close " + tmp, err);
  }
  if (st.ok() && ::rename(tmp.c_str(), final_path.c_str()) != 0) st = Errno("rename " + tmp, errno);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  SHARDFS_RETURN_IF_ERROR(SyncParentDirectory(final_path));
  return final_path;
}

Result<LoadedSnapshot> ReadSnapshotFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::Error(ErrorCode::kNotFound, "no snapshot " + path);
    return Errno("open " + path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Errno("stat " + path, errno);
  const size_t size = static_cast<size_t>(st.st_size);
  auto corrupt = [&](const std::string& why) {
    return Status::Error(ErrorCode::kCorrupt, "snapshot " + path + ": " + why);
  };
  if (size < kHeaderSize) return corrupt("shorter than its header");
  std::string data(size, '\0');
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd.get(), data.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read " + path, errno);
    if (n == 0) return corrupt("shrank while being read");
    done += static_cast<size_t>(n);
  }
  auto view = DecodeSnapshotFile(data);
  if (!view.ok()) return corrupt(view.status().message());
  LoadedSnapshot out;
  out.seq = view->seq;
  if (auto named = ParseSnapshotFileName(fs::path(path).filename().string());
      named.has_value() && *named != out.seq) {
    return corrupt("seq does not match the file name");
  }
  data.erase(0, kHeaderSize);
  out.payload = std::move(data);
  out.path = path;
  return out;
}

Result<std::vector<uint64_t>> ListSnapshots(const std::string& dir) {
  std::vector<uint64_t> seqs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (auto seq = ParseSnapshotFileName(entry.path().filename().string())) seqs.push_back(*seq);
  }
  if (ec) return Status::Error(ErrorCode::kIoError, "list " + dir + ": " + ec.message());
  std::sort(seqs.rbegin(), seqs.rend());
  return seqs;
}

Status RemoveSnapshotsBefore(const std::string& dir, uint64_t keep_seq) {
  SHARDFS_ASSIGN_OR_RETURN(std::vector<uint64_t> seqs, ListSnapshots(dir));
  bool removed = false;
  for (uint64_t seq : seqs) {
    if (seq >= keep_seq) continue;
    std::string path = (fs::path(dir) / SnapshotFileName(seq)).string();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("remove " + path, errno);
    removed = true;
  }
  std::string tmp = (fs::path(dir) / kTempName).string();
  if (::unlink(tmp.c_str()) == 0) removed = true;
  if (removed) SHARDFS_RETURN_IF_ERROR(SyncParentDirectory(tmp));
  return Status::Ok();
}

}  // namespace shardfs
