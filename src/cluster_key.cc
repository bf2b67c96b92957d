#include "src/cluster_key.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zmq.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "src/unique_fd.h"

namespace shardfs {
namespace {

constexpr size_t kZ85KeyLength = 40;
// A key file is two comment lines and a key; anything this big is not one.
constexpr size_t kMaxKeyFileBytes = 4096;
constexpr std::string_view kSecretLabel = "secret-key:";

Status ErrnoStatus(const std::string& what) {
  return Status::Error(ErrnoToErrorCode(errno), what + ": " + std::strerror(errno));
}

Status CheckCurveAvailable() {
  if (zmq_has("curve") == 0) {
    return Status::Error(ErrorCode::kNotSupported,
                         "this libzmq was built without CURVE (libsodium); cluster keys need it");
  }
  return Status::Ok();
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

Result<ClusterKey> ClusterKey::Generate() {
  SHARDFS_RETURN_IF_ERROR(CheckCurveAvailable());
  char pub[kZ85KeyLength + 1];
  char sec[kZ85KeyLength + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status::Error(ErrorCode::kInternal,
                         std::string("cannot make a CURVE keypair: ") + zmq_strerror(zmq_errno()));
  }
  return ClusterKey{std::string(pub, kZ85KeyLength), std::string(sec, kZ85KeyLength)};
}

Result<ClusterKey> ClusterKey::FromSecret(std::string_view secret_z85) {
  SHARDFS_RETURN_IF_ERROR(CheckCurveAvailable());
  if (secret_z85.size() != kZ85KeyLength) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         fmt::format("a cluster key is {} Z85 characters, not {}", kZ85KeyLength,
                                     secret_z85.size()));
  }
  std::string secret(secret_z85);
  // zmq_curve_public decodes the Z85 text and fails on characters outside
  // the Z85 alphabet, which is the whole format check.
  char pub[kZ85KeyLength + 1];
  if (zmq_curve_public(pub, secret.c_str()) != 0) {
    return Status::Error(ErrorCode::kInvalidArgument, "the cluster key is not valid Z85 text");
  }
  return ClusterKey{std::string(pub, kZ85KeyLength), std::move(secret)};
}

std::string ClusterKey::Fingerprint() const {
  return fmt::format("{:016x}", XXH3_64bits(public_z85.data(), public_z85.size()));
}

Result<ClusterKey> LoadClusterKey(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("cannot open the cluster key " + path);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus("cannot stat the cluster key " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "the cluster key " + path + " is not a regular file");
  }
  // Refused rather than warned about: whoever can read it owns the cluster,
  // and a warning in a daemon's log is easily missed.
  if ((st.st_mode & 077) != 0) {
    return Status::Error(ErrorCode::kPermissionDenied,
                         fmt::format("the cluster key {} may be read or changed by group or others "
                                     "(mode {:04o}); run: chmod 600 {}",
                                     path, st.st_mode & 07777, path));
  }
  if (static_cast<size_t>(st.st_size) > kMaxKeyFileBytes) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "the cluster key " + path + " is too large to be a key file");
  }
  std::string text(kMaxKeyFileBytes, '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("cannot read the cluster key " + path);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  std::istringstream lines(text);
  std::string line;
  std::string secret;
  while (std::getline(lines, line)) {
    line = Trim(line);
    if (line.empty()) continue;
    // Checked before comments, which would otherwise need to exclude '#'-led
    // Z85 text.
    if (line.rfind(kSecretLabel, 0) == 0) {
      if (!secret.empty()) {
        return Status::Error(ErrorCode::kInvalidArgument,
                             "the cluster key " + path + " holds more than one key");
      }
      secret = Trim(line.substr(kSecretLabel.size()));
      continue;
    }
    if (line[0] == '#') continue;
    return Status::Error(ErrorCode::kInvalidArgument,
                         "the cluster key " + path + " has a line that is neither a comment nor '" +
                             std::string(kSecretLabel) + " KEY'");
  }
  if (secret.empty()) {
    return Status::Error(ErrorCode::kInvalidArgument, "the cluster key " + path + " holds no '" +
                                                          std::string(kSecretLabel) + " KEY' line");
  }
  auto key = ClusterKey::FromSecret(secret);
  if (!key.ok()) {
    return Status::Error(key.status().code(), path + ": " + key.status().message());
  }
  return key;
}

Status WriteClusterKey(const std::string& path, const ClusterKey& key) {
  // O_EXCL: a key is never replaced by accident; replacing one locks every
  // member out until it gets the new file.
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    if (errno == EEXIST) {
      return Status::Error(ErrorCode::kExists,
                           path +
                               " already exists; a cluster key is never overwritten (remove "
                               "it first if you really mean to replace the cluster's key)");
    }
    return ErrnoStatus("cannot create " + path);
  }
  std::string text = fmt::format(
      "# shardfs cluster key (ZeroMQ CURVE secret key, Z85), fingerprint {}.\n"
      "# Whoever holds this file can join the cluster and read every file: keep it\n"
      "# mode 0600 and copy it only to the cluster's nodes, mounts and admins.\n"
      "{} {}\n",
      key.Fingerprint(), kSecretLabel, key.secret_z85);
  Status st = Status::Ok();
  if (fchmod(fd.get(), 0600) != 0) st = ErrnoStatus("cannot chmod " + path);
  size_t done = 0;
  while (st.ok() && done < text.size()) {
    ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = ErrnoStatus("cannot write " + path);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (st.ok() && fsync(fd.get()) != 0) st = ErrnoStatus("cannot sync " + path);
  if (!st.ok()) {
    fd = UniqueFd();
    unlink(path.c_str());
    return st;
  }
  // The directory entry too: a registry that crashed right after creating
  // its key must not come back without it (its members already have it).
  std::string dir = std::filesystem::path(path).parent_path().string();
  UniqueFd dfd(open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) (void)fsync(dfd.get());
  return Status::Ok();
}

Result<KeyChoice> ChooseClusterKey(std::string_view flag_path, bool insecure,
                                   std::string_view default_path, bool create_default) {
  if (insecure) {
    if (!flag_path.empty()) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "--key and --insecure contradict each other; give one of them");
    }
    return KeyChoice{};
  }
  KeyChoice choice;
  bool is_default = false;
  if (!flag_path.empty()) {
    choice.path = std::string(flag_path);
  } else if (const char* env = std::getenv("SHARDFS_KEY"); env != nullptr && *env != '\0') {
    choice.path = env;
  } else {
    choice.path = std::string(default_path);
    is_default = true;
  }
  std::error_code ec;
  if (is_default && !std::filesystem::exists(choice.path, ec)) {
    if (!create_default) {
      return Status::Error(
          ErrorCode::kNotFound,
          "no cluster key: give --key FILE (a copy of the registry's META/cluster.key), set "
          "SHARDFS_KEY, or install it as " +
              choice.path + "; --insecure runs without one (unencrypted, unauthenticated)");
    }
    SHARDFS_ASSIGN_OR_RETURN(ClusterKey fresh, ClusterKey::Generate());
    SHARDFS_RETURN_IF_ERROR(WriteClusterKey(choice.path, fresh));
    choice.created = true;
  }
  SHARDFS_ASSIGN_OR_RETURN(ClusterKey key, LoadClusterKey(choice.path));
  choice.key = std::move(key);
  return choice;
}

}  // namespace shardfs
