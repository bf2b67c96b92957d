// TestCluster and TestMount: a real shardfs cluster for one test.
//
// TestCluster starts a registry and N node servers as child processes on
// free loopback ports, each with its own directory under a TempDir, and
// TestMount mounts it with the real shardfs-mount. Both stop what they
// started in their destructors (a mount is unmounted with fusermount3 -u, or
// lazily if it is busy), so a failing test leaves nothing behind. The
// registry's beacon goes to loopback on a port of its own, so tests never
// hear each other's clusters. The cluster runs with a fresh cluster key in
// its directory (CURVE on every connection, as in production), which the
// CLI and mounts made here get too; Options::insecure runs it without one.
#pragma once

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/daemon_process.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {

// Runs a shell command; returns its exit code and (optionally) its output.
inline int Sh(const std::string& command, std::string* output = nullptr) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  int status = pclose(pipe);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline bool IsMounted(const std::string& path) {
  std::ifstream mounts("/proc/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string device, where;
    fields >> device >> where;
    if (where == path) return true;
  }
  return false;
}

class TestCluster {
 public:
  struct Options {
    int nodes = 3;
    int replicas = 3;
    std::string shard_size = "4M";
    double down_after = 2.0;
    double gc_grace = 30.0;
    std::vector<std::string> registry_args = {};  // appended to the registry's flags
    std::vector<std::string> node_args = {};      // appended to every node's flags
    bool insecure = false;                        // no cluster key anywhere (--insecure)
  };

  explicit TestCluster(Options options)
      : options_(options),
        dir_("shardfs-cluster"),
        // Only the file: the test process's own key is the test's business.
        key_(dir_.Sub("cluster.key"), TestKey::Scope::kFileOnly) {
    port_ = FreeTcpPortPair();
    beacon_port_ = FreeUdpPort();
    registry_endpoint_ = "tcp://127.0.0.1:" + std::to_string(port_);
  }
  TestCluster() : TestCluster(Options()) {}

  // Starts the registry and every node, and waits until all nodes joined.
  Status Start() {
    SHARDFS_RETURN_IF_ERROR(StartRegistry());
    for (int i = 0; i < options_.nodes; ++i) {
      nodes_.emplace_back();
      node_ports_.push_back(FreeTcpPort());
      SHARDFS_RETURN_IF_ERROR(StartNode(i));
    }
    if (!WaitUntil([&] { return NodesUp() == options_.nodes; }, std::chrono::seconds(20))) {
      return Status::Error(ErrorCode::kTimeout, "nodes did not join the registry");
    }
    return Status::Ok();
  }

  Status StartRegistry() {
    DaemonProcess::Options o;
    o.argv = {BuildPath("nodeserver/shardfs-registry"),
              "--meta",
              dir_.path() + "/meta",
              "--listen",
              registry_endpoint_,
              "--beacon-port",
              std::to_string(beacon_port_),
              "--replicas",
              std::to_string(options_.replicas),
              "--shard-size",
              options_.shard_size,
              "--down-after",
              std::to_string(options_.down_after),
              "--gc-grace",
              std::to_string(options_.gc_grace)};
    AddKeyFlags(o.argv);
    o.argv.insert(o.argv.end(), options_.registry_args.begin(), options_.registry_args.end());
    o.log_path = dir_.path() + "/registry.log";
    SHARDFS_ASSIGN_OR_RETURN(registry_, DaemonProcess::Start(o));
    return Status::Ok();
  }

  Status StartNode(int i) {
    DaemonProcess::Options o;
    o.argv = {BuildPath("nodeserver/shardfs-node"),
              "--data",
              NodeDir(i),
              "--listen",
              "tcp://127.0.0.1:" + std::to_string(node_ports_[i]),
              "--registry",
              registry_endpoint_};
    AddKeyFlags(o.argv);
    o.argv.insert(o.argv.end(), options_.node_args.begin(), options_.node_args.end());
    o.log_path = dir_.path() + "/node" + std::to_string(i) + ".log";
    SHARDFS_ASSIGN_OR_RETURN(nodes_[i], DaemonProcess::Start(o));
    return Status::Ok();
  }

  // Starts one more node (a machine added to the cluster); returns its index.
  Result<int> AddNode() {
    nodes_.emplace_back();
    node_ports_.push_back(FreeTcpPort());
    const int i = static_cast<int>(nodes_.size()) - 1;
    SHARDFS_RETURN_IF_ERROR(StartNode(i));
    return i;
  }

  // Nodes the registry reports up, read through the CLI's JSON output.
  int NodesUp() {
    std::string out;
    if (Sh(Cli("--json status"), &out) != 0) return -1;
    int up = 0;
    for (size_t pos = 0; (pos = out.find("\"state\": \"up\"", pos)) != std::string::npos; ++pos) {
      ++up;
    }
    return up;
  }

  // The `shardfs` CLI command line with this cluster's registry and key.
  std::string Cli(const std::string& args) const {
    return BuildPath("src/shardfs") + " --registry " + registry_endpoint_ + " " + KeyFlags() + " " +
           args;
  }

  // The cluster's key flags: "--key FILE", or "--insecure".
  std::string KeyFlags() const {
    return options_.insecure ? std::string("--insecure") : "--key " + key_.path();
  }
  void AddKeyFlags(std::vector<std::string>& argv) const {
    if (options_.insecure) {
      argv.push_back("--insecure");
    } else {
      argv.push_back("--key");
      argv.push_back(key_.path());
    }
  }
  // The key file (also written for an insecure cluster, unused there).
  const std::string& key_path() const { return key_.path(); }
  bool insecure() const { return options_.insecure; }

  DaemonProcess& registry() { return registry_; }
  DaemonProcess& node(int i) { return nodes_[i]; }
  std::string NodeDir(int i) const { return dir_.path() + "/node" + std::to_string(i); }
  const std::string& registry_endpoint() const { return registry_endpoint_; }
  const std::string& dir() const { return dir_.path(); }
  std::string Logs() {
    std::string all = "--- registry\n" + registry_.ReadLog();
    for (size_t i = 0; i < nodes_.size(); ++i) {
      all += "--- node " + std::to_string(i) + "\n" + nodes_[i].ReadLog();
    }
    return all;
  }

 private:
  Options options_;
  TempDir dir_;
  TestKey key_;
  uint16_t port_ = 0;
  uint16_t beacon_port_ = 0;
  std::string registry_endpoint_;
  DaemonProcess registry_;
  std::vector<DaemonProcess> nodes_;
  std::vector<uint16_t> node_ports_;
};

// shardfs-mount in the foreground as a child process; unmounted on
// destruction.
class TestMount {
 public:
  TestMount(TestCluster& cluster, std::string mountpoint, std::vector<std::string> extra = {})
      : cluster_(cluster), mountpoint_(std::move(mountpoint)), extra_(std::move(extra)) {}
  ~TestMount() { Unmount(); }

  Status Mount() {
    ::mkdir(mountpoint_.c_str(), 0755);
    DaemonProcess::Options o;
    o.argv = {BuildPath("fuse/shardfs-mount"), "-f", "--registry", cluster_.registry_endpoint(),
              mountpoint_};
    if (with_cluster_key_) cluster_.AddKeyFlags(o.argv);
    o.argv.insert(o.argv.end(), extra_.begin(), extra_.end());
    o.log_path = mountpoint_ + ".log";
    SHARDFS_ASSIGN_OR_RETURN(process_, DaemonProcess::Start(o));
    if (!WaitUntil([&] { return IsMounted(mountpoint_); }, std::chrono::seconds(10))) {
      return Status::Error(ErrorCode::kTimeout, "mount did not appear: " + process_.ReadLog());
    }
    return Status::Ok();
  }

  void Unmount() {
    if (IsMounted(mountpoint_)) {
      if (Sh("fusermount3 -u " + mountpoint_) != 0) Sh("fusermount3 -uz " + mountpoint_);
    }
    process_.Stop();
  }

  const std::string& path() const { return mountpoint_; }
  std::string Log() const { return process_.ReadLog(); }
  DaemonProcess& process() { return process_; }
  // Leaves out the cluster's key flags, so `extra` can give other ones.
  void WithoutClusterKey() { with_cluster_key_ = false; }

 private:
  TestCluster& cluster_;
  std::string mountpoint_;
  std::vector<std::string> extra_;
  bool with_cluster_key_ = true;
  DaemonProcess process_;
};

}  // namespace shardfs
