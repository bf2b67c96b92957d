// MountOptions: what `shardfs-mount` was asked to do, from flags and -o.
//
// Parsed by hand rather than by CLI11 because mount(8) and fstab pass
// options as `-o a,b=c` after the mount point, and those must work the same
// way as our own long flags.
#pragma once

#include <string>
#include <vector>

#include "src/status.h"

namespace shardfs {

struct MountOptions {
  std::string mountpoint;
  std::string registry;  // empty: $SHARDFS_REGISTRY, else the beacon
  std::string cluster = "shardfs";
  std::string key;        // cluster key file; empty: $SHARDFS_KEY, else /etc/shardfs/cluster.key
  bool insecure = false;  // no key: plain connections
  int beacon_port = 7400;
  bool foreground = false;
  bool read_only = false;
  bool allow_other = false;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  unsigned replicas = 0;  // replication goal for new files; 0: the cluster's
  // Shards stored without fsync are made durable this long after (seconds).
  double sync_after = 30.0;
  std::string log_level = "info";
  std::string log_file;  // empty: stderr in the foreground, syslog in the background
  bool debug_fuse = false;
  bool show_help = false;
};

// argv as given to shardfs-mount (or mount.shardfs, whose first operand is
// the registry endpoint or "shardfs").
Result<MountOptions> ParseMountOptions(int argc, char** argv);
std::string MountUsage();

}  // namespace shardfs
