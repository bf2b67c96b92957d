#include "src/node_id.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/unique_fd.h"

namespace shardfs {
namespace {

Status ErrnoStatus(const std::string& what) {
  int e = errno;
  return Status::Error(ErrnoToErrorCode(e), what + ": " + std::strerror(e));
}

}  // namespace

bool IsValidNodeId(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<std::string> LoadOrCreateNodeId(const std::string& data_dir) {
  const std::string path = data_dir + "/node.id";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.valid()) {
    char buf[64];
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) return ErrnoStatus("read " + path);
    std::string id(buf, static_cast<size_t>(n));
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    if (!IsValidNodeId(id)) {
      return Status::Error(ErrorCode::kCorrupt, path + " does not hold a node id");
    }
    return id;
  }
  if (errno != ENOENT) return ErrnoStatus("open " + path);

  unsigned char random[16];
  if (getrandom(random, sizeof(random), 0) != sizeof(random)) return ErrnoStatus("getrandom");
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : random) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 15]);
  }
  // Written to a temporary name, synced, then renamed: a crash leaves either
  // no id or the whole id, never a torn one.
  const std::string tmp = path + ".tmp";
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out.valid()) return ErrnoStatus("create " + tmp);
  std::string line = id + "\n";
  if (::write(out.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::fsync(out.get()) != 0) {
    ::unlink(tmp.c_str());
    return ErrnoStatus("write " + tmp);
  }
  out.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus("rename " + tmp);
  UniqueFd dir(::open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) ::fsync(dir.get());
  return id;
}

}  // namespace shardfs
