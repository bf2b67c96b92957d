// OpenSessions: which files each client session holds open, and the lease
// that keeps those opens alive.
//
// The registry keeps an unlinked file that is still open as an orphan until
// its last release. A mount killed with -9 never releases: so each open is
// tied to the client's session, which the client renews a few times per
// lease. A session not renewed for a lease is lapsed: Expire() hands back
// its opens for the registry to release, so orphans among them are dropped
// and their shards collected. A session exists while it holds an open.
//
// Memory only, like the store's open counts: after a registry restart the
// clients' next renewals (which list what they hold open) rebuild it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

namespace shardfs {

// Not thread-safe: the registry guards it with the mutex under which it
// also changes the store's open references, so the two always agree.
class OpenSessions {
 public:
  using Clock = std::chrono::steady_clock;
  // ino -> times open.
  using Opens = std::map<uint64_t, uint32_t>;

  explicit OpenSessions(std::chrono::milliseconds lease) : lease_(lease) {}

  // `session` opened `ino` once more; renews it.
  void Opened(uint64_t session, uint64_t ino, Clock::time_point now);
  // `session` closed `ino` once; renews it. False when the session did not
  // hold it (its lease lapsed and the open was released already).
  bool Released(uint64_t session, uint64_t ino, Clock::time_point now);
  // Renews `session`; false when there is no such session.
  bool Renew(uint64_t session, Clock::time_point now);
  // Makes `session` hold exactly `target` and renews it. Returns the
  // change per inode (positive: opens to add to the store, negative: to
  // release); `known` says whether the session existed.
  std::map<uint64_t, int64_t> Reconcile(uint64_t session, const Opens& target,
                                        Clock::time_point now, bool* known);
  // Removes the sessions whose lease lapsed; returns their opens, an inode
  // once per open. `lapsed` (optional) counts the sessions.
  std::vector<uint64_t> Expire(Clock::time_point now, size_t* lapsed = nullptr);

  size_t size() const { return sessions_.size(); }
  std::chrono::milliseconds lease() const { return lease_; }

 private:
  struct Session {
    Clock::time_point renewed;
    Opens opens;
  };
  const std::chrono::milliseconds lease_;
  std::unordered_map<uint64_t, Session> sessions_;
};

}  // namespace shardfs
