#include "fuse/shardfs_fs.h"

#include <spdlog/spdlog.h>
#include <sys/xattr.h>

#include <cstring>

#include "src/namespace_op.h"

namespace shardfs {

struct ShardFs::Handle {
  uint64_t ino = 0;
  std::shared_ptr<OpenFile> file;
};

struct ShardFs::DirListing {
  uint64_t ino = 0;
  uint64_t parent = 0;
  std::vector<DirEntry> entries;
};

namespace {

ShardFs* Self(fuse_req_t req) {
  return static_cast<ShardFs*>(fuse_req_userdata(req));
}

void ReplyStatus(fuse_req_t req, const Status& st) {
  fuse_reply_err(req, st.ok() ? 0 : st.ToErrno());
}

int64_t ToNs(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1000000000LL;
  ts.tv_nsec = ns % 1000000000LL;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000LL;
    ts.tv_sec -= 1;
  }
  return ts;
}

FileType TypeFromMode(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return FileType::kDirectory;
    case S_IFLNK:
      return FileType::kSymlink;
    case S_IFIFO:
      return FileType::kFifo;
    case S_IFSOCK:
      return FileType::kSocket;
    case S_IFCHR:
      return FileType::kCharDevice;
    case S_IFBLK:
      return FileType::kBlockDevice;
    default:
      return FileType::kRegular;
  }
}

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{static_cast<uint32_t>(ctx->uid), static_cast<uint32_t>(ctx->gid)};
}

// The umask is applied by the kernel unless the file system asks otherwise;
// fuse_req_ctx carries it for the DONT_MASK case.
uint32_t CreateMode(fuse_req_t req, mode_t mode) {
  (void)req;
  return mode & 07777;
}

}  // namespace

ShardFs::ShardFs(const MountOptions& options, std::string registry_endpoint)
    : options_(options),
      registry_endpoint_(std::move(registry_endpoint)),
      latency_(std::chrono::milliseconds(20), std::chrono::milliseconds(2000)),
      unsynced_(UnsyncedShards::Limits{std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::duration<double>(options.sync_after)),
                                       UnsyncedShards::Limits().max_shards}),
      xattr_absent_(std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::duration<double>(options.attr_timeout))),
      dir_attrs_(std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::duration<double>(options.attr_timeout))),
      entries_(EntryCache::Limits{std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::duration<double>(std::min(options.entry_timeout, options.attr_timeout)))}) {}

void ShardFs::Start() {
  // ZeroMQ encrypts and decrypts (CURVE) on its I/O threads: with one, every
  // byte to and from all replicas went through a single core.
  context_.emplace(/*io_threads=*/2);
  ns_.emplace(*context_, registry_endpoint_);
  ns_->set_changed_dirs_listener(
      [this](const std::vector<InodeAttrs>& dirs) { dir_attrs_.Put(dirs); });
  nodes_.emplace(*context_, NodeClient::Options{std::chrono::milliseconds(4000), 2,
                                                std::chrono::milliseconds(50)});
  data_path_.ns = &*ns_;
  data_path_.nodes = &*nodes_;
  data_path_.directory = &directory_;
  data_path_.latency = &latency_;
  // Separate pools, so fetches for readers never queue behind slow stores.
  // Each file keeps at most a few shards in flight, so a few threads serve
  // many files.
  stores_.emplace(4, "shardfs-store");
  fetches_.emplace(4, "shardfs-fetch");
  data_path_.stores = &*stores_;
  data_path_.fetches = &*fetches_;
  data_path_.read_ahead = &read_ahead_;
  data_path_.unsynced = &unsynced_;
  syncer_.emplace(unsynced_, *nodes_, directory_);
}

ShardFs::~ShardFs() {
  // The pools finish their tasks while the clients those use still exist.
  stores_.reset();
  fetches_.reset();
  syncer_.reset();
  // Clients close their sockets before the context is terminated.
  nodes_.reset();
  ns_.reset();
  context_.reset();
}

void ShardFs::FlushAll() {
  std::vector<std::shared_ptr<OpenFile>> files;
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    for (auto& [ino, open] : open_files_) files.push_back(open.file);
  }
  for (auto& f : files) {
    Status st = f->Flush(true);
    if (!st.ok()) spdlog::error("flushing inode {} failed: {}", f->ino(), st.ToString());
  }
  // Also what was written through descriptors closed since, as a local
  // file system makes everything durable at unmount.
  if (syncer_) {
    if (Status st = syncer_->SyncAll(); !st.ok()) spdlog::error("{}", st.ToString());
  }
}

struct stat ShardFs::ToStat(const InodeAttrs& a) const {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = a.ino;
  st.st_mode = StatMode(a);
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_rdev = a.rdev;
  st.st_blksize = 1 << 20;
  // Directories have no byte size of their own; report one block, as local
  // file systems do, so tools that add up sizes see familiar numbers.
  if (a.type == FileType::kDirectory) st.st_size = 4096;
  // Blocks in use, in 4 KiB units as a local disk counts them: for a file
  // what its shards hold (so du, cp --sparse and tar --sparse see holes),
  // for anything else its size.
  const uint64_t used =
      a.type == FileType::kRegular ? a.stored_bytes : static_cast<uint64_t>(st.st_size);
  st.st_blocks = static_cast<blkcnt_t>((used + 4095) / 4096 * 8);
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

namespace {

double AtMost(double timeout, std::optional<std::chrono::nanoseconds> left) {
  if (!left.has_value()) return timeout;
  return std::min(timeout, std::chrono::duration<double>(*left).count());
}

}  // namespace

void ShardFs::ReplyEntry(fuse_req_t req, const InodeAttrs& attrs,
                         std::optional<std::chrono::nanoseconds> left) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = attrs.ino;
  e.generation = 1;
  e.attr = ToStat(attrs);
  e.attr_timeout = AtMost(options_.attr_timeout, left);
  e.entry_timeout = AtMost(options_.entry_timeout, left);
  fuse_reply_entry(req, &e);
}

void ShardFs::ReplyNoEntry(fuse_req_t req, std::optional<std::chrono::nanoseconds> left) {
  // A negative entry: the kernel remembers the name is missing for the
  // entry timeout, as it remembers names that exist, so tools probing for
  // files (build tools, PATH and import searches) do not ask each time.
  // Names made through this mount replace it at once; names made by other
  // mounts show within the entry timeout, as renames already do.
  if (options_.entry_timeout <= 0) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = 0;
  e.entry_timeout = AtMost(options_.entry_timeout, left);
  fuse_reply_entry(req, &e);
}

void ShardFs::ReplyAttr(fuse_req_t req, const InodeAttrs& attrs) {
  struct stat st = ToStat(attrs);
  fuse_reply_attr(req, &st, options_.attr_timeout);
}

bool ShardFs::ReadOnlyReject(fuse_req_t req) {
  if (!options_.read_only) return false;
  fuse_reply_err(req, EROFS);
  return true;
}

std::shared_ptr<OpenFile> ShardFs::FindOpenFile(uint64_t ino) {
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = open_files_.find(ino);
  return it == open_files_.end() ? nullptr : it->second.file;
}

void ShardFs::Init(fuse_conn_info* conn) {
  // Large writes mean fewer round trips through the kernel; the shard
  // buffers absorb them.
  conn->max_write = 1 << 20;
  conn->max_readahead = 4 << 20;
  if (conn->capable & FUSE_CAP_SPLICE_READ) conn->want |= FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  // Every page with attributes, not only the first (libfuse's default
  // "auto" mode): the attributes are in the listing anyway, and without them
  // ls -l of a large directory sent a LOOKUP per name after the first page.
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // Other mounts change files too: the kernel must not keep pages across an
  // open unless we say so (keep_cache), and must drop them when the size or
  // mtime it sees changes.
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void ShardFs::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto cached = entries_.Find(parent, name);
  if (!cached && entries_.ShouldList(parent)) {
    ListForLookups(parent);
    cached = entries_.Find(parent, name);
  }
  if (cached) {
    if (!cached->attrs) return ReplyNoEntry(req, cached->left);
    InodeAttrs& attrs = *cached->attrs;
    if (auto f = FindOpenFile(attrs.ino); f && f->dirty()) attrs.size = f->attrs().size;
    return ReplyEntry(req, attrs, cached->left);
  }
  spdlog::debug("lookup {} in {}: asking the registry", name, parent);
  auto attrs = ns_->Lookup(parent, name);
  if (!attrs.ok() && attrs.status().code() == ErrorCode::kNotFound) return ReplyNoEntry(req);
  if (!attrs.ok()) return ReplyStatus(req, attrs.status());
  if (auto f = FindOpenFile(attrs->ino); f && f->dirty()) attrs->size = f->attrs().size;
  ReplyEntry(req, *attrs);
}

void ShardFs::ListForLookups(uint64_t dir) {
  EntryCache::Ticket ticket = entries_.Begin(dir);
  // One name past the limit is enough to know the directory is too large.
  auto entries = ListDir(dir, entries_.limits().max_dir_entries + 1);
  if (!entries.ok()) return entries_.Abandon(ticket);
  spdlog::debug("listed {} names of directory {} for lookups", entries->size(), dir);
  entries_.Store(ticket, *entries);
}

Result<std::vector<DirEntry>> ShardFs::ListDir(uint64_t dir, size_t limit) {
  const uint64_t xattr_version = xattr_absent_.Version();
  std::vector<DirEntry> entries;
  ReadDirRequest r;
  r.ino = dir;
  r.max = 1000;
  r.plus = true;
  while (entries.size() < limit) {
    SHARDFS_ASSIGN_OR_RETURN(ReadDirReply page, ns_->ReadDir(r));
    for (auto& e : page.entries) entries.push_back(std::move(e));
    if (!page.more || page.entries.empty()) break;
    r.after = entries.back().name;
  }
  // ls -l asks for security.selinux and the ACLs of every name; most have no
  // xattrs at all, and the listing says which.
  for (const auto& e : entries) {
    if (e.has_xattrs == false) xattr_absent_.NoteNoXattrs(e.ino, xattr_version);
  }
  return entries;
}

void ShardFs::GetAttr(fuse_req_t req, fuse_ino_t ino) {
  // Asked again because this mount just changed a name in the directory.
  if (auto dir = dir_attrs_.Get(ino)) return ReplyAttr(req, *dir);
  auto attrs = ns_->GetAttr(ino);
  if (!attrs.ok()) return ReplyStatus(req, attrs.status());
  // Writes not yet committed are part of the file as this mount sees it.
  if (auto f = FindOpenFile(ino); f && f->dirty()) attrs->size = f->attrs().size;
  ReplyAttr(req, *attrs);
}

void ShardFs::SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                      fuse_file_info* /*fi*/) {
  if (ReadOnlyReject(req)) return;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (auto f = FindOpenFile(ino)) {
      Status st = f->Truncate(static_cast<uint64_t>(attr->st_size));
      if (!st.ok()) return ReplyStatus(req, st);
    } else {
      SetAttrRequest size_req;
      size_req.ino = ino;
      size_req.mask = kSetAttrSize;
      size_req.size = static_cast<uint64_t>(attr->st_size);
      auto r = ns_->SetAttr(size_req);
      entries_.Changed(ino);
      if (!r.ok()) return ReplyStatus(req, r.status());
    }
  }
  SetAttrRequest r;
  r.ino = ino;
  if (to_set & FUSE_SET_ATTR_MODE) {
    r.mask |= kSetAttrMode;
    r.mode = attr->st_mode & 07777;
  }
  if (to_set & FUSE_SET_ATTR_UID) {
    r.mask |= kSetAttrUid;
    r.uid = attr->st_uid;
  }
  if (to_set & FUSE_SET_ATTR_GID) {
    r.mask |= kSetAttrGid;
    r.gid = attr->st_gid;
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
    r.mask |= kSetAttrAtime;
    r.atime_now = (to_set & FUSE_SET_ATTR_ATIME_NOW) != 0;
    r.atime_ns = ToNs(attr->st_atim);
  }
  if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
    r.mask |= kSetAttrMtime;
    r.mtime_now = (to_set & FUSE_SET_ATTR_MTIME_NOW) != 0;
    r.mtime_ns = ToNs(attr->st_mtim);
  }
  Result<InodeAttrs> attrs = r.mask != 0 ? ns_->SetAttr(r) : ns_->GetAttr(ino);
  entries_.Changed(ino);
  if (!attrs.ok()) {
    dir_attrs_.Forget(ino);
    return ReplyStatus(req, attrs.status());
  }
  if (attrs->type == FileType::kDirectory) dir_attrs_.Put({*attrs});
  if (auto f = FindOpenFile(ino); f && f->dirty()) attrs->size = f->attrs().size;
  ReplyAttr(req, *attrs);
}

void ShardFs::Readlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = ns_->Readlink(ino);
  if (!target.ok()) return ReplyStatus(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void ShardFs::Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  if (ReadOnlyReject(req)) return;
  MknodRequest r;
  r.parent = parent;
  r.name = name;
  r.type = TypeFromMode(mode);
  r.mode = CreateMode(req, mode);
  r.caller = CallerOf(req);
  r.rdev = rdev;
  r.replication_goal = options_.replicas;
  auto attrs = r.type == FileType::kDirectory ? ns_->Mkdir(r) : ns_->Mknod(r);
  if (!attrs.ok()) return ReplyStatus(req, attrs.status());
  // A new inode has no xattrs: the kernel's security.capability check
  // before the first write needs no round trip.
  xattr_absent_.NoteNoXattrs(attrs->ino);
  entries_.Added(parent, name, *attrs);
  ReplyEntry(req, *attrs);
}

void ShardFs::Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Mknod(req, parent, name, (mode & 07777) | S_IFDIR, 0);
}

void ShardFs::Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (ReadOnlyReject(req)) return;
  Status st = ns_->Unlink(parent, name);
  if (st.ok()) entries_.Removed(parent, name);
  ReplyStatus(req, st);
}

void ShardFs::Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (ReadOnlyReject(req)) return;
  Status st = ns_->Rmdir(parent, name);
  if (st.ok()) entries_.Removed(parent, name);
  ReplyStatus(req, st);
}

void ShardFs::Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  if (ReadOnlyReject(req)) return;
  auto attrs = ns_->Symlink(SymlinkRequest{parent, name, link, CallerOf(req)});
  if (!attrs.ok()) return ReplyStatus(req, attrs.status());
  entries_.Added(parent, name, *attrs);
  ReplyEntry(req, *attrs);
}

void ShardFs::Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                     const char* newname, unsigned int flags) {
  if (ReadOnlyReject(req)) return;
  uint32_t wire_flags = 0;
  if (flags & RENAME_NOREPLACE) wire_flags |= kRenameNoReplace;
  if (flags & RENAME_EXCHANGE) wire_flags |= kRenameExchange;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return (void)fuse_reply_err(req, EINVAL);
  Status st = ns_->Rename(RenameRequest{parent, name, newparent, newname, wire_flags});
  if (st.ok()) entries_.Renamed(parent, name, newparent, newname);
  ReplyStatus(req, st);
}

void ShardFs::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  if (ReadOnlyReject(req)) return;
  auto attrs = ns_->Link(ino, newparent, newname);
  if (!attrs.ok()) return ReplyStatus(req, attrs.status());
  entries_.Added(newparent, newname, *attrs);
  ReplyEntry(req, *attrs);
}

Status ShardFs::OpenHandle(uint64_t ino, fuse_file_info* fi, std::shared_ptr<OpenFile> created) {
  const bool just_created = created != nullptr;
  std::shared_ptr<OpenFile> file = std::move(created);
  if (!just_created) {
    std::lock_guard<std::mutex> lock(open_mu_);
    auto it = open_files_.find(ino);
    if (it != open_files_.end()) file = it->second.file;
  }
  if (just_created) {
    // Made and opened at the registry by Create: nothing to fetch.
  } else if (file) {
    // Close-to-open: a new open sees what others committed, unless this
    // mount has writes of its own in flight for the file. The same round
    // trip opens the file at the registry.
    SHARDFS_RETURN_IF_ERROR(file->Refresh(/*open=*/true));
  } else {
    // An open that will read may find the bytes fetched by then.
    const bool will_read = (fi->flags & O_ACCMODE) != O_WRONLY && !(fi->flags & O_TRUNC);
    const std::optional<ShardEntry> guess = will_read ? recent_shards_.Find(ino) : std::nullopt;
    SHARDFS_ASSIGN_OR_RETURN(
        file, OpenFile::Load(data_path_, ino, /*open=*/true, guess ? &*guess : nullptr));
  }
  InodeAttrs attrs = file->attrs();
  auto* handle = new Handle{ino, nullptr};
  bool changed = false;
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    auto& open = open_files_[ino];
    if (!open.file) open.file = file;
    handle->file = open.file;
    ++open.handles;
    auto seen = last_seen_.find(ino);
    // The kernel may keep cached pages when nothing changed since they were
    // read: same size and mtime as at our last open.
    fi->keep_cache = seen != last_seen_.end() && seen->second.first == attrs.size &&
                     seen->second.second == attrs.mtime_ns;
    changed = seen != last_seen_.end() && !fi->keep_cache;
    last_seen_[ino] = {attrs.size, attrs.mtime_ns};
  }
  // Close-to-open: another client changed the file since the kernel cached
  // its attributes, so drop them too (a stale, larger size would make the
  // kernel pad the new contents with zeros).
  if (changed && session_ != nullptr) fuse_lowlevel_notify_inval_inode(session_, ino, 0, 0);
  fi->fh = reinterpret_cast<uint64_t>(handle);
  return Status::Ok();
}

void ShardFs::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (options_.read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
    return (void)fuse_reply_err(req, EROFS);
  }
  Status st = OpenHandle(ino, fi, nullptr);
  if (st.ok() && (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
    // With atomic_o_trunc the kernel leaves O_TRUNC to us.
    st = reinterpret_cast<Handle*>(fi->fh)->file->Truncate(0);
    entries_.Changed(ino);
    if (!st.ok()) (void)CloseHandle(ino, fi);
  }
  if (!st.ok()) {
    // Not-found and unreachable registries opened nothing; anything else
    // may have, and an extra release of an unopened file is harmless.
    if (st.code() != ErrorCode::kNotFound) {
      spdlog::warn("open of inode {} failed: {}", ino, st.ToString());
      (void)ns_->Release(ino);
    }
    return ReplyStatus(req, st);
  }
  fuse_reply_open(req, fi);
}

void ShardFs::Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                     fuse_file_info* fi) {
  if (ReadOnlyReject(req)) return;
  MknodRequest r;
  r.parent = parent;
  r.name = name;
  r.type = FileType::kRegular;
  r.mode = CreateMode(req, mode);
  r.caller = CallerOf(req);
  r.replication_goal = options_.replicas;
  auto created = ns_->CreateAndOpen(r);  // one round trip
  if (!created.ok()) return ReplyStatus(req, created.status());
  const InodeAttrs* attrs = &created->attrs;
  xattr_absent_.NoteNoXattrs(attrs->ino);
  entries_.Added(parent, name, *attrs);
  Status st = OpenHandle(attrs->ino, fi, OpenFile::Created(data_path_, *created));
  if (!st.ok()) {
    (void)ns_->Release(attrs->ino);
    return ReplyStatus(req, st);
  }
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = attrs->ino;
  e.generation = 1;
  e.attr = ToStat(*attrs);
  e.attr_timeout = options_.attr_timeout;
  e.entry_timeout = options_.entry_timeout;
  fuse_reply_create(req, &e, fi);
}

void ShardFs::Read(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  auto* handle = reinterpret_cast<Handle*>(fi->fh);
  auto bytes = handle->file->Read(static_cast<uint64_t>(off), size);
  if (!bytes.ok()) return ReplyStatus(req, bytes.status());
  fuse_reply_buf(req, bytes->data(), bytes->size());
}

void ShardFs::Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                    fuse_file_info* fi) {
  auto* handle = reinterpret_cast<Handle*>(fi->fh);
  Status st = handle->file->Write(static_cast<uint64_t>(off), std::string_view(buf, size));
  entries_.Changed(ino);
  if (!st.ok()) return ReplyStatus(req, st);
  fuse_reply_write(req, size);
}

// Only SEEK_DATA and SEEK_HOLE reach here; the kernel does the others. cp,
// tar and rsync use them to skip a sparse file's holes instead of reading
// zeros.
void ShardFs::Lseek(fuse_req_t req, fuse_ino_t /*ino*/, off_t off, int whence, fuse_file_info* fi) {
  if (off < 0 || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
    return (void)fuse_reply_err(req, EINVAL);
  }
  auto* handle = reinterpret_cast<Handle*>(fi->fh);
  auto at = whence == SEEK_DATA ? handle->file->SeekData(static_cast<uint64_t>(off))
                                : handle->file->SeekHole(static_cast<uint64_t>(off));
  if (!at.ok()) return ReplyStatus(req, at.status());
  if (!*at) return (void)fuse_reply_err(req, ENXIO);
  fuse_reply_lseek(req, static_cast<off_t>(**at));
}

void ShardFs::Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* handle = reinterpret_cast<Handle*>(fi->fh);
  ReplyStatus(req, FlushFile(ino, *handle->file, false));
}

void ShardFs::Fsync(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, fuse_file_info* fi) {
  auto* handle = reinterpret_cast<Handle*>(fi->fh);
  ReplyStatus(req, FlushFile(ino, *handle->file, true));
}

Status ShardFs::FlushFile(uint64_t ino, OpenFile& file, bool sync) {
  const bool wrote = file.dirty();
  Status st = file.Flush(sync);
  // The commit changed its size and mtime at the registry.
  if (wrote) entries_.Changed(ino);
  return st;
}

Status ShardFs::CloseHandle(uint64_t ino, fuse_file_info* fi) {
  std::unique_ptr<Handle> handle(reinterpret_cast<Handle*>(fi->fh));
  fi->fh = 0;
  Status st = FlushFile(ino, *handle->file, false);
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = open_files_.find(ino);
  if (it != open_files_.end() && --it->second.handles == 0) {
    // Keep the OpenFile while unflushed data remains (a failed flush).
    if (!it->second.file->dirty()) {
      if (auto sole = it->second.file->SoleShard()) {
        recent_shards_.Remember(ino, *sole);
      } else {
        recent_shards_.Forget(ino);
      }
      open_files_.erase(it);
    }
  }
  return st;
}

void ShardFs::Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Status st = CloseHandle(ino, fi);
  if (!st.ok()) spdlog::error("release of inode {}: {}", ino, st.ToString());
  Status released = ns_->Release(ino);
  if (!released.ok()) spdlog::warn("release of inode {}: {}", ino, released.ToString());
  fuse_reply_err(req, 0);
}

void ShardFs::OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto listing = std::make_unique<DirListing>();
  listing->ino = ino;
  // The whole listing is here anyway: the lookups of a walk through it
  // (ls -l, find, diff -r) can be answered from it.
  EntryCache::Ticket ticket = entries_.Begin(ino);
  auto entries = ListDir(ino, SIZE_MAX);
  if (!entries.ok()) {
    entries_.Abandon(ticket);
    return ReplyStatus(req, entries.status());
  }
  listing->entries = std::move(*entries);
  entries_.Store(ticket, listing->entries);
  fi->fh = reinterpret_cast<uint64_t>(listing.release());
  fuse_reply_open(req, fi);
}

void ShardFs::ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                      bool plus) {
  auto* listing = reinterpret_cast<DirListing*>(fi->fh);
  std::string buf(size, '\0');
  size_t used = 0;
  // Offsets: 0 ".", 1 "..", then entry i at i + 2; an entry's offset field
  // is the offset of the next one.
  for (size_t i = static_cast<size_t>(off); i < listing->entries.size() + 2; ++i) {
    const char* name;
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    const DirEntry* entry = nullptr;
    if (i == 0) {
      name = ".";
      st.st_ino = ino;
      st.st_mode = S_IFDIR;
    } else if (i == 1) {
      name = "..";
      st.st_ino = 1;  // the kernel resolves ".." itself; any directory will do
      st.st_mode = S_IFDIR;
    } else {
      entry = &listing->entries[i - 2];
      name = entry->name.c_str();
      if (entry->attrs) {
        st = ToStat(*entry->attrs);
      } else {
        st.st_ino = entry->ino;
        st.st_mode = FileTypeToModeBits(entry->type);
      }
    }
    size_t n;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      e.attr = st;
      if (entry != nullptr && entry->attrs) {
        e.ino = entry->ino;
        e.generation = 1;
        e.attr_timeout = options_.attr_timeout;
        e.entry_timeout = options_.entry_timeout;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e,
                                 static_cast<off_t>(i + 1));
    } else {
      n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st,
                            static_cast<off_t>(i + 1));
    }
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ShardFs::ReleaseDir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  delete reinterpret_cast<DirListing*>(fi->fh);
  fuse_reply_err(req, 0);
}

void ShardFs::StatFs(fuse_req_t req, fuse_ino_t /*ino*/) {
  auto r = ns_->StatFs();
  if (!r.ok()) return ReplyStatus(req, r.status());
  struct statvfs st;
  std::memset(&st, 0, sizeof(st));
  const uint64_t block = 4096;
  st.f_bsize = 1 << 20;
  st.f_frsize = block;
  st.f_blocks = r->total_bytes / block;
  st.f_bfree = r->free_bytes / block;
  st.f_bavail = r->free_bytes / block;
  st.f_files = r->inodes + (1ull << 32);
  st.f_ffree = 1ull << 32;
  st.f_favail = 1ull << 32;
  st.f_namemax = kMaxNameLength;
  fuse_reply_statfs(req, &st);
}

// A file's replication goal, as a virtual xattr (like CephFS's ceph.*
// attributes): readable and settable, not listed, so `cp -a` does not copy it.
// "0" means the cluster default.
constexpr std::string_view kReplicasXattr = "user.shardfs.replicas";

void ShardFs::SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                       size_t size, int flags) {
  if (ReadOnlyReject(req)) return;
  if (name == kReplicasXattr) {
    const std::string text(value, size);
    char* end = nullptr;
    const unsigned long goal = std::strtoul(text.c_str(), &end, 10);
    if (text.empty() || end == text.c_str() || (*end != '\0' && *end != '\n') || goal < 1 ||
        goal > kMaxReplicas) {
      return (void)fuse_reply_err(req, EINVAL);
    }
    Status st = ns_->SetReplicas(SetReplicasRequest{ino, static_cast<uint32_t>(goal), false});
    entries_.Changed(ino);
    return ReplyStatus(req, st);
  }
  uint32_t wire = 0;
  if (flags & XATTR_CREATE) wire |= kXattrCreate;
  if (flags & XATTR_REPLACE) wire |= kXattrReplace;
  // Before and after: an ENODATA answer crossing the change is not kept.
  xattr_absent_.Invalidate(ino);
  Status st = ns_->SetXattr(ino, name, std::string(value, size), wire);
  xattr_absent_.Invalidate(ino);
  dir_attrs_.Forget(ino);  // its ctime changed
  entries_.Changed(ino);
  ReplyStatus(req, st);
}

void ShardFs::GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Result<std::string> value = std::string();
  if (name == kReplicasXattr) {
    auto attrs = ns_->GetAttr(ino);
    if (!attrs.ok()) return ReplyStatus(req, attrs.status());
    value = std::to_string(attrs->replication_goal);
  } else if (xattr_absent_.KnownAbsent(ino, name)) {
    return (void)fuse_reply_err(req, ENODATA);
  } else {
    const uint64_t version = xattr_absent_.Version();
    spdlog::debug("getxattr {} of inode {}: asking the registry", name, ino);
    value = ns_->GetXattr(ino, name);
    if (!value.ok() && value.status().code() == ErrorCode::kNoData) {
      xattr_absent_.NoteAbsent(ino, name, version);
    }
  }
  if (!value.ok()) return ReplyStatus(req, value.status());
  if (size == 0) return (void)fuse_reply_xattr(req, value->size());
  if (value->size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value->data(), value->size());
}

void ShardFs::ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto names = ns_->ListXattr(ino);
  if (!names.ok()) return ReplyStatus(req, names.status());
  std::string joined;
  for (const auto& n : *names) {
    joined.append(n);
    joined.push_back('\0');
  }
  if (size == 0) return (void)fuse_reply_xattr(req, joined.size());
  if (joined.size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, joined.data(), joined.size());
}

void ShardFs::RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (ReadOnlyReject(req)) return;
  xattr_absent_.Invalidate(ino);
  Status st = ns_->RemoveXattr(ino, name);
  xattr_absent_.Invalidate(ino);
  dir_attrs_.Forget(ino);  // its ctime changed
  entries_.Changed(ino);
  ReplyStatus(req, st);
}

const fuse_lowlevel_ops* ShardFs::Operations() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof(o));
    o.init = [](void* userdata, fuse_conn_info* conn) {
      static_cast<ShardFs*>(userdata)->Init(conn);
    };
    o.destroy = [](void* userdata) { static_cast<ShardFs*>(userdata)->FlushAll(); };
    o.lookup = [](fuse_req_t req, fuse_ino_t p, const char* n) { Self(req)->Lookup(req, p, n); };
    o.forget = [](fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); };
    o.getattr = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
      Self(req)->GetAttr(req, ino);
    };
    o.setattr = [](fuse_req_t req, fuse_ino_t ino, struct stat* a, int s, fuse_file_info* fi) {
      Self(req)->SetAttr(req, ino, a, s, fi);
    };
    o.readlink = [](fuse_req_t req, fuse_ino_t ino) { Self(req)->Readlink(req, ino); };
    o.mknod = [](fuse_req_t req, fuse_ino_t p, const char* n, mode_t m, dev_t r) {
      Self(req)->Mknod(req, p, n, m, r);
    };
    o.mkdir = [](fuse_req_t req, fuse_ino_t p, const char* n, mode_t m) {
      Self(req)->Mkdir(req, p, n, m);
    };
    o.unlink = [](fuse_req_t req, fuse_ino_t p, const char* n) { Self(req)->Unlink(req, p, n); };
    o.rmdir = [](fuse_req_t req, fuse_ino_t p, const char* n) { Self(req)->Rmdir(req, p, n); };
    o.symlink = [](fuse_req_t req, const char* l, fuse_ino_t p, const char* n) {
      Self(req)->Symlink(req, l, p, n);
    };
    o.rename = [](fuse_req_t req, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn,
                  unsigned int f) { Self(req)->Rename(req, p, n, np, nn, f); };
    o.link = [](fuse_req_t req, fuse_ino_t ino, fuse_ino_t np, const char* nn) {
      Self(req)->Link(req, ino, np, nn);
    };
    o.open = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Self(req)->Open(req, ino, fi);
    };
    o.create = [](fuse_req_t req, fuse_ino_t p, const char* n, mode_t m, fuse_file_info* fi) {
      Self(req)->Create(req, p, n, m, fi);
    };
    o.read = [](fuse_req_t req, fuse_ino_t ino, size_t s, off_t off, fuse_file_info* fi) {
      Self(req)->Read(req, ino, s, off, fi);
    };
    o.write = [](fuse_req_t req, fuse_ino_t ino, const char* b, size_t s, off_t off,
                 fuse_file_info* fi) { Self(req)->Write(req, ino, b, s, off, fi); };
    o.lseek = [](fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
      Self(req)->Lseek(req, ino, off, whence, fi);
    };
    o.flush = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Self(req)->Flush(req, ino, fi);
    };
    o.release = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Self(req)->Release(req, ino, fi);
    };
    o.fsync = [](fuse_req_t req, fuse_ino_t ino, int d, fuse_file_info* fi) {
      Self(req)->Fsync(req, ino, d, fi);
    };
    o.opendir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Self(req)->OpenDir(req, ino, fi);
    };
    o.readdir = [](fuse_req_t req, fuse_ino_t ino, size_t s, off_t off, fuse_file_info* fi) {
      Self(req)->ReadDir(req, ino, s, off, fi, false);
    };
    o.readdirplus = [](fuse_req_t req, fuse_ino_t ino, size_t s, off_t off, fuse_file_info* fi) {
      Self(req)->ReadDir(req, ino, s, off, fi, true);
    };
    o.releasedir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Self(req)->ReleaseDir(req, ino, fi);
    };
    o.statfs = [](fuse_req_t req, fuse_ino_t ino) { Self(req)->StatFs(req, ino); };
    o.setxattr = [](fuse_req_t req, fuse_ino_t ino, const char* n, const char* v, size_t s, int f) {
      Self(req)->SetXattr(req, ino, n, v, s, f);
    };
    o.getxattr = [](fuse_req_t req, fuse_ino_t ino, const char* n, size_t s) {
      Self(req)->GetXattr(req, ino, n, s);
    };
    o.listxattr = [](fuse_req_t req, fuse_ino_t ino, size_t s) {
      Self(req)->ListXattr(req, ino, s);
    };
    o.removexattr = [](fuse_req_t req, fuse_ino_t ino, const char* n) {
      Self(req)->RemoveXattr(req, ino, n);
    };
    return o;
  }();
  return &ops;
}

}  // namespace shardfs
