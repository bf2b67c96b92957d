#include "src/cli/cluster_client.h"

#include <cstdio>
#include <sstream>

#include "protocol/message_type.h"
#include "src/cluster_key.h"
#include "src/socket_security.h"

namespace shardfs {
namespace {

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (!part.empty() && part != ".") parts.push_back(part);
  }
  return parts;
}

}  // namespace

int KeygenCommand(const std::string& path) {
  auto key = ClusterKey::Generate();
  Status st = key.ok() ? WriteClusterKey(path, *key) : key.status();
  if (!st.ok()) {
    std::fprintf(stderr, "shardfs: keygen: %s\n", st.message().c_str());
    return 1;
  }
  std::printf(
      "wrote a new cluster key to %s (mode 0600, fingerprint %s)\n"
      "Give it to every registry, node, mount and admin of one cluster (--key FILE, or\n"
      "/etc/shardfs/cluster.key); whoever holds it can join and read everything.\n",
      path.c_str(), key->Fingerprint().c_str());
  return 0;
}

Status UseClusterKey(const std::string& key_flag, bool insecure) {
  SHARDFS_ASSIGN_OR_RETURN(KeyChoice choice,
                           ChooseClusterKey(key_flag, insecure, kDefaultKeyPath, false));
  if (!choice.key) {
    std::fprintf(stderr, "shardfs: WARNING: %s\n", std::string(kInsecureWarning).c_str());
  }
  SetProcessClusterKey(choice.key);
  return Status::Ok();
}

ClusterClient::ClusterClient(const std::string& registry_endpoint)
    : registry_(context_, registry_endpoint),
      ns_(context_, registry_endpoint),
      nodes_(context_),
      latency_(std::chrono::milliseconds(20), std::chrono::milliseconds(2000)) {
  data_path_.ns = &ns_;
  data_path_.nodes = &nodes_;
  data_path_.directory = &directory_;
  data_path_.latency = &latency_;
}

Result<ClusterMap> ClusterClient::Map() {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, registry_.Call(MessageType::kClusterMap, FieldWriter(),
                                                         std::chrono::milliseconds(5000)));
  return ClusterMap::Decode(r.header.fields);
}

Result<FsckReply> ClusterClient::Fsck(uint64_t max_files) {
  // A scan of every shard table: allow it time on a large namespace.
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r,
                           registry_.Call(MessageType::kFsck, FsckRequest{max_files}.Encode(),
                                          std::chrono::milliseconds(60000)));
  return FsckReply::Decode(r.header.fields);
}

Result<RebalanceReply> ClusterClient::Rebalance() {
  SHARDFS_ASSIGN_OR_RETURN(RpcResponse r, registry_.Call(MessageType::kRebalance, FieldWriter(),
                                                         std::chrono::milliseconds(30000)));
  return RebalanceReply::Decode(r.header.fields);
}

Status ClusterClient::SetDraining(const std::string& node_id, bool draining) {
  return registry_
      .Call(MessageType::kSetDraining, SetDrainingRequest{node_id, draining}.Encode(),
            std::chrono::milliseconds(5000))
      .status();
}

Result<InodeAttrs> ClusterClient::Resolve(const std::string& path) {
  SHARDFS_ASSIGN_OR_RETURN(InodeAttrs attrs, ns_.GetAttr(kRootIno));
  for (const auto& part : SplitPath(path)) {
    if (part == "..") return Status::Error(ErrorCode::kInvalidArgument, "'..' in a cluster path");
    SHARDFS_ASSIGN_OR_RETURN(attrs, ns_.Lookup(attrs.ino, part));
  }
  return attrs;
}

Result<std::pair<InodeAttrs, std::string>> ClusterClient::ResolveParent(const std::string& path) {
  auto parts = SplitPath(path);
  if (parts.empty()) return Status::Error(ErrorCode::kInvalidArgument, "path names the root");
  std::string last = parts.back();
  parts.pop_back();
  std::string parent;
  for (const auto& p : parts) parent += "/" + p;
  SHARDFS_ASSIGN_OR_RETURN(InodeAttrs dir, Resolve(parent));
  return std::make_pair(dir, last);
}

}  // namespace shardfs
