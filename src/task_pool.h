// TaskPool: a fixed set of threads that run queued tasks in order.
//
// The mount's background work (write-behind stores, read-ahead fetches)
// runs here, so a FUSE worker thread hands a shard off and goes on. Tasks
// report their outcome through their own state (errors as values); they must
// not throw. Bounding how much is queued is the submitter's job (OpenFile
// keeps a few shards in flight per file), so Submit never blocks.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace shardfs {

// Thread-safe. Owned by the client's main object, which destroys it before
// anything its tasks use: the destructor runs every task still queued, then
// joins the threads.
class TaskPool {
 public:
  TaskPool(size_t threads, std::string name);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  void Submit(std::function<void()> task);

 private:
  void Run();

  const std::string name_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace shardfs
