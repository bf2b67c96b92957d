#include "fuse/mount_options.h"

#include <cstdlib>
#include <sstream>

namespace shardfs {
namespace {

Status Bad(const std::string& what) {
  return Status::Error(ErrorCode::kInvalidArgument, what);
}

Result<double> ParseSeconds(const std::string& key, const std::string& value) {
  char* end = nullptr;
  double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || v < 0 || v > 3600) {
    return Bad(key + " takes seconds from 0 to 3600, not '" + value + "'");
  }
  return v;
}

Status ApplyOption(const std::string& option, MountOptions* out) {
  std::string key = option;
  std::string value;
  if (auto eq = option.find('='); eq != std::string::npos) {
    key = option.substr(0, eq);
    value = option.substr(eq + 1);
  }
  if (key == "ro") {
    out->read_only = true;
  } else if (key == "rw") {
    out->read_only = false;
  } else if (key == "allow_other") {
    out->allow_other = true;
  } else if (key == "attr_timeout") {
    SHARDFS_ASSIGN_OR_RETURN(out->attr_timeout, ParseSeconds(key, value));
  } else if (key == "entry_timeout") {
    SHARDFS_ASSIGN_OR_RETURN(out->entry_timeout, ParseSeconds(key, value));
  } else if (key == "sync_after") {
    SHARDFS_ASSIGN_OR_RETURN(out->sync_after, ParseSeconds(key, value));
    if (out->sync_after < 0.1) return Bad("sync_after takes seconds from 0.1 to 3600");
  } else if (key == "replicas") {
    int n = std::atoi(value.c_str());
    if (n < 1 || n > 16) return Bad("replicas takes 1 to 16");
    out->replicas = static_cast<unsigned>(n);
  } else if (key == "registry") {
    out->registry = value;
  } else if (key == "cluster") {
    out->cluster = value;
  } else if (key == "key") {
    if (value.empty())
      return Bad("key takes the cluster key file, like key=/etc/shardfs/cluster.key");
    out->key = value;
  } else if (key == "insecure") {
    out->insecure = true;
  } else if (key == "log") {
    out->log_file = value;
  } else if (key == "debug") {
    out->debug_fuse = true;
  } else if (key == "defaults" || key == "sync" || key == "async" || key == "dirsync" ||
             key == "lazytime" || key == "nolazytime" || key == "strictatime" ||
             key == "nodiratime" || key == "diratime" || key == "users" || key == "owner" ||
             key == "group" || key == "x-systemd.automount" || key == "auto" || key == "noauto" ||
             key == "user" || key == "nouser" || key == "_netdev" || key == "nofail" ||
             key == "exec" || key == "noexec" || key == "suid" || key == "nosuid" || key == "dev" ||
             key == "nodev" || key == "atime" || key == "noatime" || key == "relatime") {
    // fstab and mount(8) words that need nothing from us.
  } else {
    return Bad("unknown mount option '" + option + "'");
  }
  return Status::Ok();
}

Status ApplyOptionList(const std::string& list, MountOptions* out) {
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) SHARDFS_RETURN_IF_ERROR(ApplyOption(item, out));
  }
  return Status::Ok();
}

}  // namespace

std::string MountUsage() {
  return "usage: shardfs-mount [--registry EP] [--cluster NAME] [-o OPTS] [-f] MOUNTPOINT\n"
         "\n"
         "Mounts the shardfs cluster at MOUNTPOINT and goes to the background once\n"
         "the mount is ready.\n"
         "\n"
         "  --registry EP       registry endpoint, like tcp://10.0.0.5:7400\n"
         "                      (default: $SHARDFS_REGISTRY, else the registry's beacon)\n"
         "  --cluster NAME      cluster name to accept beacons from (default shardfs)\n"
         "  --key FILE          cluster key (default: $SHARDFS_KEY, else\n"
         "                      /etc/shardfs/cluster.key)\n"
         "  --insecure          no cluster key: plain, unauthenticated connections\n"
         "  --beacon-port N     UDP port of the beacon (default 7400)\n"
         "  -f                  stay in the foreground\n"
         "  --log-level LEVEL   trace, debug, info, warn, error\n"
         "  --log-file FILE     log here (default: stderr with -f, else syslog)\n"
         "  -o OPTS             comma-separated: ro, allow_other, attr_timeout=S,\n"
         "                      entry_timeout=S, replicas=N, registry=EP, key=FILE,\n"
         "                      sync_after=S, insecure, debug\n"
         "  -h, --help          this text\n";
}

Result<MountOptions> ParseMountOptions(int argc, char** argv) {
  MountOptions out;
  std::vector<std::string> operands;
  auto need_value = [&](int& i, const std::string& flag) -> Result<std::string> {
    if (i + 1 >= argc) return Bad(flag + " needs a value");
    return std::string(argv[++i]);
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      out.show_help = true;
    } else if (arg == "-f" || arg == "--foreground") {
      out.foreground = true;
    } else if (arg == "-d") {
      out.foreground = true;
      out.debug_fuse = true;
    } else if (arg == "-o") {
      SHARDFS_ASSIGN_OR_RETURN(std::string list, need_value(i, arg));
      SHARDFS_RETURN_IF_ERROR(ApplyOptionList(list, &out));
    } else if (arg.rfind("-o", 0) == 0 && arg.size() > 2) {
      SHARDFS_RETURN_IF_ERROR(ApplyOptionList(arg.substr(2), &out));
    } else if (arg == "--registry") {
      SHARDFS_ASSIGN_OR_RETURN(out.registry, need_value(i, arg));
    } else if (arg.rfind("--registry=", 0) == 0) {
      out.registry = arg.substr(11);
    } else if (arg == "--cluster") {
      SHARDFS_ASSIGN_OR_RETURN(out.cluster, need_value(i, arg));
    } else if (arg == "--key") {
      SHARDFS_ASSIGN_OR_RETURN(out.key, need_value(i, arg));
    } else if (arg.rfind("--key=", 0) == 0) {
      out.key = arg.substr(6);
    } else if (arg == "--insecure") {
      out.insecure = true;
    } else if (arg == "--beacon-port") {
      SHARDFS_ASSIGN_OR_RETURN(std::string v, need_value(i, arg));
      out.beacon_port = std::atoi(v.c_str());
      if (out.beacon_port <= 0 || out.beacon_port > 65535) return Bad("bad --beacon-port");
    } else if (arg == "--log-file") {
      SHARDFS_ASSIGN_OR_RETURN(out.log_file, need_value(i, arg));
    } else if (arg == "--log-level") {
      SHARDFS_ASSIGN_OR_RETURN(out.log_level, need_value(i, arg));
    } else if (!arg.empty() && arg[0] == '-') {
      return Bad("unknown flag " + arg);
    } else {
      operands.push_back(arg);
    }
  }
  if (out.show_help) return out;
  // mount.shardfs is called as `mount.shardfs SOURCE DIR -o OPTS`; SOURCE is
  // a registry endpoint or just "shardfs" (find the registry by beacon).
  if (operands.size() == 2) {
    if (operands[0].find("://") != std::string::npos && out.registry.empty()) {
      out.registry = operands[0];
    }
    operands.erase(operands.begin());
  }
  if (operands.size() != 1) return Bad("give exactly one mount point");
  out.mountpoint = operands[0];
  if (out.registry.empty()) {
    if (const char* env = std::getenv("SHARDFS_REGISTRY")) out.registry = env;
  }
  return out;
}

}  // namespace shardfs
