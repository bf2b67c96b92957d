// ClusterKey: the one secret that makes a process a member of a cluster.
//
// Every connection of a cluster (requests, the cluster-map publication,
// node-to-node copies) runs ZeroMQ CURVE with one keypair that every member
// holds: servers prove they hold its secret half to clients, and clients
// prove it to servers (see src/socket_security.h). So the key file holds only
// the Z85 secret key; the public key is derived from it, and a file cannot
// hold two halves that do not belong together.
//
// The file is text: comment lines starting with '#' and one line
// "secret-key: KEY", KEY being the 40-character Z85 secret (labelled, as
// '#' is itself a Z85 digit, and so the format can grow). It is created with mode 0600 and refused
// when group or others may read or write it: anyone who can read it can join
// the cluster and read every file.
//
// Also here: how a program picks its key from --key, --insecure,
// $SHARDFS_KEY and its default file, the same way in every program.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "src/status.h"

namespace shardfs {

// Where programs other than the registry look when neither --key nor
// $SHARDFS_KEY names a file.
inline constexpr std::string_view kDefaultKeyPath = "/etc/shardfs/cluster.key";
// The registry's key, in its --meta directory unless --key names another.
inline constexpr std::string_view kRegistryKeyFile = "cluster.key";

struct ClusterKey {
  std::string public_z85;  // 40 characters
  std::string secret_z85;  // 40 characters

  // A fresh keypair from libsodium's random source (through libzmq).
  static Result<ClusterKey> Generate();
  // The pair whose secret half is `secret_z85`; fails on anything but 40
  // Z85 characters.
  static Result<ClusterKey> FromSecret(std::string_view secret_z85);

  // 16 hex digits naming the key in logs and `shardfs keygen`, so operators
  // can compare keys without showing them. A hash of the public key.
  std::string Fingerprint() const;
};

// Reads and checks a key file (format and permissions).
Result<ClusterKey> LoadClusterKey(const std::string& path);
// Writes `key` to a new file with mode 0600; never replaces an existing file
// (kExists). The file is complete on disk (fsync) once this returns.
Status WriteClusterKey(const std::string& path, const ClusterKey& key);

// What a program runs with.
struct KeyChoice {
  std::optional<ClusterKey> key;  // empty: --insecure
  std::string path;               // the file it came from
  bool created = false;           // made just now (registry's first start)
};

// The rules every program follows:
// - `insecure` (--insecure): no key; an explicit `flag_path` as well is an
//   error, since the two contradict each other. ($SHARDFS_KEY is ignored:
//   an environment set for a whole machine must not stop one --insecure run.)
// - else the file `flag_path` (--key), else $SHARDFS_KEY, else `default_path`.
// - the default file missing: created when `create_default` (the registry,
//   whose default lives in its --meta directory), an error otherwise that
//   says how to get one. A file named explicitly is never created.
Result<KeyChoice> ChooseClusterKey(std::string_view flag_path, bool insecure,
                                   std::string_view default_path, bool create_default);

// The warning programs log at start when they run with --insecure.
inline constexpr std::string_view kInsecureWarning =
    "RUNNING WITHOUT A CLUSTER KEY (--insecure): connections are neither encrypted nor "
    "authenticated; anyone who can reach this machine's ports can read and change every file";

}  // namespace shardfs
