#include "src/shard_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "src/data_extents.h"

namespace shardfs {
namespace {

constexpr std::array<uint8_t, 8> kMagic = {'S', 'H', 'F', 'S', 'H', 'A', 'R', 'D'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kDataAlignment = 4096;
static_assert(kDataAlignment % kHolePageBytes == 0, "shard data must start on a page");
constexpr uint32_t kMinBlockSize = 4096;
constexpr uint32_t kMaxBlockSize = 16u << 20;
// Headers claiming more are corrupt; keeps offset arithmetic far from overflow.
constexpr uint64_t kMaxDataLength = 1ull << 44;
// Verify() reads this much per pread, so a scrub does not hold a whole shard
// in memory.
constexpr uint64_t kVerifyChunkBytes = 1 << 20;

Status ErrnoStatus(int err, std::string_view what) {
  return Status::Error(ErrnoToErrorCode(err),
                       fmt::format("{}: {}", what, std::generic_category().message(err)));
}

Status Corrupt(std::string message) {
  return Status::Error(ErrorCode::kCorrupt, std::move(message));
}

bool IsValidBlockSize(uint32_t block_size) {
  return block_size >= kMinBlockSize && block_size <= kMaxBlockSize &&
         (block_size & (block_size - 1)) == 0;
}

void PutLe(uint8_t* at, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) at[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t GetLe(const uint8_t* at, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(at[i]) << (8 * i);
  return value;
}

// The fixed header of a shard file; see the format in shard_store.h.
struct ShardHeader {
  ShardKey key;
  uint32_t block_size = 0;
  uint64_t data_length = 0;
  uint64_t block_count = 0;
  uint64_t checksum = 0;
  uint64_t data_offset = 0;

  static ShardHeader For(const ShardKey& key, uint64_t length, uint32_t block_size,
                         uint64_t checksum) {
    return ShardHeader{key,      block_size,
                       length,   BlockCount(length, block_size),
                       checksum, ShardDataOffset(length, block_size)};
  }
  uint64_t file_bytes() const { return data_offset + data_length; }
};

constexpr size_t kHeaderChecksumOffset = 72;

// Everything before the data: header, block checksums, zero padding.
std::vector<uint8_t> EncodePrefix(const ShardHeader& header, std::span<const uint64_t> sums) {
  std::vector<uint8_t> prefix(header.data_offset, 0);
  uint8_t* p = prefix.data();
  std::copy(kMagic.begin(), kMagic.end(), p);
  PutLe(p + 8, kFormatVersion, 4);
  PutLe(p + 12, header.block_size, 4);
  PutLe(p + 16, header.data_length, 8);
  PutLe(p + 24, header.block_count, 8);
  PutLe(p + 32, header.checksum, 8);
  PutLe(p + 40, header.key.inode, 8);
  PutLe(p + 48, header.key.index, 4);
  PutLe(p + 56, header.key.generation, 8);
  PutLe(p + 64, header.data_offset, 8);
  PutLe(p + kHeaderChecksumOffset, XXH3_64bits(p, kHeaderChecksumOffset), 8);
  for (size_t i = 0; i < sums.size(); ++i) PutLe(p + kShardHeaderSize + 8 * i, sums[i], 8);
  return prefix;
}

// Checks everything the header says about itself and that it belongs to
// `key`; any inconsistency is kCorrupt.
Result<ShardHeader> DecodeHeader(std::span<const uint8_t, kShardHeaderSize> bytes,
                                 const ShardKey& key) {
  const uint8_t* p = bytes.data();
  const std::string name = key.ToString();
  if (!std::equal(kMagic.begin(), kMagic.end(), p)) {
    return Corrupt(fmt::format("shard {}: bad magic", name));
  }
  if (XXH3_64bits(p, kHeaderChecksumOffset) != GetLe(p + kHeaderChecksumOffset, 8)) {
    return Corrupt(fmt::format("shard {}: header checksum mismatch", name));
  }
  if (GetLe(p + 8, 4) != kFormatVersion) {
    return Corrupt(fmt::format("shard {}: unknown format version {}", name, GetLe(p + 8, 4)));
  }
  ShardHeader header;
  header.block_size = static_cast<uint32_t>(GetLe(p + 12, 4));
  header.data_length = GetLe(p + 16, 8);
  header.block_count = GetLe(p + 24, 8);
  header.checksum = GetLe(p + 32, 8);
  header.key.inode = GetLe(p + 40, 8);
  header.key.index = static_cast<uint32_t>(GetLe(p + 48, 4));
  header.key.generation = GetLe(p + 56, 8);
  header.data_offset = GetLe(p + 64, 8);
  if (!IsValidBlockSize(header.block_size) || header.data_length > kMaxDataLength ||
      header.block_count != BlockCount(header.data_length, header.block_size) ||
      header.data_offset != ShardDataOffset(header.data_length, header.block_size)) {
    return Corrupt(fmt::format("shard {}: inconsistent header", name));
  }
  if (header.key != key) {
    return Corrupt(fmt::format("shard {}: file holds shard {}", name, header.key.ToString()));
  }
  return header;
}

// pread() until `size` bytes or end of file; returns the bytes read.
Result<size_t> PreadFull(int fd, void* buffer, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, static_cast<char*>(buffer) + done, size - done,
                        static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read shard");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status PwriteFull(int fd, const void* buffer, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, static_cast<const char*>(buffer) + done, size - done,
                         static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write shard");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open " + path);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync " + path);
  return Status::Ok();
}

// mkdir that treats an existing directory as success. *created tells whether
// the parent needs an fsync to make the new entry durable.
Status MakeDir(const std::string& path, bool* created) {
  if (::mkdir(path.c_str(), 0755) == 0) {
    *created = true;
    return Status::Ok();
  }
  if (errno == EEXIST) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status::Ok();
    return Status::Error(ErrorCode::kNotDir, path + " exists and is not a directory");
  }
  return ErrnoStatus(errno, "mkdir " + path);
}

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

// Names in a directory, without "." and "..".
Result<std::vector<std::string>> ListDir(const std::string& path) {
  UniqueDir dir(::opendir(path.c_str()));
  if (!dir) return ErrnoStatus(errno, "opendir " + path);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* entry = ::readdir(dir.get())) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return ErrnoStatus(errno, "readdir " + path);
  return names;
}

std::string FanOutName(int index) {
  return fmt::format("{:02x}", index);
}

// The inverse of FanOutName: exactly two lowercase hex digits.
std::optional<int> ParseFanOutName(std::string_view name) {
  auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (name.size() != 2 || digit(name[0]) < 0 || digit(name[1]) < 0) return std::nullopt;
  return digit(name[0]) * 16 + digit(name[1]);
}

int FanOutIndex(const ShardKey& key) {
  uint8_t packed[20];
  PutLe(packed, key.inode, 8);
  PutLe(packed + 8, key.index, 4);
  PutLe(packed + 12, key.generation, 8);
  return static_cast<int>(XXH3_64bits(packed, sizeof(packed)) & 0xff);
}

UniqueFd OpenForRead(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
}

Status OpenShardFile(const ShardKey& key, const std::string& path, UniqueFd* fd) {
  *fd = OpenForRead(path);
  if (fd->valid()) return Status::Ok();
  if (errno == ENOENT) {
    return Status::Error(ErrorCode::kNotFound, "no shard " + key.ToString());
  }
  return ErrnoStatus(errno, "open shard " + key.ToString());
}

Result<ShardHeader> ReadHeader(int fd, const ShardKey& key) {
  std::array<uint8_t, kShardHeaderSize> bytes;
  SHARDFS_ASSIGN_OR_RETURN(size_t n, PreadFull(fd, bytes.data(), bytes.size(), 0));
  if (n != bytes.size()) return Corrupt(fmt::format("shard {}: truncated header", key.ToString()));
  return DecodeHeader(bytes, key);
}

// The stored checksums of blocks [first, first + count).
Result<std::vector<uint64_t>> ReadBlockChecksums(int fd, const ShardHeader& header, uint64_t first,
                                                 uint64_t count) {
  std::vector<uint8_t> raw(count * 8);
  SHARDFS_ASSIGN_OR_RETURN(size_t n,
                           PreadFull(fd, raw.data(), raw.size(), kShardHeaderSize + first * 8));
  if (n != raw.size()) {
    return Corrupt(fmt::format("shard {}: truncated block checksums", header.key.ToString()));
  }
  std::vector<uint64_t> sums(count);
  for (uint64_t i = 0; i < count; ++i) sums[i] = GetLe(raw.data() + 8 * i, 8);
  return sums;
}

// Appends data bytes [offset, offset + length) of the shard open as `fd` to
// *out after verifying every block they touch. Requires length > 0 and the
// range within the data. On error *out is unchanged.
Status ReadVerified(int fd, const ShardHeader& header, uint64_t offset, uint64_t length,
                    std::string* out) {
  const uint64_t block_size = header.block_size;
  const uint64_t first_block = offset / block_size;
  const uint64_t last_block = (offset + length - 1) / block_size;
  const uint64_t span_start = first_block * block_size;
  const uint64_t span_end = std::min((last_block + 1) * block_size, header.data_length);
  const uint64_t span_length = span_end - span_start;
  SHARDFS_ASSIGN_OR_RETURN(
      std::vector<uint64_t> sums,
      ReadBlockChecksums(fd, header, first_block, last_block - first_block + 1));

  // Whole blocks are read straight into *out, checked, and then trimmed to
  // the requested range, so the common aligned read is never copied.
  const size_t base = out->size();
  out->resize(base + span_length);
  auto fail = [&](Status status) {
    out->resize(base);
    return status;
  };
  Result<size_t> n =
      PreadFull(fd, out->data() + base, span_length, header.data_offset + span_start);
  if (!n.ok()) return fail(n.status());
  if (*n != span_length) {
    return fail(
        Corrupt(fmt::format("shard {}: file shorter than its header says", header.key.ToString())));
  }
  std::optional<uint64_t> bad_block = FindBadBlock(AsBytes(std::string_view(*out).substr(base)),
                                                   header.block_size, first_block, sums);
  if (bad_block) {
    return fail(Corrupt(
        fmt::format("shard {}: block {} fails its checksum", header.key.ToString(), *bad_block)));
  }
  out->erase(base, offset - span_start);
  out->resize(base + length);
  return Status::Ok();
}

// How ReadRangeFrom may wait for the disk.
enum class Wait { kMayBlock, kCachedOnly };

// One pread() (or, kCachedOnly, one preadv2(RWF_NOWAIT), which takes only
// what the page cache holds) of up to `size` bytes, repeated after EINTR
// only. *would_block: the page cache could not give even the first byte.
Result<size_t> PreadOnce(int fd, void* buffer, size_t size, uint64_t offset, Wait wait,
                         bool* would_block) {
  *would_block = false;
  while (true) {
    ssize_t n;
    if (wait == Wait::kCachedOnly) {
      iovec iov{buffer, size};
      n = ::preadv2(fd, &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
    } else {
      n = ::pread(fd, buffer, size, static_cast<off_t>(offset));
    }
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (wait == Wait::kCachedOnly) {
      // EAGAIN: not cached. EOPNOTSUPP: a file system without RWF_NOWAIT.
      // Anything else is left to a blocking read to report.
      *would_block = true;
      return size_t{0};
    }
    return ErrnoStatus(errno, "read shard");
  }
}

// Reads exactly `size` bytes at `offset`. kMayBlock: pread()s until done or
// end of file, and returns the bytes read. kCachedOnly: one preadv2; a short
// read (not all cached, or end of file: this path cannot tell them apart)
// sets *would_block.
Result<size_t> ReadAt(int fd, void* buffer, size_t size, uint64_t offset, Wait wait,
                      bool* would_block) {
  if (wait == Wait::kMayBlock) {
    *would_block = false;
    return PreadFull(fd, buffer, size, offset);
  }
  SHARDFS_ASSIGN_OR_RETURN(size_t n, PreadOnce(fd, buffer, size, offset, wait, would_block));
  if (n != size) *would_block = true;
  return n;
}

// How much of the file's start one read takes: the header and, for shards
// of up to (4096 - 80) / 8 = 502 blocks (all 4 MiB shards of 64 KiB
// blocks), every block checksum, in one system call. Every shard file is at
// least this long, since its data starts at a multiple of 4096.
constexpr size_t kPrefixReadBytes = 4096;

// Reads and verifies data bytes [offset, offset + length) of the shard open
// as `fd` (clipped to its length) into a new buffer: header and block
// checksums first, then exactly the touched blocks, each checked against its
// checksum. kCachedOnly: when anything is not in the page cache, or the
// touched blocks exceed `max_block_bytes`, *would_block is set and *out left
// as it was; corruption is still kCorrupt.
Status ReadRangeFrom(int fd, const ShardKey& key, uint64_t offset, uint64_t length, Wait wait,
                     uint64_t max_block_bytes, ShardRange* out, bool* would_block) {
  std::array<uint8_t, kPrefixReadBytes> prefix;
  SHARDFS_ASSIGN_OR_RETURN(size_t prefix_bytes,
                           ReadAt(fd, prefix.data(), prefix.size(), 0, wait, would_block));
  // A file shorter than one page is corrupt, but only a read that may block
  // can tell that from a page that is not cached.
  if (*would_block) return Status::Ok();
  if (prefix_bytes < kShardHeaderSize) {
    return Corrupt(fmt::format("shard {}: truncated header", key.ToString()));
  }
  SHARDFS_ASSIGN_OR_RETURN(
      ShardHeader header,
      DecodeHeader(std::span<const uint8_t, kShardHeaderSize>(prefix.data(), kShardHeaderSize),
                   key));
  ShardRange range;
  range.shard_length = header.data_length;
  if (length == 0 || offset >= header.data_length) {
    *out = std::move(range);
    return Status::Ok();
  }
  length = std::min(length, header.data_length - offset);

  const uint64_t block_size = header.block_size;
  const uint64_t first_block = offset / block_size;
  const uint64_t last_block = (offset + length - 1) / block_size;
  const uint64_t block_count = last_block - first_block + 1;
  const uint64_t span_start = first_block * block_size;
  const uint64_t span_end = std::min((last_block + 1) * block_size, header.data_length);
  const uint64_t span_length = span_end - span_start;
  if (wait == Wait::kCachedOnly && span_length > max_block_bytes) {
    *would_block = true;
    return Status::Ok();
  }

  std::vector<uint64_t> sums(block_count);
  const uint64_t sums_start = kShardHeaderSize + first_block * 8;
  const uint64_t sums_end = sums_start + block_count * 8;
  if (sums_end <= prefix_bytes) {
    for (uint64_t i = 0; i < block_count; ++i)
      sums[i] = GetLe(prefix.data() + sums_start + 8 * i, 8);
  } else {
    std::vector<uint8_t> raw(block_count * 8);
    SHARDFS_ASSIGN_OR_RETURN(size_t n,
                             ReadAt(fd, raw.data(), raw.size(), sums_start, wait, would_block));
    if (*would_block) return Status::Ok();
    if (n != raw.size()) {
      return Corrupt(fmt::format("shard {}: truncated block checksums", key.ToString()));
    }
    for (uint64_t i = 0; i < block_count; ++i) sums[i] = GetLe(raw.data() + 8 * i, 8);
  }

  // Default-initialised: pread fills it, nothing zero-fills it first.
  range.buffer.reset(new uint8_t[span_length]);
  range.buffer_bytes = span_length;
  SHARDFS_ASSIGN_OR_RETURN(size_t n, ReadAt(fd, range.buffer.get(), span_length,
                                            header.data_offset + span_start, wait, would_block));
  if (*would_block) return Status::Ok();
  if (n != span_length) {
    return Corrupt(fmt::format("shard {}: file shorter than its header says", key.ToString()));
  }
  std::optional<uint64_t> bad_block =
      FindBadBlock(std::span<const uint8_t>(range.buffer.get(), span_length), header.block_size,
                   first_block, sums);
  if (bad_block) {
    return Corrupt(
        fmt::format("shard {}: block {} fails its checksum", key.ToString(), *bad_block));
  }
  range.offset = offset - span_start;
  range.length = length;
  *out = std::move(range);
  return Status::Ok();
}

// open() of a shard file that only succeeds when every component of `path`
// is in the dentry cache (openat2 RESOLVE_CACHED), so it never waits for
// the disk. -1 with errno set otherwise (EAGAIN: not cached; ENOSYS or
// EINVAL: a kernel without it).
int OpenCachedForRead(const std::string& path) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_CACHED;
  return static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof(how)));
}

// A file in DIR/tmp/ being built; unlinked on destruction unless published.
class TempFile {
 public:
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    fd_.reset();
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  // Creates the file with `size` bytes, of which only `data` will be
  // written: the rest reads as zeros and takes no space. With `preallocate`
  // the space of `data` is claimed before any byte is written, so a full
  // disk fails here; file systems without fallocate simply skip that.
  Status Create(std::string path, uint64_t size, std::span<const Extent> data, bool preallocate) {
    fd_.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd_.valid()) return ErrnoStatus(errno, "create " + path);
    path_ = std::move(path);
    uint64_t file_size = 0;
    for (const Extent& extent : preallocate ? data : std::span<const Extent>()) {
      if (::fallocate(fd_.get(), 0, static_cast<off_t>(extent.offset),
                      static_cast<off_t>(extent.length)) == 0) {
        file_size = std::max(file_size, extent.end());
      } else if (errno != EOPNOTSUPP && errno != ENOSYS) {
        return ErrnoStatus(errno, "reserve space for " + path_);
      }
    }
    if (file_size < size && ::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return ErrnoStatus(errno, "size " + path_);
    }
    return Status::Ok();
  }

  // Makes the written data durable (with `sync`) and closes the file,
  // reporting the write-back errors close() may be the first to see.
  Status Finish(bool sync) {
    if (sync && ::fsync(fd_.get()) != 0) return ErrnoStatus(errno, "fsync " + path_);
    if (int err = fd_.Close(); err != 0) return ErrnoStatus(err, "close " + path_);
    return Status::Ok();
  }

  // Called once the file has been renamed away: nothing left to remove.
  void Disown() { path_.clear(); }

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

 private:
  UniqueFd fd_;
  std::string path_;
};

}  // namespace

uint64_t ShardDataOffset(uint64_t length, uint32_t block_size) {
  uint64_t end_of_sums = kShardHeaderSize + 8 * BlockCount(length, block_size);
  return (end_of_sums + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
}

// Bytes set aside for a write in progress, so that concurrent writers cannot
// together overrun the capacity. Returned on destruction if not published.
class ShardStore::Reservation {
 public:
  explicit Reservation(ShardStore* store) : store_(store) {}
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() {
    if (bytes_ == 0) return;
    std::unique_lock lock(store_->index_mu_);
    store_->reserved_bytes_ -= bytes_;
  }

 private:
  friend class ShardStore;
  ShardStore* store_;
  uint64_t bytes_ = 0;  // guarded by store_->index_mu_
};

ShardStore::ShardStore(Options options, uint64_t capacity_bytes, UniqueFd lock_fd)
    : options_(std::move(options)),
      capacity_bytes_(capacity_bytes),
      shards_dir_(options_.dir + "/shards"),
      tmp_dir_(options_.dir + "/tmp"),
      quarantine_dir_(options_.dir + "/quarantine"),
      lock_fd_(std::move(lock_fd)) {}

ShardStore::~ShardStore() = default;

Result<std::unique_ptr<ShardStore>> ShardStore::Open(const Options& options) {
  if (options.dir.empty()) {
    return Status::Error(ErrorCode::kInvalidArgument, "shard store: no directory given");
  }
  if (!IsValidBlockSize(options.block_size)) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         fmt::format("shard store: block size {} is not a power of two in "
                                     "[{}, {}]",
                                     options.block_size, kMinBlockSize, kMaxBlockSize));
  }
  if (options.max_shard_size == 0 || options.max_shard_size > kMaxDataLength) {
    return Status::Error(ErrorCode::kInvalidArgument, "shard store: bad max shard size");
  }

  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "create " + options.dir);

  // One store per directory: a second one would delete the first one's
  // temporary files and disagree with it about usage.
  std::string lock_path = options.dir + "/LOCK";
  UniqueFd lock_fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock_fd.valid()) return ErrnoStatus(errno, "open " + lock_path);
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::Error(ErrorCode::kBusy, options.dir + " is in use by another shard store");
    }
    return ErrnoStatus(errno, "lock " + lock_path);
  }

  uint64_t capacity = options.capacity_bytes;
  if (capacity == 0) {
    struct statvfs fs;
    if (::statvfs(options.dir.c_str(), &fs) != 0) {
      return ErrnoStatus(errno, "statvfs " + options.dir);
    }
    capacity = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  }

  std::unique_ptr<ShardStore> store(new ShardStore(options, capacity, std::move(lock_fd)));

  // Create the layout; new directory entries are fsync'd so that the first
  // synced Put does not depend on them surviving a crash by luck. The 256
  // fan-out directories are made on first use (see Publish), which keeps
  // Open of a new or small store cheap.
  bool created = false;
  SHARDFS_RETURN_IF_ERROR(MakeDir(store->shards_dir_, &created));
  SHARDFS_RETURN_IF_ERROR(MakeDir(store->tmp_dir_, &created));
  if (created) SHARDFS_RETURN_IF_ERROR(FsyncDir(options.dir));

  // Anything in tmp/ is a write that never got published: its writer is gone
  // (we hold the lock), so it can only be garbage.
  SHARDFS_ASSIGN_OR_RETURN(std::vector<std::string> leftovers, ListDir(store->tmp_dir_));
  for (const std::string& name : leftovers) {
    std::string path = store->tmp_dir_ + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, "remove leftover temporary file " + path);
    }
  }

  SHARDFS_RETURN_IF_ERROR(store->Scan());
  return store;
}

Status ShardStore::Scan() {
  SHARDFS_ASSIGN_OR_RETURN(std::vector<std::string> fan_outs, ListDir(shards_dir_));
  std::sort(fan_outs.begin(), fan_outs.end());
  for (const std::string& fan_out : fan_outs) {
    std::optional<int> fan_out_index = ParseFanOutName(fan_out);
    if (!fan_out_index) {
      Quarantine(fan_out);
      continue;
    }
    const std::string dir = shards_dir_ + "/" + fan_out;
    SHARDFS_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
    for (const std::string& name : names) {
      const std::string relative = fan_out + "/" + name;
      Result<ShardKey> key = ShardKey::Parse(name);
      if (!key.ok() || FanOutIndex(*key) != *fan_out_index) {
        Quarantine(relative);
        continue;
      }
      UniqueFd fd = OpenForRead(dir + "/" + name);
      if (!fd.valid()) {
        if (errno == ELOOP) {  // a symlink: not something we wrote
          Quarantine(relative);
        } else if (errno != ENOENT) {
          // Not indexed, so never served; one unreadable file must not keep
          // the node from starting.
          spdlog::warn("shard store: skipping {}: {}", relative,
                       std::generic_category().message(errno));
        }
        continue;
      }
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) {
        spdlog::warn("shard store: skipping {}: {}", relative,
                     std::generic_category().message(errno));
        continue;
      }
      Result<ShardHeader> header =
          S_ISREG(st.st_mode) ? ReadHeader(fd.get(), *key) : Corrupt("not a regular file");
      // A file cut short is what a crash after an unsynced write can leave.
      if (!header.ok() || static_cast<uint64_t>(st.st_size) != header->file_bytes()) {
        Quarantine(relative);
        continue;
      }
      // Holes take no space; allocation past the size (ext4 rounds up to
      // its blocks) is not the shard's to count.
      const uint64_t disk_bytes =
          std::min<uint64_t>(header->file_bytes(), static_cast<uint64_t>(st.st_blocks) * 512);
      const uint64_t data_bytes =
          std::min(header->data_length, disk_bytes - std::min(disk_bytes, header->data_offset));
      index_[*key] = IndexEntry{header->data_length, header->checksum, disk_bytes, data_bytes};
      used_bytes_ += disk_bytes;
    }
  }
  return Status::Ok();
}

void ShardStore::Quarantine(const std::string& relative_path) {
  std::string from = shards_dir_ + "/" + relative_path;
  std::string flat_name = relative_path;
  std::replace(flat_name.begin(), flat_name.end(), '/', '_');
  std::string to = quarantine_dir_ + "/" + flat_name;
  bool created = false;
  Status made = MakeDir(quarantine_dir_, &created);
  if (!made.ok() || ::rename(from.c_str(), to.c_str()) != 0) {
    // Left in place it is still not indexed, so it is never served.
    spdlog::warn("shard store: {} is not a valid shard; could not move it to {}", from, to);
    return;
  }
  spdlog::warn("shard store: {} is not a valid shard; moved to {}", from, to);
}

std::string ShardStore::FanOutDir(const ShardKey& key) const {
  return shards_dir_ + "/" + FanOutName(FanOutIndex(key));
}

std::string ShardStore::ShardPath(const ShardKey& key) const {
  return FanOutDir(key) + "/" + key.ToString();
}

std::string ShardStore::NewTempPath(const ShardKey& key) {
  return fmt::format("{}/{}.{}.{}.tmp", tmp_dir_, key.ToString(), ::getpid(),
                     temp_counter_.fetch_add(1, std::memory_order_relaxed));
}

Status ShardStore::Reserve(const ShardKey& key, uint64_t disk_bytes, Reservation* reservation) {
  std::unique_lock lock(index_mu_);
  // The object being replaced goes away when the new one is published, so
  // its bytes count as free (a repair may rewrite a replica on a full node).
  uint64_t replaced_bytes = 0;
  if (auto it = index_.find(key); it != index_.end()) replaced_bytes = it->second.disk_bytes;
  uint64_t needed = used_bytes_ - replaced_bytes + reserved_bytes_ + disk_bytes;
  if (needed > capacity_bytes_) {
    return Status::Error(
        ErrorCode::kNoSpace,
        fmt::format("shard {} needs {} bytes; {} of {} in use or reserved", key.ToString(),
                    disk_bytes, used_bytes_ + reserved_bytes_, capacity_bytes_));
  }
  reserved_bytes_ += disk_bytes;
  reservation->bytes_ += disk_bytes;
  return Status::Ok();
}

Status ShardStore::Publish(const ShardKey& key, const std::string& temp_path,
                           const IndexEntry& entry, bool sync, Reservation* reservation,
                           bool* renamed) {
  const std::string final_path = ShardPath(key);
  *renamed = false;
  {
    std::lock_guard mutation_lock(mutation_mu_);
    int rc = ::rename(temp_path.c_str(), final_path.c_str());
    if (rc != 0 && errno == ENOENT) {
      // First shard in its fan-out directory. Made under the lock so a
      // concurrent Delete never sees the directory half there; rare enough
      // that the fsync does not matter.
      bool created = false;
      SHARDFS_RETURN_IF_ERROR(MakeDir(FanOutDir(key), &created));
      if (created && sync) SHARDFS_RETURN_IF_ERROR(FsyncDir(shards_dir_));
      rc = ::rename(temp_path.c_str(), final_path.c_str());
    }
    if (rc != 0) return ErrnoStatus(errno, "publish shard " + key.ToString());
    *renamed = true;
    std::unique_lock index_lock(index_mu_);
    auto [it, inserted] = index_.try_emplace(key, entry);
    if (!inserted) {
      used_bytes_ -= it->second.disk_bytes;
      it->second = entry;
    }
    used_bytes_ += entry.disk_bytes;
    reserved_bytes_ -= reservation->bytes_;
    reservation->bytes_ = 0;
  }
  // The rename is only durable once the directory holding the new name is.
  if (sync) return FsyncDir(FanOutDir(key));
  return Status::Ok();
}

Status ShardStore::Put(const ShardKey& key, std::span<const uint8_t> data, bool sync,
                       std::optional<uint64_t> expected_checksum) {
  if (data.size() > options_.max_shard_size) {
    return Status::Error(ErrorCode::kTooLarge,
                         fmt::format("shard {} is {} bytes; the limit is {}", key.ToString(),
                                     data.size(), options_.max_shard_size));
  }
  const uint64_t checksum = ShardChecksum(data);
  if (expected_checksum && *expected_checksum != checksum) {
    return Corrupt(fmt::format("shard {}: data checksum {:016x} is not the expected {:016x}",
                               key.ToString(), checksum, *expected_checksum));
  }
  const ShardHeader header = ShardHeader::For(key, data.size(), options_.block_size, checksum);
  // The header and checksums, then the data pages that are not all zeros.
  std::vector<Extent> extents;
  AppendExtent(&extents, {0, header.data_offset});
  for (const Extent& extent : NonZeroExtents(data, header.data_offset)) {
    AppendExtent(&extents, extent);
  }
  const uint64_t disk_bytes = TotalLength(extents);
  Reservation reservation(this);
  SHARDFS_RETURN_IF_ERROR(Reserve(key, disk_bytes, &reservation));

  TempFile temp;
  SHARDFS_RETURN_IF_ERROR(
      temp.Create(NewTempPath(key), header.file_bytes(), extents, options_.preallocate));
  std::vector<uint8_t> prefix = EncodePrefix(header, BlockChecksums(data, header.block_size));
  SHARDFS_RETURN_IF_ERROR(PwriteFull(temp.fd(), prefix.data(), prefix.size(), 0));
  for (const Extent& extent : extents) {
    if (extent.end() <= header.data_offset) continue;
    const uint64_t from = std::max(extent.offset, header.data_offset);
    SHARDFS_RETURN_IF_ERROR(PwriteFull(temp.fd(), data.data() + (from - header.data_offset),
                                       extent.end() - from, from));
  }
  SHARDFS_RETURN_IF_ERROR(temp.Finish(sync));

  bool renamed = false;
  Status published = Publish(key, temp.path(),
                             {data.size(), checksum, disk_bytes, disk_bytes - header.data_offset},
                             sync, &reservation, &renamed);
  if (renamed) temp.Disown();
  return published;
}

Status ShardStore::PutPatched(const ShardKey& key, const ShardKey& base, uint64_t new_length,
                              std::span<const ShardPatch> patches, bool sync) {
  if (new_length > options_.max_shard_size) {
    return Status::Error(ErrorCode::kTooLarge,
                         fmt::format("shard {} would be {} bytes; the limit is {}", key.ToString(),
                                     new_length, options_.max_shard_size));
  }
  for (const ShardPatch& patch : patches) {
    if (patch.offset > new_length || patch.bytes.size() > new_length - patch.offset) {
      return Status::Error(
          ErrorCode::kInvalidArgument,
          fmt::format("shard {}: patch [{}, +{}) is past the new length {}", key.ToString(),
                      patch.offset, patch.bytes.size(), new_length));
    }
  }
  UniqueFd base_fd;
  SHARDFS_RETURN_IF_ERROR(OpenShardFile(base, ShardPath(base), &base_fd));
  SHARDFS_ASSIGN_OR_RETURN(ShardHeader base_header, ReadHeader(base_fd.get(), base));

  const uint32_t block_size = options_.block_size;
  // The checksum is filled in once all the data has been produced.
  ShardHeader header = ShardHeader::For(key, new_length, block_size, 0);
  // Which pages will be zeros is known only block by block, so the data's
  // space is not claimed ahead (a full disk fails the write instead), and
  // the reservation assumes no holes.
  Reservation reservation(this);
  SHARDFS_RETURN_IF_ERROR(Reserve(key, header.file_bytes(), &reservation));
  TempFile temp;
  const Extent prefix_extent{0, header.data_offset};
  SHARDFS_RETURN_IF_ERROR(temp.Create(NewTempPath(key), header.file_bytes(),
                                      std::span(&prefix_extent, 1), options_.preallocate));
  uint64_t disk_bytes = header.data_offset;

  // Build the new shard one block at a time: base bytes (verified), zeros
  // past the base's end, then the patches.
  std::vector<uint64_t> sums(header.block_count);
  StreamingShardChecksum checksum;
  std::string block;
  for (uint64_t i = 0; i < header.block_count; ++i) {
    const uint64_t start = i * block_size;
    const uint64_t end = std::min(start + block_size, new_length);
    const uint64_t copy_end = std::min(end, base_header.data_length);
    block.clear();
    if (start < copy_end) {
      // A block a single patch overwrites entirely needs nothing from the base.
      bool overwritten = std::any_of(patches.begin(), patches.end(), [&](const ShardPatch& p) {
        return p.offset <= start && p.offset + p.bytes.size() >= copy_end;
      });
      if (!overwritten) {
        SHARDFS_RETURN_IF_ERROR(
            ReadVerified(base_fd.get(), base_header, start, copy_end - start, &block));
      }
    }
    block.resize(end - start, '\0');
    for (const ShardPatch& patch : patches) {
      uint64_t from = std::max(patch.offset, start);
      uint64_t to = std::min(patch.offset + patch.bytes.size(), end);
      if (from < to)
        std::memcpy(block.data() + (from - start), &patch.bytes[from - patch.offset], to - from);
    }
    std::span<const uint8_t> bytes = AsBytes(block);
    sums[i] = BlockChecksum(bytes, i);
    checksum.Update(bytes);
    for (const Extent& extent : NonZeroExtents(bytes, header.data_offset + start)) {
      SHARDFS_RETURN_IF_ERROR(PwriteFull(temp.fd(),
                                         &bytes[extent.offset - header.data_offset - start],
                                         extent.length, extent.offset));
      disk_bytes += extent.length;
    }
  }
  header.checksum = checksum.Digest();
  std::vector<uint8_t> prefix = EncodePrefix(header, sums);
  SHARDFS_RETURN_IF_ERROR(PwriteFull(temp.fd(), prefix.data(), prefix.size(), 0));
  SHARDFS_RETURN_IF_ERROR(temp.Finish(sync));

  bool renamed = false;
  Status published = Publish(
      key, temp.path(), {new_length, header.checksum, disk_bytes, disk_bytes - header.data_offset},
      sync, &reservation, &renamed);
  if (renamed) temp.Disown();
  return published;
}

Status ShardStore::Read(const ShardKey& key, uint64_t offset, uint64_t length, std::string* out) {
  UniqueFd fd;
  SHARDFS_RETURN_IF_ERROR(OpenShardFile(key, ShardPath(key), &fd));
  SHARDFS_ASSIGN_OR_RETURN(ShardHeader header, ReadHeader(fd.get(), key));
  if (length == 0 || offset >= header.data_length) return Status::Ok();
  return ReadVerified(fd.get(), header, offset, std::min(length, header.data_length - offset), out);
}

Result<ShardRange> ShardStore::ReadRange(const ShardKey& key, uint64_t offset, uint64_t length) {
  UniqueFd fd;
  SHARDFS_RETURN_IF_ERROR(OpenShardFile(key, ShardPath(key), &fd));
  ShardRange range;
  bool would_block = false;  // never set by a read that may block
  SHARDFS_RETURN_IF_ERROR(
      ReadRangeFrom(fd.get(), key, offset, length, Wait::kMayBlock, 0, &range, &would_block));
  return range;
}

Result<std::optional<ShardRange>> ShardStore::TryReadRangeCached(const ShardKey& key,
                                                                 uint64_t offset, uint64_t length,
                                                                 uint64_t max_block_bytes) {
  UniqueFd fd(OpenCachedForRead(ShardPath(key)));
  if (!fd.valid()) {
    // A name the dentry cache knows to be absent: the same answer a blocking
    // open() would give. Anything else (not cached, no openat2) is for the
    // blocking path.
    if (errno == ENOENT) return Status::Error(ErrorCode::kNotFound, "no shard " + key.ToString());
    return std::optional<ShardRange>();
  }
  ShardRange range;
  bool would_block = false;
  SHARDFS_RETURN_IF_ERROR(ReadRangeFrom(fd.get(), key, offset, length, Wait::kCachedOnly,
                                        max_block_bytes, &range, &would_block));
  if (would_block) return std::optional<ShardRange>();
  return std::optional<ShardRange>(std::move(range));
}

Result<ShardInfo> ShardStore::Stat(const ShardKey& key) {
  std::shared_lock lock(index_mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return Status::Error(ErrorCode::kNotFound, "no shard " + key.ToString());
  return ShardInfo{key, it->second.length, it->second.checksum, it->second.data_bytes};
}

Status ShardStore::Delete(const ShardKey& key) {
  std::lock_guard mutation_lock(mutation_mu_);
  {
    std::shared_lock index_lock(index_mu_);
    if (!index_.contains(key)) {
      return Status::Error(ErrorCode::kNotFound, "no shard " + key.ToString());
    }
  }
  // No fsync of the directory: a delete lost in a crash brings back an
  // orphan generation, which inventory reports already clean up.
  if (::unlink(ShardPath(key).c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "delete shard " + key.ToString());
  }
  std::unique_lock index_lock(index_mu_);
  auto it = index_.find(key);
  used_bytes_ -= it->second.disk_bytes;
  index_.erase(it);
  return Status::Ok();
}

Status ShardStore::Sync(const ShardKey& key) {
  {
    std::shared_lock index_lock(index_mu_);
    if (!index_.contains(key)) {
      return Status::Error(ErrorCode::kNotFound, "no shard " + key.ToString());
    }
  }
  const std::string path = ShardPath(key);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::Error(ErrorCode::kNotFound, "no shard " + key.ToString());
    return ErrnoStatus(errno, "open " + path);
  }
  if (::fdatasync(fd.get()) != 0) return ErrnoStatus(errno, "fdatasync " + path);
  // The rename that published it must be durable too.
  SHARDFS_RETURN_IF_ERROR(FsyncDir(FanOutDir(key)));
  return FsyncDir(shards_dir_);
}

Result<std::vector<ShardInfo>> ShardStore::List(std::optional<ShardKey> after, size_t max) {
  std::vector<ShardInfo> page;
  std::shared_lock lock(index_mu_);
  auto it = after ? index_.upper_bound(*after) : index_.begin();
  for (; it != index_.end() && page.size() < max; ++it) {
    page.push_back(
        ShardInfo{it->first, it->second.length, it->second.checksum, it->second.data_bytes});
  }
  return page;
}

Status ShardStore::Verify(const ShardKey& key) {
  UniqueFd fd;
  SHARDFS_RETURN_IF_ERROR(OpenShardFile(key, ShardPath(key), &fd));
  SHARDFS_ASSIGN_OR_RETURN(ShardHeader header, ReadHeader(fd.get(), key));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "stat shard " + key.ToString());
  if (static_cast<uint64_t>(st.st_size) != header.file_bytes()) {
    return Corrupt(fmt::format("shard {}: file is {} bytes, its header says {}", key.ToString(),
                               st.st_size, header.file_bytes()));
  }
  const uint64_t blocks_per_chunk = std::max<uint64_t>(1, kVerifyChunkBytes / header.block_size);
  StreamingShardChecksum checksum;
  std::string chunk;
  for (uint64_t first = 0; first < header.block_count; first += blocks_per_chunk) {
    const uint64_t start = first * header.block_size;
    const uint64_t length =
        std::min(blocks_per_chunk * header.block_size, header.data_length - start);
    chunk.clear();
    SHARDFS_RETURN_IF_ERROR(ReadVerified(fd.get(), header, start, length, &chunk));
    checksum.Update(AsBytes(chunk));
  }
  if (checksum.Digest() != header.checksum) {
    return Corrupt(fmt::format("shard {}: whole-shard checksum mismatch", key.ToString()));
  }
  return Status::Ok();
}

Result<std::vector<Extent>> ShardStore::DataExtents(const ShardKey& key) {
  UniqueFd fd;
  SHARDFS_RETURN_IF_ERROR(OpenShardFile(key, ShardPath(key), &fd));
  SHARDFS_ASSIGN_OR_RETURN(ShardHeader header, ReadHeader(fd.get(), key));
  // The file system's map of the data, in the shard's own offsets. One
  // that cannot tell says "all data", which is safe.
  const auto file_end = static_cast<off_t>(header.file_bytes());
  std::vector<Extent> extents;
  for (off_t pos = static_cast<off_t>(header.data_offset); pos < file_end;) {
    const off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0) return ErrnoStatus(errno, "find data in shard " + key.ToString());
    if (data >= file_end) break;
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) return ErrnoStatus(errno, "find a hole in shard " + key.ToString());
    hole = std::min(hole, file_end);
    AppendExtent(&extents, {static_cast<uint64_t>(data) - header.data_offset,
                            static_cast<uint64_t>(hole - data)});
    pos = hole;
  }
  // Every block a hole touches must still match its checksum: a hole is
  // only reported where the writer's bytes were zeros, never where a disk
  // lost them.
  const uint64_t block_size = header.block_size;
  uint64_t verified_to = 0;  // blocks before this offset are checked
  auto verify = [&](uint64_t from, uint64_t to) -> Status {
    from = std::max(from / block_size * block_size, verified_to);
    to = std::min((to + block_size - 1) / block_size * block_size, header.data_length);
    std::string chunk;
    for (uint64_t at = from; at < to; at += kVerifyChunkBytes) {
      chunk.clear();
      SHARDFS_RETURN_IF_ERROR(ReadVerified(fd.get(), header, at,
                                           std::min<uint64_t>(kVerifyChunkBytes, to - at), &chunk));
    }
    verified_to = std::max(verified_to, to);
    return Status::Ok();
  };
  uint64_t hole_start = 0;
  for (const Extent& extent : extents) {
    if (extent.offset > hole_start) SHARDFS_RETURN_IF_ERROR(verify(hole_start, extent.offset));
    hole_start = extent.end();
  }
  if (hole_start < header.data_length) {
    SHARDFS_RETURN_IF_ERROR(verify(hole_start, header.data_length));
  }
  return extents;
}

StoreUsage ShardStore::Usage() const {
  std::shared_lock lock(index_mu_);
  return StoreUsage{capacity_bytes_, used_bytes_, index_.size()};
}

}  // namespace shardfs
