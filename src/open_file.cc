#include "src/open_file.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "src/block_checksum.h"

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kTablePage = 1024;

ShardKey KeyOf(uint64_t ino, const ShardEntry& e) {
  return ShardKey{ino, e.index, e.generation};
}

}  // namespace

// ---- DirtyRanges ----

void DirtyRanges::Write(uint64_t offset, std::string_view data) {
  if (data.empty()) return;
  const uint64_t end = offset + data.size();
  // Fast paths: appending to the range that ends here, or overwriting inside
  // one range; both keep sequential writes linear.
  auto next = ranges_.upper_bound(offset);
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    uint64_t prev_end = prev->first + prev->second.size();
    if (prev_end >= end) {
      std::memcpy(prev->second.data() + (offset - prev->first), data.data(), data.size());
      return;
    }
    if (prev_end == offset && (next == ranges_.end() || next->first > end)) {
      prev->second.append(data);
      bytes_ += data.size();
      return;
    }
  }
  // General case: merge with every range that overlaps or touches.
  uint64_t start = offset;
  std::string merged;
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.size() >= offset) it = prev;
  }
  std::string tail;
  while (it != ranges_.end() && it->first <= end) {
    uint64_t r_start = it->first;
    uint64_t r_end = r_start + it->second.size();
    if (r_start < start) {
      start = r_start;
      merged = it->second.substr(0, offset - r_start);
    }
    if (r_end > end) tail = it->second.substr(end - r_start);
    bytes_ -= it->second.size();
    it = ranges_.erase(it);
  }
  merged.append(data);
  merged.append(tail);
  bytes_ += merged.size();
  ranges_.emplace(start, std::move(merged));
}

void DirtyRanges::Truncate(uint64_t length) {
  auto it = ranges_.lower_bound(length);
  while (it != ranges_.end()) {
    bytes_ -= it->second.size();
    it = ranges_.erase(it);
  }
  if (!ranges_.empty()) {
    auto& last = *ranges_.rbegin();
    if (last.first + last.second.size() > length) {
      bytes_ -= last.second.size() - (length - last.first);
      last.second.resize(length - last.first);
    }
  }
}

bool DirtyRanges::Covers(uint64_t length) const {
  if (length == 0) return true;
  // Ranges never touch, so coverage means a single range from 0.
  return !ranges_.empty() && ranges_.begin()->first == 0 &&
         ranges_.begin()->second.size() >= length;
}

void DirtyRanges::Overlay(uint64_t offset, std::span<char> out) const {
  const uint64_t end = offset + out.size();
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) --it;
  for (; it != ranges_.end() && it->first < end; ++it) {
    uint64_t r_start = it->first;
    uint64_t r_end = r_start + it->second.size();
    uint64_t from = std::max(offset, r_start);
    uint64_t to = std::min(end, r_end);
    if (from >= to) continue;
    std::memcpy(out.data() + (from - offset), it->second.data() + (from - r_start), to - from);
  }
}

// ---- OpenFile ----

Result<std::shared_ptr<OpenFile>> OpenFile::Load(DataPath& data_path, uint64_t ino) {
  std::shared_ptr<OpenFile> file(new OpenFile(data_path, ino));
  std::unique_lock<std::shared_mutex> lock(file->mu_);
  SHARDFS_RETURN_IF_ERROR(file->LoadLocked());
  return file;
}

Status OpenFile::LoadLocked() {
  std::map<uint32_t, ShardEntry> table;
  InodeAttrs attrs;
  uint32_t first = 0;
  while (true) {
    SHARDFS_ASSIGN_OR_RETURN(ShardTableReply page, dp_.ns->GetShardTable(ino_, first, kTablePage));
    attrs = page.attrs;
    dp_.directory->Learn(page.nodes);
    for (auto& e : page.shards) table[e.index] = std::move(e);
    uint64_t shard_size = attrs.shard_size ? attrs.shard_size : kDefaultShardSize;
    uint64_t shard_count = (attrs.size + shard_size - 1) / shard_size;
    first += kTablePage;
    if (first >= shard_count) break;
  }
  attrs_ = attrs;
  table_ = std::move(table);
  return Status::Ok();
}

Status OpenFile::Refresh() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (!dirty_.empty() || !stored_.empty() || size_changed_) return Status::Ok();
  return LoadLocked();
}

InodeAttrs OpenFile::attrs() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return attrs_;
}

bool OpenFile::dirty() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return !dirty_.empty() || !stored_.empty() || size_changed_;
}

Status OpenFile::ReadShardLocked(uint32_t index, uint64_t offset, std::span<char> out) {
  std::memset(out.data(), 0, out.size());
  auto it = table_.find(index);
  if (it != table_.end() && offset < it->second.length) {
    const ShardEntry& entry = it->second;
    uint64_t want = std::min<uint64_t>(out.size(), entry.length - offset);
    // The replicas whose endpoint is known, with their node ids alongside,
    // so a failure (indexed into `endpoints`) can be reported by node id.
    std::vector<std::string> ids;
    std::vector<std::string> endpoints;
    for (const auto& id : entry.replicas) {
      if (auto ep = dp_.directory->Endpoint(id)) {
        ids.push_back(id);
        endpoints.push_back(*ep);
      }
    }
    auto start = Clock::now();
    std::vector<std::pair<size_t, Status>> failures;
    auto read = dp_.nodes->GetFromAny(endpoints, KeyOf(ino_, entry), offset, want,
                                      dp_.latency->HedgeDelay(), &failures);
    for (const auto& [replica, status] : failures) {
      spdlog::warn("replica {} of {}: {}", endpoints[replica], KeyOf(ino_, entry).ToString(),
                   status.ToString());
      if (status.code() == ErrorCode::kCorrupt) {
        NoteBadReplica(ids[replica], KeyOf(ino_, entry), status);
      }
    }
    if (!read.ok()) return read.status();
    if (read->replica_index == 0) {
      dp_.latency->Record(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start));
    }
    if (read->bytes.size() != want) {
      return Status::Error(ErrorCode::kIoError,
                           "short read from a replica of " + KeyOf(ino_, entry).ToString());
    }
    std::memcpy(out.data(), read->bytes.data(), want);
  }
  auto d = dirty_.find(index);
  if (d != dirty_.end()) d->second.Overlay(offset, out);
  return Status::Ok();
}

void OpenFile::NoteBadReplica(const std::string& node_id, const ShardKey& key,
                              const Status& status) {
  std::lock_guard<std::mutex> lock(reports_mu_);
  if (!reported_.insert({node_id, key}).second) return;
  unsent_reports_.push_back({node_id, key, status.ToString()});
}

void OpenFile::SendBadReplicaReports() {
  std::vector<BadReplica> reports;
  {
    std::lock_guard<std::mutex> lock(reports_mu_);
    reports.swap(unsent_reports_);
  }
  for (auto& r : reports) {
    Status st = dp_.ns->ReportBadReplica(r.node_id, r.key, std::move(r.reason));
    if (st.ok()) {
      spdlog::info("reported bad replica {} of {}", r.node_id, r.key.ToString());
    } else {
      spdlog::warn("cannot report bad replica {} of {}: {}", r.node_id, r.key.ToString(),
                   st.ToString());
    }
  }
}

Result<std::string> OpenFile::Read(uint64_t offset, uint64_t length) {
  Result<std::string> result = [&]() -> Result<std::string> {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (offset >= attrs_.size) return std::string();
    length = std::min(length, attrs_.size - offset);
    std::string out(length, '\0');
    const uint64_t shard_size = ShardSize();
    uint64_t done = 0;
    while (done < length) {
      uint64_t pos = offset + done;
      uint32_t index = static_cast<uint32_t>(pos / shard_size);
      uint64_t in_shard = pos % shard_size;
      uint64_t n = std::min(length - done, shard_size - in_shard);
      SHARDFS_RETURN_IF_ERROR(
          ReadShardLocked(index, in_shard, std::span<char>(out.data() + done, n)));
      done += n;
    }
    return out;
  }();
  // The read has its answer; reports (rare: one per bad replica and key)
  // go out now, outside the lock.
  SendBadReplicaReports();
  return result;
}

Status OpenFile::Write(uint64_t offset, std::string_view data) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  const uint64_t shard_size = ShardSize();
  if ((offset + data.size()) / shard_size > UINT32_MAX) {
    return Status::Error(ErrorCode::kTooLarge, "write past the largest file size");
  }
  uint64_t done = 0;
  std::vector<uint32_t> complete;
  while (done < data.size()) {
    uint64_t pos = offset + done;
    uint32_t index = static_cast<uint32_t>(pos / shard_size);
    uint64_t in_shard = pos % shard_size;
    uint64_t n = std::min<uint64_t>(data.size() - done, shard_size - in_shard);
    DirtyRanges& ranges = dirty_[index];
    uint64_t before = ranges.bytes();
    ranges.Write(in_shard, data.substr(done, n));
    dirty_bytes_ += ranges.bytes() - before;
    if (ranges.Covers(shard_size)) complete.push_back(index);
    done += n;
  }
  if (offset + data.size() > attrs_.size) {
    attrs_.size = offset + data.size();
    size_changed_ = true;
  }
  // A full shard will not change again in a sequential write: store it now,
  // so memory stays bounded and the nodes work while the writer goes on.
  for (uint32_t index : complete) SHARDFS_RETURN_IF_ERROR(StoreShardLocked(index, false));
  if (dirty_bytes_ > dp_.max_dirty_bytes) SHARDFS_RETURN_IF_ERROR(StoreAllLocked(false));
  return Status::Ok();
}

Status OpenFile::StoreAllLocked(bool sync) {
  while (!dirty_.empty()) {
    SHARDFS_RETURN_IF_ERROR(StoreShardLocked(dirty_.begin()->first, sync));
  }
  return Status::Ok();
}

Status OpenFile::StoreFullLocked(uint32_t index, std::string data, bool sync) {
  SHARDFS_ASSIGN_OR_RETURN(AllocateShardsReply alloc,
                           dp_.ns->AllocateShards(AllocateShardsRequest{ino_, {index}}));
  if (alloc.placements.size() != 1 || alloc.placements[0].index != index) {
    return Status::Error(ErrorCode::kInternal, "registry placed other shards than asked");
  }
  dp_.directory->Learn(alloc.nodes);
  const ShardPlacement& placement = alloc.placements[0];
  std::vector<std::string> ids;
  std::vector<std::string> endpoints;
  for (const auto& id : placement.replicas) {
    if (auto ep = dp_.directory->Endpoint(id)) {
      ids.push_back(id);
      endpoints.push_back(*ep);
    }
  }
  if (ids.size() < alloc.min_replicas) {
    return Status::Error(ErrorCode::kUnavailable,
                         "only " + std::to_string(ids.size()) + " nodes to write to, " +
                             std::to_string(alloc.min_replicas) + " needed");
  }
  const uint64_t checksum = ShardChecksum(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  ShardEntry entry{index, placement.generation, data.size(), checksum, {}};
  auto results = dp_.nodes->PutToAll(endpoints, KeyOf(ino_, entry), data, sync, checksum);
  Status last;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      entry.replicas.push_back(ids[i]);
    } else {
      last = results[i];
      spdlog::warn("storing {} on {} failed: {}", KeyOf(ino_, entry).ToString(), endpoints[i],
                   results[i].ToString());
    }
  }
  if (entry.replicas.size() < alloc.min_replicas) {
    return Status::Error(ErrorCode::kUnavailable, "shard stored on " +
                                                      std::to_string(entry.replicas.size()) +
                                                      " of " + std::to_string(alloc.min_replicas) +
                                                      " required nodes: " + last.ToString());
  }
  if (!sync) unsynced_[KeyOf(ino_, entry)] = entry.replicas;
  table_[index] = entry;
  stored_[index] = std::move(entry);
  return Status::Ok();
}

Status OpenFile::StoreShardLocked(uint32_t index, bool sync) {
  auto d = dirty_.find(index);
  if (d == dirty_.end()) return Status::Ok();
  const uint64_t shard_size = ShardSize();
  const uint64_t shard_start = static_cast<uint64_t>(index) * shard_size;
  DirtyRanges ranges = std::move(d->second);
  dirty_.erase(d);
  dirty_bytes_ -= ranges.bytes();
  if (attrs_.size <= shard_start) return Status::Ok();  // cut off by a truncate
  const uint64_t new_length = std::min(shard_size, attrs_.size - shard_start);
  ranges.Truncate(new_length);

  auto base = table_.find(index);
  const bool has_base = base != table_.end() && base->second.length > 0;
  if (ranges.Covers(new_length) || !has_base) {
    // The whole shard is known here (written, or zeros where nothing was).
    std::string data;
    if (ranges.Covers(new_length) && ranges.ranges().size() == 1) {
      data = std::move(ranges.mutable_ranges().begin()->second);
      data.resize(new_length);
    } else {
      data.assign(new_length, '\0');
      ranges.Overlay(0, std::span<char>(data.data(), data.size()));
    }
    return StoreFullLocked(index, std::move(data), sync);
  }

  // A partial rewrite: each replica of the old generation builds the new one
  // from its local copy plus the patches. Bytes past the old entry's length
  // must read as zeros, so those gaps are patched with zeros.
  const ShardEntry old = base->second;
  std::vector<PutPatchedShardRequest::Patch> patches;
  std::string payload;
  uint64_t pos = old.length;
  for (const auto& [start, bytes] : ranges.ranges()) {
    uint64_t end = start + bytes.size();
    if (start > pos && pos < new_length) {
      uint64_t gap_end = std::min(start, new_length);
      patches.push_back({pos, gap_end - pos});
      payload.append(gap_end - pos, '\0');
    }
    pos = std::max(pos, end);
  }
  if (pos < new_length) {
    patches.push_back({pos, new_length - pos});
    payload.append(new_length - pos, '\0');
  }
  for (const auto& [start, bytes] : ranges.ranges()) {
    patches.push_back({start, bytes.size()});
    payload.append(bytes);
  }

  SHARDFS_ASSIGN_OR_RETURN(AllocateShardsReply alloc,
                           dp_.ns->AllocateShards(AllocateShardsRequest{ino_, {index}}));
  if (alloc.placements.size() != 1) {
    return Status::Error(ErrorCode::kInternal, "registry placed other shards than asked");
  }
  dp_.directory->Learn(alloc.nodes);
  PutPatchedShardRequest req;
  req.key = ShardKey{ino_, index, alloc.placements[0].generation};
  req.base = KeyOf(ino_, old);
  req.new_length = new_length;
  req.sync = sync;
  req.patches = patches;
  std::vector<std::string> ids;
  std::vector<std::string> endpoints;
  for (const auto& id : old.replicas) {
    if (auto ep = dp_.directory->Endpoint(id)) {
      ids.push_back(id);
      endpoints.push_back(*ep);
    }
  }
  auto results = dp_.nodes->PutPatchedToAll(endpoints, req, payload);
  ShardEntry entry{index, req.key.generation, new_length, 0, {}};
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) continue;
    if (!entry.replicas.empty() && results[i]->checksum != entry.checksum) {
      return Status::Error(ErrorCode::kCorrupt, "replicas of " + req.base.ToString() + " differ");
    }
    entry.checksum = results[i]->checksum;
    entry.replicas.push_back(ids[i]);
  }
  if (entry.replicas.size() >= alloc.min_replicas) {
    if (!sync) unsynced_[KeyOf(ino_, entry)] = entry.replicas;
    table_[index] = entry;
    stored_[index] = std::move(entry);
    return Status::Ok();
  }
  // Too few holders of the old generation answered: rebuild the whole shard
  // here from any readable copy and store it on fresh nodes.
  spdlog::info("patching {} reached {} replicas; rewriting it whole", req.base.ToString(),
               entry.replicas.size());
  std::string data(new_length, '\0');
  SHARDFS_RETURN_IF_ERROR(
      ReadShardLocked(index, 0, std::span<char>(data.data(), std::min(new_length, old.length))));
  ranges.Overlay(0, std::span<char>(data.data(), data.size()));
  return StoreFullLocked(index, std::move(data), sync);
}

Status OpenFile::CommitLocked() {
  if (stored_.empty() && !size_changed_) return Status::Ok();
  CommitShardsRequest req;
  req.ino = ino_;
  req.size = attrs_.size;
  for (auto& [index, entry] : stored_) req.shards.push_back(entry);
  SHARDFS_ASSIGN_OR_RETURN(InodeAttrs attrs, dp_.ns->CommitShards(req));
  stored_.clear();
  size_changed_ = false;
  attrs_ = attrs;
  return Status::Ok();
}

Status OpenFile::SyncStoredLocked() {
  // Only generations still current matter; superseded ones are garbage.
  std::map<std::string, SyncShardsRequest> by_node;  // endpoint -> keys
  std::map<ShardKey, size_t> wanted;                 // key -> replicas that must sync
  for (const auto& [key, replicas] : unsynced_) {
    auto cur = table_.find(key.index);
    if (cur == table_.end() || cur->second.generation != key.generation) continue;
    for (const std::string& id : replicas) {
      if (auto ep = dp_.directory->Endpoint(id)) by_node[*ep].keys.push_back(key);
    }
    wanted[key] = std::min<size_t>(2, replicas.size());
  }
  std::vector<std::pair<std::string, SyncShardsRequest>> requests(by_node.begin(), by_node.end());
  std::vector<Status> results = dp_.nodes->SyncOnAll(requests);
  std::map<ShardKey, size_t> synced;
  Status last;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      last = results[i];
      spdlog::warn("fsync of {} shard(s) on {} failed: {}", requests[i].second.keys.size(),
                   requests[i].first, results[i].ToString());
      continue;
    }
    for (const ShardKey& key : requests[i].second.keys) synced[key]++;
  }
  for (const auto& [key, need] : wanted) {
    if (synced[key] < need) {
      return Status::Error(ErrorCode::kIoError, "shard " + key.ToString() + " is durable on " +
                                                    std::to_string(synced[key]) + " node(s), " +
                                                    std::to_string(need) +
                                                    " needed: " + last.ToString());
    }
  }
  unsynced_.clear();
  return Status::Ok();
}

Status OpenFile::Flush(bool sync) {
  Status st = [&]() -> Status {
    std::unique_lock<std::shared_mutex> lock(mu_);
    SHARDFS_RETURN_IF_ERROR(StoreAllLocked(sync));
    SHARDFS_RETURN_IF_ERROR(CommitLocked());
    // fsync covers what was written before it, also the shards stored
    // without sync as they filled up.
    if (sync && !unsynced_.empty()) return SyncStoredLocked();
    return Status::Ok();
  }();
  // A rewrite that fell back to reading the old shard may have met a bad
  // replica.
  SendBadReplicaReports();
  return st;
}

Status OpenFile::Truncate(uint64_t size) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  SHARDFS_RETURN_IF_ERROR(StoreAllLocked(false));
  SHARDFS_RETURN_IF_ERROR(CommitLocked());
  SetAttrRequest req;
  req.ino = ino_;
  req.mask = 1u << 3;  // kSetAttrSize
  req.size = size;
  SHARDFS_ASSIGN_OR_RETURN(InodeAttrs attrs, dp_.ns->SetAttr(req));
  (void)attrs;
  return LoadLocked();
}

}  // namespace shardfs
