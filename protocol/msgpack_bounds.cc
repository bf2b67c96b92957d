#include "protocol/msgpack_bounds.h"

#include <msgpack.hpp>

namespace shardfs {
namespace {

// Adds up the claimed counts while msgpack::parse walks the bytes, and stops
// the walk (by returning false) as soon as they exceed the budget. The
// parser's own stack is one entry per open container, so the depth bound
// bounds it too.
class ClaimCounter : public msgpack::null_visitor {
 public:
  ClaimCounter(size_t budget, size_t max_depth) : budget_(budget), max_depth_(max_depth) {}

  bool start_array(uint32_t n) { return Open(n); }
  bool end_array() { return Close(); }
  bool start_map(uint32_t n) { return Open(2 * static_cast<uint64_t>(n)); }
  bool end_map() { return Close(); }
  void parse_error(size_t, size_t) {}
  void insufficient_bytes(size_t, size_t) {}

  bool over() const { return over_; }

 private:
  bool Open(uint64_t items) {
    if (items > budget_ - claimed_ || ++depth_ > max_depth_) {
      over_ = true;
      return false;
    }
    claimed_ += items;
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }

  const uint64_t budget_;
  const size_t max_depth_;
  uint64_t claimed_ = 0;
  size_t depth_ = 0;
  bool over_ = false;
};

}  // namespace

Status CheckClaimedSizes(std::string_view bytes, size_t offset, size_t max_depth) {
  if (offset >= bytes.size()) return Status::Error(ErrorCode::kBadMessage, "no object");
  ClaimCounter counter(bytes.size() - offset, max_depth);
  size_t end = offset;
  bool parsed = false;
  try {
    parsed = msgpack::parse(bytes.data(), bytes.size(), end, counter);
  } catch (const std::exception& e) {
    return Status::Error(ErrorCode::kBadMessage, std::string("undecodable: ") + e.what());
  }
  if (counter.over()) {
    return Status::Error(ErrorCode::kBadMessage,
                         "containers claim more elements than there are bytes, or nest too deep");
  }
  if (!parsed) return Status::Error(ErrorCode::kBadMessage, "malformed or truncated object");
  return Status::Ok();
}

}  // namespace shardfs
