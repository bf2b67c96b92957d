// ClusterClient: everything the `shardfs` CLI needs to talk to a cluster.
//
// Bundles the registry connection (namespace and membership) and the data
// path, and resolves slash-separated paths inside the cluster to inodes, so
// each CLI command is a few lines on top of it.
#pragma once

#include <memory>
#include <string>
#include <zmq.hpp>

#include "protocol/health_messages.h"
#include "src/cluster_map.h"
#include "src/latency_tracker.h"
#include "src/namespace_client.h"
#include "src/node_client.h"
#include "src/node_directory.h"
#include "src/open_file.h"
#include "src/rpc_channel.h"

namespace shardfs {

// `shardfs keygen FILE`: writes a fresh cluster key (mode 0600, never over
// an existing file) and says what to do with it. Returns the exit code.
int KeygenCommand(const std::string& path);

// Picks the CLI's cluster key from --key / --insecure / $SHARDFS_KEY /
// /etc/shardfs/cluster.key and makes it the process's; call before the
// first ClusterClient. With --insecure it warns on stderr.
Status UseClusterKey(const std::string& key_flag, bool insecure);

// Used by the CLI's main thread only.
class ClusterClient {
 public:
  explicit ClusterClient(const std::string& registry_endpoint);

  NamespaceClient& ns() { return ns_; }
  DataPath& data_path() { return data_path_; }
  Result<ClusterMap> Map();
  // The registry's health report (see protocol/health_messages.h).
  Result<FsckReply> Fsck(uint64_t max_files);
  Status SetDraining(const std::string& node_id, bool draining);
  Result<RebalanceReply> Rebalance();

  // "/a/b/c" (or "a/b/c") to the attributes of what it names.
  Result<InodeAttrs> Resolve(const std::string& path);
  // The parent directory's attributes and the last component.
  Result<std::pair<InodeAttrs, std::string>> ResolveParent(const std::string& path);

 private:
  zmq::context_t context_;
  RpcChannel registry_;
  NamespaceClient ns_;
  NodeClient nodes_;
  NodeDirectory directory_;
  LatencyTracker latency_;
  DataPath data_path_;
};

}  // namespace shardfs
