#include "nodeserver/open_sessions.h"

namespace shardfs {

void OpenSessions::Opened(uint64_t session, uint64_t ino, Clock::time_point now) {
  Session& s = sessions_[session];
  s.renewed = now;
  s.opens[ino]++;
}

bool OpenSessions::Released(uint64_t session, uint64_t ino, Clock::time_point now) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return false;
  it->second.renewed = now;
  auto open = it->second.opens.find(ino);
  if (open == it->second.opens.end()) return false;
  if (--open->second == 0) it->second.opens.erase(open);
  if (it->second.opens.empty()) sessions_.erase(it);
  return true;
}

bool OpenSessions::Renew(uint64_t session, Clock::time_point now) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return false;
  it->second.renewed = now;
  return true;
}

std::map<uint64_t, int64_t> OpenSessions::Reconcile(uint64_t session, const Opens& target,
                                                    Clock::time_point now, bool* known) {
  std::map<uint64_t, int64_t> change;
  auto it = sessions_.find(session);
  *known = it != sessions_.end();
  if (it != sessions_.end()) {
    for (const auto& [ino, count] : it->second.opens) change[ino] -= count;
  }
  for (const auto& [ino, count] : target) change[ino] += count;
  std::erase_if(change, [](const auto& c) { return c.second == 0; });
  Opens opens;
  for (const auto& [ino, count] : target) {
    if (count > 0) opens[ino] = count;
  }
  if (opens.empty()) {
    if (it != sessions_.end()) sessions_.erase(it);
  } else {
    sessions_[session] = Session{now, std::move(opens)};
  }
  return change;
}

std::vector<uint64_t> OpenSessions::Expire(Clock::time_point now, size_t* lapsed) {
  std::vector<uint64_t> released;
  size_t n = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now - it->second.renewed < lease_) {
      ++it;
      continue;
    }
    for (const auto& [ino, count] : it->second.opens) released.insert(released.end(), count, ino);
    it = sessions_.erase(it);
    ++n;
  }
  if (lapsed != nullptr) *lapsed = n;
  return released;
}

}  // namespace shardfs
