#include "src/shard_key.h"

#include <fmt/format.h>

namespace shardfs {
namespace {

// Parses exactly `text.size()` lowercase hex digits; nothing else is allowed,
// not even the "0x" or sign that strtoull would accept.
bool ParseFixedHex(std::string_view text, uint64_t* value) {
  uint64_t result = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return false;
    }
    result = (result << 4) | static_cast<uint64_t>(digit);
  }
  *value = result;
  return true;
}

}  // namespace

std::string ShardKey::ToString() const {
  return fmt::format("{:016x}.{:08x}.{:016x}", inode, index, generation);
}

Result<ShardKey> ShardKey::Parse(std::string_view text) {
  auto invalid = [&] {
    return Status::Error(ErrorCode::kInvalidArgument,
                         fmt::format("not a shard key: '{}'", text.substr(0, 64)));
  };
  if (text.size() != kShardKeyTextLength || text[16] != '.' || text[25] != '.') return invalid();
  uint64_t inode = 0, index = 0, generation = 0;
  if (!ParseFixedHex(text.substr(0, 16), &inode) || !ParseFixedHex(text.substr(17, 8), &index) ||
      !ParseFixedHex(text.substr(26, 16), &generation)) {
    return invalid();
  }
  return ShardKey{inode, static_cast<uint32_t>(index), generation};
}

}  // namespace shardfs
