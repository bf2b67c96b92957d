// shardfs: the operator's view of a cluster, and a way in and out of it for
// machines without FUSE.
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "src/byte_size.h"
#include "src/cli/cluster_client.h"
#include "src/unique_fd.h"

namespace {

using namespace shardfs;
using json = nlohmann::json;

constexpr uint64_t kChunk = 4u << 20;

int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "shardfs: %s: %s\n", what.c_str(), st.ToString().c_str());
  return st.code() == ErrorCode::kNotFound ? 2 : 1;
}

// A one-line progress bar, only when stderr is a terminal.
class Progress {
 public:
  Progress(std::string label, uint64_t total) : label_(std::move(label)), total_(total) {
    enabled_ = isatty(STDERR_FILENO);
  }
  void Update(uint64_t done) {
    if (!enabled_) return;
    int pct = total_ ? static_cast<int>(done * 100 / total_) : 100;
    int bar = pct / 4;
    std::fprintf(stderr, "\r%s [%-25s] %3d%% %s", label_.c_str(), std::string(bar, '#').c_str(),
                 pct, FormatByteSize(done).c_str());
    std::fflush(stderr);
  }
  ~Progress() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_;
};

std::string ModeString(const InodeAttrs& a) {
  static const char kTypes[] = "?-dlpscb";
  std::string s(1, kTypes[static_cast<int>(a.type)]);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (a.mode & (0400 >> i)) ? rwx[i] : '-';
  return s;
}

std::string TimeString(int64_t ns) {
  time_t t = static_cast<time_t>(ns / 1000000000LL);
  char buf[32];
  struct tm tm;
  localtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm);
  return buf;
}

json AttrsJson(const InodeAttrs& a) {
  return json{{"ino", a.ino},
              {"mode", ModeString(a)},
              {"uid", a.uid},
              {"gid", a.gid},
              {"nlink", a.nlink},
              {"size", a.size},
              {"mtime_ns", a.mtime_ns},
              {"shard_size", a.shard_size},
              {"replication_goal", a.replication_goal}};
}

std::string Duration(uint64_t seconds) {
  if (seconds < 120) return std::to_string(seconds) + " s";
  if (seconds < 7200) return std::to_string(seconds / 60) + " min";
  return std::to_string(seconds / 3600) + " h";
}

json RepairJson(const RepairProgress& r) {
  return json{{"pending_copies", r.pending_copies},     {"pending_bytes", r.pending_bytes},
              {"copied_copies", r.copied_copies},       {"copied_bytes", r.copied_bytes},
              {"bytes_per_second", r.bytes_per_second}, {"eta_seconds", r.eta_seconds}};
}

json HealthJson(const FsckReply& f) {
  return json{{"files", f.files},
              {"shards", f.shards},
              {"healthy", f.healthy},
              {"under_replicated", f.under_replicated},
              {"unavailable", f.unavailable},
              {"lost", f.lost},
              {"files_degraded", f.files_degraded},
              {"files_lost", f.files_lost}};
}

void PrintRepair(const RepairProgress& r) {
  if (r.pending_copies == 0) return;
  std::printf("repair: %llu copies (%s) to make, %s/s, about %s left\n",
              static_cast<unsigned long long>(r.pending_copies),
              FormatByteSize(r.pending_bytes).c_str(), FormatByteSize(r.bytes_per_second).c_str(),
              r.eta_seconds > 0 ? Duration(r.eta_seconds).c_str() : "?");
}

// The id of a node named by id, unique id prefix or endpoint.
Result<std::string> ResolveNode(ClusterClient& c, const std::string& name) {
  SHARDFS_ASSIGN_OR_RETURN(ClusterMap map, c.Map());
  std::vector<std::string> matches;
  for (const auto& n : map.nodes) {
    if (n.id == name || n.endpoint == name) return n.id;
    if (n.id.rfind(name, 0) == 0) matches.push_back(n.id);
  }
  if (matches.size() == 1) return matches[0];
  return Status::Error(
      matches.empty() ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument,
      matches.empty() ? "no node " + name : "more than one node starts with " + name);
}

// `shardfs drain NODE`: marks it draining, then (with --wait) waits until no
// shard table lists it. Exit 0 once it is safe to stop, 1 if not (yet).
int Drain(ClusterClient& c, const std::string& name, bool undo, bool wait, bool as_json) {
  auto id = ResolveNode(c, name);
  if (!id.ok()) return Fail("drain", id.status());
  if (Status st = c.SetDraining(*id, !undo); !st.ok()) return Fail("drain " + *id, st);
  if (undo) {
    std::printf("node %s takes new shards again\n", id->c_str());
    return 0;
  }
  while (true) {
    auto f = c.Fsck(0);
    if (!f.ok()) return Fail("drain", f.status());
    uint64_t left = 0;
    for (const auto& n : f->nodes) {
      if (n.node_id == *id) left = n.replicas;
    }
    // Safe only when nothing lists the node and no shard anywhere is short:
    // a shard short of copies may still need this node's copy as a source.
    const bool safe = left == 0 && f->under_replicated == 0 && f->unavailable == 0;
    if (as_json) {
      if (safe || !wait) {
        std::cout << json{{"node", *id},
                          {"replicas_left", left},
                          {"safe_to_stop", safe},
                          {"repair", RepairJson(f->repair)}}
                         .dump(2)
                  << "\n";
      }
    } else if (safe) {
      std::printf("node %s holds no shard the cluster needs: safe to stop\n", id->c_str());
    } else {
      std::printf("node %s is draining: %llu shard replica(s) still listed on it", id->c_str(),
                  static_cast<unsigned long long>(left));
      if (f->repair.eta_seconds > 0) {
        std::printf(", about %s left", Duration(f->repair.eta_seconds).c_str());
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    if (safe) return 0;
    if (!wait) return 1;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

// `shardfs rebalance`: even out disk use now, at the repair rate.
int Rebalance(ClusterClient& c, bool as_json) {
  auto r = c.Rebalance();
  if (!r.ok()) return Fail("rebalance", r.status());
  if (as_json) {
    std::cout << json{{"spread_percent", r->spread_percent},
                      {"threshold_percent", r->threshold_percent}}
                     .dump(2)
              << "\n";
  } else if (r->spread_percent <= r->threshold_percent) {
    std::printf("disk use differs by %llu%% between nodes, within %llu%%: nothing to move\n",
                static_cast<unsigned long long>(r->spread_percent),
                static_cast<unsigned long long>(r->threshold_percent));
  } else {
    std::printf(
        "disk use differs by %llu%% between nodes: moving replicas until it is within "
        "%llu%%; `shardfs status` shows each node's share\n",
        static_cast<unsigned long long>(r->spread_percent),
        static_cast<unsigned long long>(r->threshold_percent));
  }
  return 0;
}

// `shardfs fsck`: exit 0 healthy, 1 degraded, 2 data lost; names every
// affected file (up to --max-files).
int Fsck(ClusterClient& c, uint64_t max_files, bool as_json) {
  auto f = c.Fsck(max_files);
  if (!f.ok()) {
    Fail("fsck", f.status());
    return 3;  // neither healthy nor known to be degraded
  }
  if (as_json) {
    json files = json::array();
    for (const auto& a : f->affected) {
      files.push_back({{"path", a.path},
                       {"ino", a.ino},
                       {"state", a.state},
                       {"shards", a.shards},
                       {"fewest_copies", a.fewest}});
    }
    json nodes = json::array();
    for (const auto& n : f->nodes) {
      nodes.push_back({{"node_id", n.node_id}, {"replicas", n.replicas}, {"bytes", n.bytes}});
    }
    json out = HealthJson(*f);
    out["affected"] = files;
    out["nodes"] = nodes;
    out["repair"] = RepairJson(f->repair);
    out["status"] = f->ExitCode() == 0 ? "healthy" : f->ExitCode() == 1 ? "degraded" : "lost";
    std::cout << out.dump(2) << "\n";
    return f->ExitCode();
  }
  for (const auto& a : f->affected) {
    std::printf("%-11s %s (%llu shard(s) affected, fewest copies %llu)\n", a.state.c_str(),
                a.path.empty() ? ("<unlinked inode " + std::to_string(a.ino) + ">").c_str()
                               : a.path.c_str(),
                static_cast<unsigned long long>(a.shards),
                static_cast<unsigned long long>(a.fewest));
  }
  const uint64_t named = f->affected.size(), total = f->files_degraded + f->files_lost;
  if (named < total) {
    std::printf("... and %llu more file(s)\n", static_cast<unsigned long long>(total - named));
  }
  std::printf(
      "%llu files, %llu shards: %llu healthy, %llu under-replicated, %llu unavailable, "
      "%llu lost\n",
      static_cast<unsigned long long>(f->files), static_cast<unsigned long long>(f->shards),
      static_cast<unsigned long long>(f->healthy),
      static_cast<unsigned long long>(f->under_replicated),
      static_cast<unsigned long long>(f->unavailable), static_cast<unsigned long long>(f->lost));
  PrintRepair(f->repair);
  std::printf("status: %s\n", f->ExitCode() == 0   ? "healthy"
                              : f->ExitCode() == 1 ? "degraded"
                                                   : "DATA LOST");
  return f->ExitCode();
}

int Status_(ClusterClient& c, bool as_json) {
  auto map = c.Map();
  if (!map.ok()) return Fail("status", map.status());
  // Health is best effort: the map alone is still worth showing.
  auto health = c.Fsck(0);
  std::map<std::string, uint64_t> listed;
  if (health.ok()) {
    for (const auto& n : health->nodes) listed[n.node_id] = n.replicas;
  }
  uint64_t capacity = 0, used = 0, shards = 0, up = 0;
  json nodes = json::array();
  for (const auto& n : map->nodes) {
    if (n.state != NodeState::kDown) {
      capacity += n.capacity;
      used += n.used;
      ++up;
    }
    shards += n.shard_count;
    nodes.push_back({{"id", n.id},
                     {"endpoint", n.endpoint},
                     {"host", n.host},
                     {"state", std::string(NodeStateName(n.state))},
                     {"capacity", n.capacity},
                     {"used", n.used},
                     {"shards", n.shard_count},
                     {"replicas_listed", listed[n.id]}});
  }
  if (as_json) {
    json out{{"epoch", map->epoch},  {"nodes", nodes}, {"nodes_up", up},
             {"capacity", capacity}, {"used", used},   {"shards", shards}};
    if (health.ok()) {
      out["health"] = HealthJson(*health);
      out["repair"] = RepairJson(health->repair);
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("cluster map epoch %llu: %llu of %zu nodes up, %s used of %s\n\n",
              static_cast<unsigned long long>(map->epoch), static_cast<unsigned long long>(up),
              map->nodes.size(), FormatByteSize(used).c_str(), FormatByteSize(capacity).c_str());
  std::printf("%-12s %-26s %-10s %-9s %10s %10s %8s\n", "NODE", "ENDPOINT", "HOST", "STATE", "USED",
              "CAPACITY", "SHARDS");
  for (const auto& n : map->nodes) {
    std::printf("%-12s %-26s %-10s %-9s %10s %10s %8llu\n", n.id.substr(0, 12).c_str(),
                n.endpoint.c_str(), n.host.substr(0, 10).c_str(),
                std::string(NodeStateName(n.state)).c_str(), FormatByteSize(n.used).c_str(),
                FormatByteSize(n.capacity).c_str(), static_cast<unsigned long long>(n.shard_count));
  }
  if (!health.ok()) {
    std::printf("\nhealth: unknown (%s)\n", health.status().ToString().c_str());
    return 0;
  }
  std::printf(
      "\n%llu files, %llu shards: %llu healthy, %llu under-replicated, %llu unavailable, "
      "%llu lost\n",
      static_cast<unsigned long long>(health->files),
      static_cast<unsigned long long>(health->shards),
      static_cast<unsigned long long>(health->healthy),
      static_cast<unsigned long long>(health->under_replicated),
      static_cast<unsigned long long>(health->unavailable),
      static_cast<unsigned long long>(health->lost));
  PrintRepair(health->repair);
  return 0;
}

int Ls(ClusterClient& c, const std::string& path, bool as_json) {
  auto dir = c.Resolve(path);
  if (!dir.ok()) return Fail(path, dir.status());
  std::vector<DirEntry> entries;
  if (dir->type != FileType::kDirectory) {
    entries.push_back(DirEntry{path, dir->ino, dir->type, *dir, std::nullopt});
  } else {
    ReadDirRequest r;
    r.ino = dir->ino;
    r.plus = true;
    while (true) {
      auto page = c.ns().ReadDir(r);
      if (!page.ok()) return Fail(path, page.status());
      for (auto& e : page->entries) entries.push_back(std::move(e));
      if (!page->more || page->entries.empty()) break;
      r.after = entries.back().name;
    }
  }
  if (as_json) {
    json out = json::array();
    for (const auto& e : entries) {
      json item{{"name", e.name}};
      if (e.attrs) item.update(AttrsJson(*e.attrs));
      out.push_back(item);
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  for (const auto& e : entries) {
    if (!e.attrs) continue;
    const InodeAttrs& a = *e.attrs;
    std::printf("%s %3u %5u %5u %12llu %s %s\n", ModeString(a).c_str(), a.nlink, a.uid, a.gid,
                static_cast<unsigned long long>(a.size), TimeString(a.mtime_ns).c_str(),
                e.name.c_str());
  }
  return 0;
}

Result<uint64_t> HashCluster(ClusterClient& c, uint64_t ino) {
  SHARDFS_ASSIGN_OR_RETURN(auto file, OpenFile::Load(c.data_path(), ino));
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  uint64_t size = file->attrs().size;
  for (uint64_t off = 0; off < size; off += kChunk) {
    auto bytes = file->Read(off, kChunk);
    if (!bytes.ok()) {
      XXH3_freeState(state);
      return bytes.status();
    }
    XXH3_64bits_update(state, bytes->data(), bytes->size());
  }
  uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

int Put(ClusterClient& c, const std::string& local, const std::string& path) {
  UniqueFd in(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return Fail(local, Status::Error(ErrnoToErrorCode(errno), strerror(errno)));
  struct stat st;
  fstat(in.get(), &st);
  auto target = c.Resolve(path);
  uint64_t ino;
  if (target.ok() && target->type == FileType::kDirectory) {
    std::string base = local.substr(local.find_last_of('/') + 1);
    auto r = c.ns().Mknod(MknodRequest{target->ino, base, FileType::kRegular, st.st_mode & 0777,
                                       Caller{getuid(), getgid()}});
    if (!r.ok()) return Fail(path + "/" + base, r.status());
    ino = r->ino;
  } else if (target.ok()) {
    ino = target->ino;
  } else {
    auto parent = c.ResolveParent(path);
    if (!parent.ok()) return Fail(path, parent.status());
    auto r = c.ns().Mknod(MknodRequest{parent->first.ino, parent->second, FileType::kRegular,
                                       st.st_mode & 0777, Caller{getuid(), getgid()}});
    if (!r.ok()) return Fail(path, r.status());
    ino = r->ino;
  }
  auto file = OpenFile::Load(c.data_path(), ino);
  if (!file.ok()) return Fail(path, file.status());
  if (Status s = (*file)->Truncate(0); !s.ok()) return Fail(path, s);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::string buf(kChunk, '\0');
  uint64_t done = 0;
  {
    Progress progress("put " + local, static_cast<uint64_t>(st.st_size));
    while (true) {
      ssize_t n = ::read(in.get(), buf.data(), buf.size());
      if (n < 0) return Fail(local, Status::Error(ErrnoToErrorCode(errno), strerror(errno)));
      if (n == 0) break;
      XXH3_64bits_update(state, buf.data(), static_cast<size_t>(n));
      Status s = (*file)->Write(done, std::string_view(buf.data(), static_cast<size_t>(n)));
      if (!s.ok()) return Fail(path, s);
      done += static_cast<uint64_t>(n);
      progress.Update(done);
    }
  }
  uint64_t local_hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  if (Status s = (*file)->Flush(true); !s.ok()) return Fail(path, s);
  // Read it back from the cluster: the upload counts only once verified.
  auto remote_hash = HashCluster(c, ino);
  if (!remote_hash.ok()) return Fail("verify " + path, remote_hash.status());
  if (*remote_hash != local_hash) {
    std::fprintf(stderr, "shardfs: %s: content read back differs from %s\n", path.c_str(),
                 local.c_str());
    return 1;
  }
  std::printf("%s -> %s: %s, verified\n", local.c_str(), path.c_str(),
              FormatByteSize(done).c_str());
  return 0;
}

int Get(ClusterClient& c, const std::string& path, const std::string& local) {
  auto attrs = c.Resolve(path);
  if (!attrs.ok()) return Fail(path, attrs.status());
  if (attrs->type != FileType::kRegular) {
    return Fail(path, Status::Error(ErrorCode::kIsDir, "not a regular file"));
  }
  auto file = OpenFile::Load(c.data_path(), attrs->ino);
  if (!file.ok()) return Fail(path, file.status());
  UniqueFd out(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out.valid()) return Fail(local, Status::Error(ErrnoToErrorCode(errno), strerror(errno)));
  uint64_t size = (*file)->attrs().size;
  Progress progress("get " + path, size);
  for (uint64_t off = 0; off < size; off += kChunk) {
    auto bytes = (*file)->Read(off, kChunk);
    if (!bytes.ok()) return Fail(path, bytes.status());
    if (::write(out.get(), bytes->data(), bytes->size()) != static_cast<ssize_t>(bytes->size())) {
      return Fail(local, Status::Error(ErrnoToErrorCode(errno), strerror(errno)));
    }
    progress.Update(off + bytes->size());
  }
  if (::fsync(out.get()) != 0 || out.Close() != 0) {
    return Fail(local, Status::Error(ErrorCode::kIoError, "cannot write"));
  }
  return 0;
}

int Info(ClusterClient& c, const std::string& path, bool as_json) {
  auto attrs = c.Resolve(path);
  if (!attrs.ok()) return Fail(path, attrs.status());
  auto map = c.Map();
  json shards = json::array();
  if (attrs->type == FileType::kRegular) {
    uint64_t shard_size = attrs->shard_size ? attrs->shard_size : kDefaultShardSize;
    uint64_t count = (attrs->size + shard_size - 1) / shard_size;
    for (uint32_t first = 0; first < count; first += 1024) {
      auto table = c.ns().GetShardTable(attrs->ino, first, 1024);
      if (!table.ok()) return Fail(path, table.status());
      for (const auto& e : table->shards) {
        json replicas = json::array();
        for (const auto& id : e.replicas) {
          const NodeRecord* n = map.ok() ? map->Find(id) : nullptr;
          replicas.push_back(
              {{"node", id}, {"state", n ? std::string(NodeStateName(n->state)) : "unknown"}});
        }
        shards.push_back({{"index", e.index},
                          {"generation", e.generation},
                          {"length", e.length},
                          {"stored", e.StoredBytes()},
                          {"checksum", e.checksum},
                          {"replicas", replicas}});
      }
    }
  }
  if (as_json) {
    json out = AttrsJson(*attrs);
    out["path"] = path;
    out["shards"] = shards;
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%s: inode %llu, %s, %llu bytes, shard size %s, goal %u\n", path.c_str(),
              static_cast<unsigned long long>(attrs->ino), ModeString(*attrs).c_str(),
              static_cast<unsigned long long>(attrs->size),
              FormatByteSize(attrs->shard_size).c_str(), attrs->replication_goal);
  for (const auto& s : shards) {
    std::printf("  shard %-6llu gen %-10llu %10llu bytes (%llu stored)  ",
                static_cast<unsigned long long>(s["index"].get<uint64_t>()),
                static_cast<unsigned long long>(s["generation"].get<uint64_t>()),
                static_cast<unsigned long long>(s["length"].get<uint64_t>()),
                static_cast<unsigned long long>(s["stored"].get<uint64_t>()));
    for (const auto& r : s["replicas"]) {
      std::printf("%s(%s) ", r["node"].get<std::string>().substr(0, 8).c_str(),
                  r["state"].get<std::string>().c_str());
    }
    std::printf("\n");
  }
  return 0;
}

int Replicas(ClusterClient& c, const std::string& path, unsigned goal, bool recursive) {
  auto attrs = c.Resolve(path);
  if (!attrs.ok()) return Fail(path, attrs.status());
  Status st = c.ns().SetReplicas(SetReplicasRequest{attrs->ino, goal, recursive});
  if (!st.ok()) return Fail(path, st);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shardfs: look at and steer a shardfs cluster"};
  std::string registry;
  bool as_json = false;
  app.add_option("--registry", registry, "registry endpoint, like tcp://10.0.0.5:7400")
      ->envname("SHARDFS_REGISTRY");
  app.add_flag("--json", as_json, "machine-readable output");
  std::string key;
  bool insecure = false;
  app.add_option("--key", key,
                 "cluster key file (default: $SHARDFS_KEY, else /etc/shardfs/cluster.key)");
  app.add_flag("--insecure", insecure, "no cluster key: plain, unauthenticated connections");
  app.require_subcommand(1);

  auto* status = app.add_subcommand("status", "nodes, their state, space and shards");
  std::string path, local;
  auto* ls = app.add_subcommand("ls", "list a directory of the cluster");
  ls->add_option("PATH", path)->default_val("/");
  auto* info = app.add_subcommand("info", "a file's shards, generations and replicas");
  info->add_option("PATH", path)->required();
  auto* put = app.add_subcommand("put", "copy a local file into the cluster, verified");
  put->add_option("LOCAL", local)->required();
  put->add_option("PATH", path)->required();
  auto* get = app.add_subcommand("get", "copy a file out of the cluster");
  get->add_option("PATH", path)->required();
  get->add_option("LOCAL", local)->required();
  auto* replicas = app.add_subcommand("replicas", "set the replication goal of a file or tree");
  bool recursive = false;
  unsigned goal = 0;
  replicas->add_flag("-r,--recursive", recursive, "a whole tree");
  replicas->add_option("PATH", path)->required();
  replicas->add_option("N", goal)->required()->check(CLI::Range(1, 16));
  auto* fsck = app.add_subcommand(
      "fsck", "check every shard against its goal; exit 0 healthy, 1 degraded, 2 data lost");
  uint64_t max_files = 1000;
  fsck->add_option("--max-files", max_files, "affected files to name")->capture_default_str();
  auto* drain = app.add_subcommand(
      "drain", "move every shard off a node so it can be removed; says when it is safe to stop");
  std::string node;
  bool undo = false, wait = false;
  drain->add_option("NODE", node, "node id, unique id prefix or endpoint")->required();
  drain->add_flag("--undo", undo, "let the node take new shards again");
  drain->add_flag("--wait", wait, "wait until it is safe to stop the node");
  auto* rebalance =
      app.add_subcommand("rebalance", "even out disk use between nodes now, at the repair rate");
  auto* keygen = app.add_subcommand(
      "keygen", "write a new cluster key to FILE (mode 0600; never overwrites a file)");
  std::string key_file;
  keygen->add_option("FILE", key_file)->required();
  for (auto* sub : {status, ls, info, fsck, drain, rebalance}) {
    sub->add_flag("--json", as_json, "machine-readable output");
  }

  CLI11_PARSE(app, argc, argv);
  if (*keygen) return KeygenCommand(key_file);
  if (registry.empty()) {
    std::fprintf(stderr, "shardfs: give --registry tcp://HOST:7400 or set SHARDFS_REGISTRY\n");
    return 2;
  }
  if (Status st = UseClusterKey(key, insecure); !st.ok()) {
    std::fprintf(stderr, "shardfs: %s\n", st.message().c_str());
    return 2;
  }
  ClusterClient client(registry);
  if (*status) return Status_(client, as_json);
  if (*ls) return Ls(client, path, as_json);
  if (*info) return Info(client, path, as_json);
  if (*put) return Put(client, local, path);
  if (*get) return Get(client, path, local);
  if (*replicas) return Replicas(client, path, goal, recursive);
  if (*fsck) return Fsck(client, max_files, as_json);
  if (*drain) return Drain(client, node, undo, wait, as_json);
  if (*rebalance) return Rebalance(client, as_json);
  return 2;
}
