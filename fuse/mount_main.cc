// shardfs-mount: mounts the cluster as an ordinary directory.
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

#include "fuse/mount_options.h"
#include "fuse/shardfs_fs.h"
#include "protocol/registry_messages.h"
#include "src/cluster_key.h"
#include "src/rpc_channel.h"
#include "src/shard_buffers.h"
#include "src/socket_security.h"

namespace {

using namespace shardfs;

// Owns the FUSE session: unmounts and destroys it on every path out.
class FuseSession {
 public:
  FuseSession(const MountOptions& options, ShardFs* fs) {
    args_.push_back("shardfs-mount");
    std::string opts = "fsname=shardfs,subtype=shardfs,default_permissions";
    if (options.read_only) opts += ",ro";
    if (options.allow_other) opts += ",allow_other";
    args_.push_back("-o");
    args_.push_back(opts);
    if (options.debug_fuse) args_.push_back("-d");
    std::vector<char*> argv;
    for (auto& a : args_) argv.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    session_ = fuse_session_new(&args, ShardFs::Operations(), sizeof(fuse_lowlevel_ops), fs);
    fuse_opt_free_args(&args);
  }
  ~FuseSession() {
    if (session_ == nullptr) return;
    if (signals_) fuse_remove_signal_handlers(session_);
    if (mounted_) fuse_session_unmount(session_);
    fuse_session_destroy(session_);
  }
  bool ok() const { return session_ != nullptr; }
  fuse_session* get() const { return session_; }
  bool Mount(const std::string& mountpoint) {
    mounted_ = fuse_session_mount(session_, mountpoint.c_str()) == 0;
    return mounted_;
  }
  bool InstallSignalHandlers() {
    signals_ = fuse_set_signal_handlers(session_) == 0;
    return signals_;
  }
  int Loop() {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, 16);
    fuse_loop_cfg_set_idle_threads(config, 8);
    int rc = fuse_session_loop_mt(session_, config);
    fuse_loop_cfg_destroy(config);
    return rc;
  }

 private:
  std::vector<std::string> args_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  bool signals_ = false;
};

// In the background stderr is gone: log to a file when asked, else syslog.
void ConfigureLogging(const MountOptions& options) {
  try {
    if (!options.log_file.empty()) {
      spdlog::set_default_logger(spdlog::basic_logger_mt("shardfs-mount", options.log_file));
    } else if (!options.foreground) {
      spdlog::set_default_logger(
          spdlog::syslog_logger_mt("shardfs-mount", "shardfs-mount", LOG_PID, LOG_DAEMON));
    }
  } catch (const spdlog::spdlog_ex&) {
    // Keep the default logger; a mount is more useful than a log.
  }
  spdlog::set_level(spdlog::level::from_str(options.log_level));
  spdlog::flush_on(spdlog::level::info);
}

// A mount whose key the cluster refuses would come up and then fail every
// operation; refuse to mount instead, while the error still reaches the
// terminal. Anything else (a registry that is down) is left to the mount,
// which waits for the registry as before. The context ends here, before the
// fork into the background, which a ZeroMQ context would not survive.
Status CheckRegistryTakesKey(const std::string& registry) {
  zmq::context_t context;
  RpcChannel channel(context, registry);
  auto reply = channel.Call(MessageType::kClusterMap, GetClusterMapRequest{}.Encode(),
                            std::chrono::milliseconds(2000));
  if (!reply.ok() && IsKeyRefused(reply.status())) return reply.status();
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  KeepShardBuffersInHeap();
  auto options = ParseMountOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "shardfs-mount: %s\n\n%s", options.status().message().c_str(),
                 MountUsage().c_str());
    return 2;
  }
  if (options->show_help) {
    std::fputs(MountUsage().c_str(), stdout);
    return 0;
  }
  if (options->registry.empty()) {
    std::fprintf(stderr,
                 "shardfs-mount: no registry: give --registry tcp://HOST:7400 or set "
                 "SHARDFS_REGISTRY\n");
    return 2;
  }

  auto key = ChooseClusterKey(options->key, options->insecure, kDefaultKeyPath, false);
  if (!key.ok()) {
    std::fprintf(stderr, "shardfs-mount: %s\n", key.status().message().c_str());
    return 2;
  }
  if (!key->key) std::fprintf(stderr, "shardfs-mount: WARNING: %s\n", kInsecureWarning.data());
  SetProcessClusterKey(key->key);
  if (Status st = CheckRegistryTakesKey(options->registry); !st.ok()) {
    std::fprintf(stderr, "shardfs-mount: not mounted: %s\n", st.message().c_str());
    return 1;
  }

  // The mount is made before the fork into the background, so the parent
  // exits only once it is ready; the clients (ZeroMQ) are made after it.
  ShardFs fs(*options, options->registry);
  FuseSession session(*options, &fs);
  if (!session.ok() || !session.Mount(options->mountpoint)) return 1;
  fs.set_session(session.get());
  if (fuse_daemonize(options->foreground ? 1 : 0) != 0) return 1;
  ConfigureLogging(*options);
  if (key->key) {
    spdlog::info("cluster key {} (fingerprint {})", key->path, key->key->Fingerprint());
  } else {
    spdlog::warn("{}", kInsecureWarning);
  }
  fs.Start();
  if (!session.InstallSignalHandlers()) return 1;
  spdlog::info("mounted the cluster at {} (registry {})", options->mountpoint, options->registry);

  int rc = session.Loop();
  // libfuse's handlers end the loop with the signal's number: SIGTERM,
  // SIGINT and SIGHUP are how a mount is asked to stop, not failures.
  const bool asked_to_stop = rc == SIGTERM || rc == SIGINT || rc == SIGHUP;
  if (asked_to_stop) spdlog::info("{} received: flushing and unmounting", strsignal(rc));
  fs.FlushAll();
  if (rc != 0 && !asked_to_stop) spdlog::error("the FUSE loop failed: {}", strerror(-rc));
  return rc == 0 || asked_to_stop ? 0 : 1;
}
