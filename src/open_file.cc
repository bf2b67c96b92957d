#include "src/open_file.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "src/block_checksum.h"
#include "src/data_extents.h"

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

Result<std::shared_ptr<OpenFile>> OpenFile::Load(DataPath& data_path, uint64_t ino, bool open,
                                                 const ShardEntry* guess) {
  std::shared_ptr<OpenFile> file(new OpenFile(data_path, ino));
  std::unique_lock<std::shared_mutex> lock(file->mu_);
  if (guess != nullptr && guess->length > 0 && data_path.fetches != nullptr &&
      data_path.read_ahead != nullptr) {
    std::lock_guard<std::mutex> ra_lock(file->ra_mu_);
    if (file->StartPrefetchLocked(*guess, /*guessed=*/true) == PrefetchStart::kStarted) {
      spdlog::debug("fetching {} while the registry confirms it", KeyOf(ino, *guess).ToString());
    }
  }
  SHARDFS_RETURN_IF_ERROR(file->LoadLocked(open));
  return file;
}

std::shared_ptr<OpenFile> OpenFile::Created(DataPath& data_path, CreateReply created) {
  std::shared_ptr<OpenFile> file(new OpenFile(data_path, created.attrs.ino));
  file->attrs_ = created.attrs;
  file->placed_at_create_ = std::move(created.first_shard);
  file->placed_at_create_unused_ = file->placed_at_create_.has_value();
  return file;
}

Status OpenFile::LoadLocked(bool open) {
  std::map<uint32_t, ShardEntry> table;
  InodeAttrs attrs;
  uint32_t first = 0;
  while (true) {
    SHARDFS_ASSIGN_OR_RETURN(ShardTableReply page,
                             first == 0 && open ? dp_.ns->OpenWithTable(ino_, kTablePage)
                                                : dp_.ns->GetShardTable(ino_, first, kTablePage));
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
  // Fetched bytes of generations the table no longer names would be
  // skipped by the generation check; dropping them frees their memory now.
  DropReadAheadNotIn(table_);
  return Status::Ok();
}

Status OpenFile::Refresh(bool open) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (HasUnsavedLocked()) {
    return open ? dp_.ns->Open(ino_).status() : Status::Ok();
  }
  return LoadLocked(open);
}

InodeAttrs OpenFile::attrs() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  InodeAttrs attrs = attrs_;
  // What unsaved writes will store is known at their commit; until then
  // count the whole size, as before sparse files were told apart.
  if (HasUnsavedLocked()) {
    attrs.stored_bytes = std::max(attrs.stored_bytes, attrs.size);
  }
  return attrs;
}

std::optional<ShardEntry> OpenFile::SoleShard() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (HasUnsavedLocked() || table_.size() != 1) return std::nullopt;
  const ShardEntry& only = table_.begin()->second;
  if (only.index != 0 || only.length != attrs_.size) return std::nullopt;
  return only;
}

bool OpenFile::dirty() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return HasUnsavedLocked() || !store_error_.ok();
}

bool OpenFile::HasUnsavedLocked() const {
  return !dirty_.empty() || !stored_.empty() || !storing_.empty() || size_changed_;
}

OpenFile::ReachableReplicas OpenFile::Reachable(const std::vector<std::string>& ids) const {
  ReachableReplicas r;
  for (const auto& id : ids) {
    if (auto ep = dp_.directory->Endpoint(id)) {
      r.ids.push_back(id);
      r.endpoints.push_back(*ep);
    }
  }
  return r;
}

Status OpenFile::ReadShardLocked(uint32_t index, uint64_t offset, std::span<char> out) {
  std::memset(out.data(), 0, out.size());
  // A completed shard still on its way to the nodes: it is all here, and
  // newer than what the table names.
  if (auto s = storing_.find(index); s != storing_.end()) {
    const std::string& data = *s->second;
    if (offset < data.size()) {
      std::memcpy(out.data(), data.data() + offset,
                  std::min<uint64_t>(out.size(), data.size() - offset));
    }
    if (auto d = dirty_.find(index); d != dirty_.end()) d->second.Overlay(offset, out);
    return Status::Ok();
  }
  auto it = table_.find(index);
  if (it != table_.end() && offset < it->second.length &&
      !ReadFromPrefetch(it->second, offset, out)) {
    const ShardEntry& entry = it->second;
    uint64_t want = std::min<uint64_t>(out.size(), entry.length - offset);
    auto [ids, endpoints] = Reachable(entry.replicas);
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
    // Before this read's own transfers, so the next shards travel meanwhile.
    ReadAheadLocked(offset, length);
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

std::optional<uint32_t> OpenFile::NextDataShardLocked(uint64_t from) const {
  if (from > UINT32_MAX) return std::nullopt;
  const auto first = static_cast<uint32_t>(from);
  // The lowest in any of the three; each map is ordered.
  std::optional<uint32_t> next;
  auto consider = [&](uint32_t index) { next = std::min(next.value_or(index), index); };
  for (auto it = table_.lower_bound(first); it != table_.end(); ++it) {
    if (it->second.length > 0) {
      consider(it->first);
      break;
    }
  }
  if (auto it = dirty_.lower_bound(first); it != dirty_.end()) consider(it->first);
  if (auto it = storing_.lower_bound(first); it != storing_.end()) consider(it->first);
  return next;
}

Result<std::vector<Extent>> OpenFile::DataInShardLocked(uint32_t index) {
  const uint64_t shard_size = ShardSize();
  const uint64_t start = uint64_t{index} * shard_size;
  const uint64_t in_file = attrs_.size > start ? std::min(shard_size, attrs_.size - start) : 0;
  if (in_file == 0) return std::vector<Extent>();
  // Bytes written here: all of it counts as data.
  if (dirty_.contains(index) || storing_.contains(index)) return std::vector<Extent>{{0, in_file}};
  auto it = table_.find(index);
  if (it == table_.end()) return std::vector<Extent>();
  const ShardEntry& entry = it->second;
  const uint64_t length = std::min(entry.length, in_file);
  if (length == 0) return std::vector<Extent>();
  // Past the entry's length the shard reads as zeros: a hole.
  if (!entry.data_bytes || *entry.data_bytes >= entry.length) {
    return std::vector<Extent>{{0, length}};
  }
  // The nodes keep holes inside this shard; where, their files tell. A walk
  // asks for SEEK_DATA and SEEK_HOLE of the same shard in turn, so the
  // answer is kept for the next call.
  const ShardKey key = KeyOf(ino_, entry);
  {
    std::lock_guard<std::mutex> seek_lock(seek_mu_);
    if (seek_extents_ && seek_extents_->key == key && seek_extents_->length == length) {
      return seek_extents_->extents;
    }
  }
  std::optional<std::vector<Extent>> found;
  // A replica knows its file's holes (and checks the blocks around them);
  // only when none can say are the bytes read and looked at here.
  auto [ids, endpoints] = Reachable(entry.replicas);
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const std::string& endpoint = endpoints[i];
    auto reply = dp_.nodes->Extents(endpoint, key);
    if (reply.ok()) {
      found.emplace();
      for (const Extent& e : reply->extents) {
        if (e.offset < length)
          AppendExtent(&*found, {e.offset, std::min(e.end(), length) - e.offset});
      }
      break;
    }
    if (reply.status().code() == ErrorCode::kCorrupt) {
      NoteBadReplica(ids[i], key, reply.status());
    }
    spdlog::debug("holes of {} from {}: {}", key.ToString(), endpoint, reply.status().ToString());
  }
  if (!found) {
    std::string bytes(length, '\0');
    SHARDFS_RETURN_IF_ERROR(ReadShardLocked(index, 0, std::span<char>(bytes.data(), bytes.size())));
    found = NonZeroExtents(AsBytes(bytes), 0);
  }
  std::vector<Extent> extents = std::move(*found);
  std::lock_guard<std::mutex> seek_lock(seek_mu_);
  seek_extents_ = SeekExtents{key, length, extents};
  return extents;
}

Result<std::optional<uint64_t>> OpenFile::SeekData(uint64_t offset) {
  Result<std::optional<uint64_t>> result = [&]() -> Result<std::optional<uint64_t>> {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (offset >= attrs_.size) return std::optional<uint64_t>();
    const uint64_t shard_size = ShardSize();
    for (auto index = NextDataShardLocked(offset / shard_size); index;
         index = NextDataShardLocked(uint64_t{*index} + 1)) {
      const uint64_t start = uint64_t{*index} * shard_size;
      if (start >= attrs_.size) break;
      SHARDFS_ASSIGN_OR_RETURN(std::vector<Extent> extents, DataInShardLocked(*index));
      for (const Extent& extent : extents) {
        if (start + extent.end() <= offset) continue;
        const uint64_t at = std::max(offset, start + extent.offset);
        return at < attrs_.size ? std::optional<uint64_t>(at) : std::optional<uint64_t>();
      }
    }
    return std::optional<uint64_t>();
  }();
  SendBadReplicaReports();
  return result;
}

Result<std::optional<uint64_t>> OpenFile::SeekHole(uint64_t offset) {
  Result<std::optional<uint64_t>> result = [&]() -> Result<std::optional<uint64_t>> {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (offset >= attrs_.size) return std::optional<uint64_t>();
    const uint64_t shard_size = ShardSize();
    // Each step passes a shard that holds something, so this ends within the
    // number of such shards.
    for (uint64_t index = offset / shard_size;
         index <= UINT32_MAX && index * shard_size < attrs_.size; ++index) {
      const uint64_t start = index * shard_size;
      uint64_t pos = std::max(offset, start) - start;
      SHARDFS_ASSIGN_OR_RETURN(std::vector<Extent> extents,
                               DataInShardLocked(static_cast<uint32_t>(index)));
      for (const Extent& extent : extents) {
        if (pos < extent.offset) break;
        pos = std::max(pos, extent.end());
      }
      if (pos < shard_size) return std::optional<uint64_t>(std::min(attrs_.size, start + pos));
    }
    return std::optional<uint64_t>(attrs_.size);
  }();
  SendBadReplicaReports();
  return result;
}

Status OpenFile::Write(uint64_t offset, std::string_view data) {
  Lock lock(mu_);
  // A background store failed since the last write or flush: this write
  // fails with it (and buffers nothing), so the writer learns of it.
  SHARDFS_RETURN_IF_ERROR(TakeStoreErrorLocked());
  const uint64_t shard_size = ShardSize();
  if ((offset + data.size()) / shard_size > UINT32_MAX) {
    return Status::Error(ErrorCode::kTooLarge, "write past the largest file size");
  }
  DropReadAhead();
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
  for (uint32_t index : complete) SHARDFS_RETURN_IF_ERROR(StoreCompleteLocked(lock, index));
  if (dirty_bytes_ > dp_.max_dirty_bytes) SHARDFS_RETURN_IF_ERROR(StoreAllLocked(lock, false));
  return Status::Ok();
}

Status OpenFile::StoreAllLocked(Lock& lock, bool sync) {
  while (!dirty_.empty()) {
    SHARDFS_RETURN_IF_ERROR(StoreShardLocked(lock, dirty_.begin()->first, sync));
  }
  return Status::Ok();
}

void OpenFile::WaitForStoresLocked(Lock& lock) {
  store_done_.wait(lock, [&] { return storing_.empty(); });
}

Status OpenFile::TakeStoreErrorLocked() {
  return std::exchange(store_error_, Status::Ok());
}

Status OpenFile::StoreCompleteLocked(Lock& lock, uint32_t index) {
  if (dp_.stores == nullptr) return StoreShardLocked(lock, index, false);
  // One store per shard at a time (the later must win), and a few per file:
  // past that the writer waits, which bounds the memory a writer can fill.
  const size_t limit = std::max<size_t>(1, dp_.max_stores_in_flight);
  store_done_.wait(lock, [&] { return !storing_.contains(index) && storing_.size() < limit; });
  // The lock was free meanwhile: a flush may have stored the shard already.
  auto d = dirty_.find(index);
  if (d == dirty_.end()) return Status::Ok();
  const uint64_t shard_size = ShardSize();
  const uint64_t shard_start = static_cast<uint64_t>(index) * shard_size;
  DirtyRanges& ranges = d->second;
  if (attrs_.size < shard_start + shard_size || !ranges.Covers(shard_size) ||
      ranges.ranges().size() != 1) {
    return StoreShardLocked(lock, index, false);
  }
  std::string bytes = std::move(ranges.mutable_ranges().begin()->second);
  dirty_bytes_ -= ranges.bytes();
  dirty_.erase(d);
  bytes.resize(shard_size);
  auto data = std::make_shared<const std::string>(std::move(bytes));
  storing_[index] = data;
  dp_.stores->Submit([self = shared_from_this(), index, data = std::move(data)]() mutable {
    self->BackgroundStore(index, std::move(data));
  });
  return Status::Ok();
}

void OpenFile::BackgroundStore(uint32_t index, std::shared_ptr<const std::string> data) {
  // The network part runs unlocked: readers and the writer go on meanwhile.
  Result<ShardEntry> stored = PutFull(index, *data, false);
  Lock lock(mu_);
  storing_.erase(index);
  if (stored.ok()) {
    RecordStoredLocked(std::move(*stored), false);
  } else {
    spdlog::warn("storing shard {} of inode {} in the background failed: {}", index, ino_,
                 stored.status().ToString());
    if (store_error_.ok()) {
      store_error_ =
          Status::Error(ErrorCode::kIoError, "storing shard " + std::to_string(index) +
                                                 " failed: " + stored.status().ToString());
    }
    // Nothing the writer was told is written may vanish: the bytes become
    // dirty again, under any newer writes, for a later flush to store.
    DirtyRanges back;
    back.Write(0, *data);
    uint64_t newer_bytes = 0;
    if (auto d = dirty_.find(index); d != dirty_.end()) {
      newer_bytes = d->second.bytes();
      for (const auto& [start, bytes] : d->second.ranges()) back.Write(start, bytes);
    }
    dirty_bytes_ += back.bytes() - newer_bytes;
    dirty_[index] = std::move(back);
  }
  lock.unlock();
  store_done_.notify_all();
}

Result<ShardEntry> OpenFile::PutFull(uint32_t index, std::string_view data, bool sync) {
  if (index == 0 && placed_at_create_unused_.exchange(false)) {
    auto stored = PutPlaced(index, data, sync, *placed_at_create_);
    if (stored.ok()) return stored;
    // Placed at create, on nodes that may have gone since: ask afresh.
    spdlog::info(
        "storing shard 0 of inode {} where it was placed at create failed ({}); "
        "placing it again",
        ino_, stored.status().ToString());
  }
  SHARDFS_ASSIGN_OR_RETURN(AllocateShardsReply alloc,
                           dp_.ns->AllocateShards(AllocateShardsRequest{ino_, {index}}));
  return PutPlaced(index, data, sync, alloc);
}

Result<ShardEntry> OpenFile::PutPlaced(uint32_t index, std::string_view data, bool sync,
                                       const AllocateShardsReply& alloc) {
  if (alloc.placements.size() != 1 || alloc.placements[0].index != index) {
    return Status::Error(ErrorCode::kInternal, "registry placed other shards than asked");
  }
  dp_.directory->Learn(alloc.nodes);
  const ShardPlacement& placement = alloc.placements[0];
  auto [ids, endpoints] = Reachable(placement.replicas);
  if (ids.size() < alloc.min_replicas) {
    return Status::Error(ErrorCode::kUnavailable,
                         "only " + std::to_string(ids.size()) + " nodes to write to, " +
                             std::to_string(alloc.min_replicas) + " needed");
  }
  const std::span<const uint8_t> bytes = AsBytes(data);
  const uint64_t checksum = ShardChecksum(bytes);
  // The nodes leave the same pages out (ShardStore), so the count is theirs.
  ShardEntry entry{index,       placement.generation,
                   data.size(), checksum,
                   {},          TotalLength(NonZeroExtents(bytes, 0))};
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
  return entry;
}

Status OpenFile::StoreFullLocked(uint32_t index, std::string data, bool sync) {
  SHARDFS_ASSIGN_OR_RETURN(ShardEntry entry, PutFull(index, data, sync));
  RecordStoredLocked(std::move(entry), sync);
  return Status::Ok();
}

void OpenFile::RecordStoredLocked(ShardEntry entry, bool sync) {
  unsynced_->Stored(KeyOf(ino_, entry), entry.replicas, sync);
  table_[entry.index] = entry;
  stored_[entry.index] = std::move(entry);
}

Status OpenFile::StoreShardLocked(Lock& lock, uint32_t index, bool sync) {
  // A store of this shard in flight must land first: this one builds on it
  // (as the base of a patch) and must replace it in the table.
  store_done_.wait(lock, [&] { return !storing_.contains(index); });
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
  auto [ids, endpoints] = Reachable(old.replicas);
  auto results = dp_.nodes->PutPatchedToAll(endpoints, req, payload);
  ShardEntry entry{index, req.key.generation, new_length, 0, {}, std::nullopt};
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) continue;
    if (!entry.replicas.empty() && results[i]->checksum != entry.checksum) {
      return Status::Error(ErrorCode::kCorrupt, "replicas of " + req.base.ToString() + " differ");
    }
    entry.checksum = results[i]->checksum;
    // The replicas built it from their own copies of the base, which may
    // differ in holes (one written before nodes kept them): the most.
    entry.data_bytes = std::max(entry.data_bytes.value_or(0), results[i]->data_bytes);
    entry.replicas.push_back(ids[i]);
  }
  if (entry.replicas.size() >= alloc.min_replicas) {
    RecordStoredLocked(std::move(entry), sync);
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
  UnsyncedShards::Set current;
  std::vector<ShardKey> superseded;
  for (auto& [key, replicas] : unsynced_->OfInode(ino_)) {
    auto cur = table_.find(key.index);
    if (cur == table_.end() || cur->second.generation != key.generation) {
      superseded.push_back(key);
    } else {
      current.emplace(key, std::move(replicas));
    }
  }
  unsynced_->Forget(superseded);
  if (current.empty()) return Status::Ok();
  SyncOutcome outcome = SyncShardsOnNodes(*dp_.nodes, *dp_.directory, current);
  std::vector<ShardKey> synced;
  Status failed;
  for (const auto& [key, replicas] : current) {
    const size_t need = ReplicasToSync(replicas);
    const size_t got = outcome.synced[key];
    if (got >= need) {
      synced.push_back(key);
    } else if (failed.ok()) {
      failed = Status::Error(ErrorCode::kIoError, "shard " + key.ToString() + " is durable on " +
                                                      std::to_string(got) + " node(s), " +
                                                      std::to_string(need) +
                                                      " needed: " + outcome.last_error.ToString());
    }
  }
  // What failed stays, for the next fsync (or the background syncer).
  unsynced_->Forget(synced);
  return failed;
}

// ---- Read-ahead ----

void OpenFile::ReadAheadLocked(uint64_t offset, uint64_t length) {
  if (dp_.fetches == nullptr || dp_.read_ahead == nullptr || dp_.read_ahead_shards == 0) return;
  const uint64_t shard_size = ShardSize();
  std::lock_guard<std::mutex> ra_lock(ra_mu_);
  // Sequential means starting where a recent read ended. The kernel's own
  // read-ahead sends a few adjacent reads at once and worker threads may
  // take them out of order, hence several recent ends; a random reader
  // practically never lands exactly on one.
  const bool adjacent =
      std::find(recent_ends_.begin(), recent_ends_.end(), offset) != recent_ends_.end();
  sequential_streak_ = adjacent ? sequential_streak_ + 1 : 0;
  recent_ends_[next_end_++ % recent_ends_.size()] = offset + length;
  if (sequential_streak_ < 2) return;

  // Shards behind the reader are done with.
  const uint32_t first = static_cast<uint32_t>(offset / shard_size);
  ra_.erase(ra_.begin(), ra_.lower_bound(first));
  const uint32_t last = static_cast<uint32_t>((offset + length - 1) / shard_size);
  for (uint64_t i = uint64_t{last} + 1;
       i <= uint64_t{last} + dp_.read_ahead_shards && i * shard_size < attrs_.size; ++i) {
    const uint32_t index = static_cast<uint32_t>(i);
    if (ra_.contains(index)) continue;
    // Bytes this client holds itself need no fetching; a hole has none.
    if (storing_.contains(index) || dirty_.contains(index)) continue;
    auto it = table_.find(index);
    if (it == table_.end() || it->second.length == 0) continue;
    const PrefetchStart started = StartPrefetchLocked(it->second, /*guessed=*/false);
    // The client holds enough read-ahead already.
    if (started == PrefetchStart::kNoBudget) return;
    if (started == PrefetchStart::kStarted) {
      spdlog::debug("fetching {} for a sequential reader", KeyOf(ino_, it->second).ToString());
    }
  }
}

OpenFile::PrefetchStart OpenFile::StartPrefetchLocked(const ShardEntry& entry, bool guessed) {
  auto grant = dp_.read_ahead->TryReserve(entry.length);
  if (!grant) return PrefetchStart::kNoBudget;
  auto [ids, endpoints] = Reachable(entry.replicas);
  if (endpoints.empty()) return PrefetchStart::kNoReplica;
  auto prefetch = std::make_shared<Prefetch>();
  prefetch->key = KeyOf(ino_, entry);
  prefetch->checksum = entry.checksum;
  prefetch->guessed = guessed;
  prefetch->grant = std::move(*grant);
  ra_[entry.index] = prefetch;
  dp_.fetches->Submit([self = shared_from_this(), prefetch, ids = std::move(ids),
                       endpoints = std::move(endpoints), length = entry.length]() mutable {
    self->RunPrefetch(std::move(prefetch), std::move(ids), std::move(endpoints), length);
  });
  return PrefetchStart::kStarted;
}

std::chrono::milliseconds OpenFile::PrefetchPatience(uint64_t length) const {
  // A whole shard takes longer than the reads the hedge delay was learnt
  // from: scale it, so a healthy replica is not asked twice; but never past
  // the longest hedge delay.
  const auto scaled =
      dp_.latency->HedgeDelay() * static_cast<int>(std::max<uint64_t>(1, length >> 20));
  return std::min(scaled, std::chrono::milliseconds(2000));
}

void OpenFile::RunPrefetch(std::shared_ptr<Prefetch> prefetch, std::vector<std::string> ids,
                           std::vector<std::string> endpoints, uint64_t length) {
  const auto hedge = PrefetchPatience(length);
  std::vector<std::pair<size_t, Status>> failures;
  auto read = dp_.nodes->GetFromAny(endpoints, prefetch->key, 0, length, hedge, &failures);
  // A guessed generation the file no longer has is normally gone already.
  const auto level = prefetch->guessed ? spdlog::level::debug : spdlog::level::warn;
  for (const auto& [replica, status] : failures) {
    spdlog::log(level, "replica {} of {}: {}", endpoints[replica], prefetch->key.ToString(),
                status.ToString());
    if (status.code() == ErrorCode::kCorrupt) NoteBadReplica(ids[replica], prefetch->key, status);
  }
  Status st;
  if (!read.ok()) {
    st = read.status();
  } else if (read->bytes.size() != length) {
    st = Status::Error(ErrorCode::kIoError, "short read-ahead of " + prefetch->key.ToString());
  } else if (ShardChecksum(std::span<const uint8_t>(
                 reinterpret_cast<const uint8_t*>(read->bytes.data()), read->bytes.size())) !=
             prefetch->checksum) {
    // The node checked its blocks; this is the end-to-end check against the
    // table, which costs little with the whole shard at hand.
    st = Status::Error(ErrorCode::kCorrupt,
                       "read-ahead of " + prefetch->key.ToString() + " fails the table's checksum");
  }
  // Not reported as a bad replica: the reader that needs these bytes reads
  // them from the nodes, and reports what it finds.
  if (!st.ok()) spdlog::log(level, "read-ahead: {}", st.ToString());
  {
    std::lock_guard<std::mutex> ra_lock(ra_mu_);
    prefetch->done = true;
    prefetch->status = st;
    if (st.ok()) {
      prefetch->bytes = std::move(read->bytes);
    } else {
      // Readers go to the nodes themselves, with their own retries.
      auto it = ra_.find(prefetch->key.index);
      if (it != ra_.end() && it->second == prefetch) ra_.erase(it);
    }
  }
  ra_done_.notify_all();
  SendBadReplicaReports();
}

bool OpenFile::ReadFromPrefetch(const ShardEntry& entry, uint64_t offset, std::span<char> out) {
  if (dp_.fetches == nullptr) return false;
  std::unique_lock<std::mutex> ra_lock(ra_mu_);
  auto it = ra_.find(entry.index);
  if (it == ra_.end()) return false;
  std::shared_ptr<Prefetch> prefetch = it->second;
  // Only bytes of the generation this reader's table names.
  if (prefetch->key != KeyOf(ino_, entry)) return false;
  // On its way: waiting costs less than asking a node for the same bytes,
  // unless it is slow (a frozen replica): then the reader asks the nodes
  // itself, with its own hedging, so read-ahead never makes a read slower
  // than it would have been.
  if (!ra_done_.wait_for(ra_lock, PrefetchPatience(entry.length), [&] { return prefetch->done; })) {
    return false;
  }
  if (!prefetch->status.ok() || offset >= prefetch->bytes.size()) return false;
  const uint64_t n = std::min<uint64_t>(out.size(), prefetch->bytes.size() - offset);
  std::memcpy(out.data(), prefetch->bytes.data() + offset, n);
  return true;
}

void OpenFile::DropReadAheadNotIn(const std::map<uint32_t, ShardEntry>& table) {
  std::lock_guard<std::mutex> ra_lock(ra_mu_);
  std::erase_if(ra_, [&](const auto& fetched) {
    auto it = table.find(fetched.first);
    return it == table.end() || fetched.second->key != KeyOf(ino_, it->second) ||
           fetched.second->checksum != it->second.checksum;
  });
  sequential_streak_ = 0;
}

void OpenFile::DropReadAhead() {
  std::lock_guard<std::mutex> ra_lock(ra_mu_);
  // Fetches in flight keep their own reference and finish into nothing.
  ra_.clear();
  sequential_streak_ = 0;
}

Status OpenFile::Flush(bool sync) {
  Status st = [&]() -> Status {
    Lock lock(mu_);
    // Everything written before the flush, also what is on its way.
    WaitForStoresLocked(lock);
    // A background store that failed put its bytes back as dirty: they are
    // stored again below, so the file is whole if the nodes are back, but
    // the writer hears of the failure either way.
    const Status background = TakeStoreErrorLocked();
    Status st = [&]() -> Status {
      SHARDFS_RETURN_IF_ERROR(StoreAllLocked(lock, sync));
      SHARDFS_RETURN_IF_ERROR(CommitLocked());
      // fsync covers what was written before it, also the shards stored
      // without sync as they filled up.
      if (sync) return SyncStoredLocked();
      return Status::Ok();
    }();
    return background.ok() ? st : background;
  }();
  // A rewrite that fell back to reading the old shard may have met a bad
  // replica.
  SendBadReplicaReports();
  return st;
}

Status OpenFile::Truncate(uint64_t size) {
  Lock lock(mu_);
  WaitForStoresLocked(lock);
  DropReadAhead();
  SHARDFS_RETURN_IF_ERROR(StoreAllLocked(lock, false));
  SHARDFS_RETURN_IF_ERROR(CommitLocked());
  SetAttrRequest req;
  req.ino = ino_;
  req.mask = 1u << 3;  // kSetAttrSize
  req.size = size;
  SHARDFS_ASSIGN_OR_RETURN(InodeAttrs attrs, dp_.ns->SetAttr(req));
  (void)attrs;
  return LoadLocked(false);
}

}  // namespace shardfs
