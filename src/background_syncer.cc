#include "src/background_syncer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <vector>

namespace shardfs {

BackgroundSyncer::BackgroundSyncer(UnsyncedShards& shards, NodeClient& nodes,
                                   const NodeDirectory& directory)
    : shards_(shards), nodes_(nodes), directory_(directory), thread_([this] { Run(); }) {}

BackgroundSyncer::~BackgroundSyncer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void BackgroundSyncer::Run() {
  // A pass a second, or more often when shards are due sooner than that.
  const auto tick = std::min<std::chrono::milliseconds>(
      std::chrono::milliseconds(1000),
      std::max<std::chrono::milliseconds>(std::chrono::milliseconds(100),
                                          shards_.limits().max_age / 2));
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, tick, [&] { return stop_; })) {
    lock.unlock();
    UnsyncedShards::Set due = shards_.Due(UnsyncedShards::Clock::now());
    if (!due.empty()) {
      spdlog::debug("background fsync of {} shard(s)", due.size());
      (void)Pass(due);
    }
    lock.lock();
  }
}

Status BackgroundSyncer::SyncAll() {
  UnsyncedShards::Set all = shards_.All();
  if (all.empty()) return Status::Ok();
  spdlog::info("making {} shard(s) durable", all.size());
  return Pass(all);
}

Status BackgroundSyncer::Pass(const UnsyncedShards::Set& due) {
  SyncOutcome outcome = SyncShardsOnNodes(nodes_, directory_, due);
  std::vector<ShardKey> done;
  std::vector<ShardKey> failed;
  for (const auto& [key, replicas] : due) {
    const size_t synced = outcome.synced[key];
    const size_t missing = outcome.missing[key];
    // Nothing left to make durable where the node no longer has it.
    if (synced >= ReplicasToSync(replicas) || synced + missing >= replicas.size()) {
      done.push_back(key);
    } else {
      failed.push_back(key);
    }
  }
  shards_.Forget(done);
  if (failed.empty()) return Status::Ok();
  if (shards_.size() > 2 * shards_.limits().max_shards) {
    spdlog::warn("dropping {} shard(s) that could not be made durable: {}", failed.size(),
                 outcome.last_error.ToString());
    shards_.Forget(failed);
  } else {
    shards_.Postpone(failed, UnsyncedShards::Clock::now());
  }
  const std::string why = outcome.last_error.ok() ? std::string("replicas not reachable")
                                                  : outcome.last_error.ToString();
  return Status::Error(ErrorCode::kIoError, std::to_string(failed.size()) +
                                                " shard(s) could not be made durable: " + why);
}

}  // namespace shardfs
