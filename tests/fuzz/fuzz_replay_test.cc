// A libFuzzer-free driver for the fuzz targets, run as an ordinary test.
//
// Linked with one fuzz target (its LLVMFuzzerTestOneInput), it feeds every
// file of the target's seed corpus and then N inputs made from a seeded PRNG:
// random bytes, corpus entries with MessagePack-aware mutations, and splices
// of two entries. So the decoders meet hostile input on every CI run, with
// gcc and without libFuzzer; real coverage-guided fuzzing stays with the
// clang build (-Dfuzz=true). A target reports a broken promise by aborting;
// the driver then saves the input that did it next to the working directory
// and says how to reproduce the run.
//
//   fuzz_replay CORPUS_DIR [--runs N] [--seed S]      (or $SHARDFS_FUZZ_SEED)
//   fuzz_replay --input FILE                          (one saved input)
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <msgpack.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/msgpack_bounds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The input being run, for the crash handler. Written only by the main
// thread between runs.
const std::string* g_current = nullptr;
char g_crash_path[64];

// Saves the input that crashed with async-signal-safe calls only, then lets
// the signal take its default course (so the test fails as a crash).
void OnCrash(int sig) {
  if (g_current != nullptr) {
    int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ssize_t ignored = ::write(fd, g_current->data(), g_current->size());
      (void)ignored;
      ::close(fd);
      const char msg[] = "fuzz_replay: crashing input saved; rerun with --input ";
      ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
      ignored = ::write(STDERR_FILENO, g_crash_path, std::strlen(g_crash_path));
      ignored = ::write(STDERR_FILENO, "\n", 1);
    }
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void InstallCrashHandler() {
  std::snprintf(g_crash_path, sizeof(g_crash_path), "fuzz-crash-%d.bin",
                static_cast<int>(getpid()));
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, OnCrash);
}

void Run(const std::string& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  g_current = nullptr;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Bytes that mean something to a MessagePack parser: type tags of every
// family (fix types, nil/bool, bin/str/array/map of every width, ext,
// numbers) and the edges of the integer ranges.
constexpr uint8_t kInteresting[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                    0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb,
                                    0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda,
                                    0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};

class Mutator {
 public:
  Mutator(uint64_t seed, const std::vector<std::string>* corpus) : rng_(seed), corpus_(corpus) {}

  std::string Next() {
    const uint64_t pick = rng_() % 20;
    if (pick < 3 || corpus_->empty()) return RandomBytes(rng_() % 300);
    std::string s = (*corpus_)[rng_() % corpus_->size()];
    // Most byte-level changes break the MessagePack framing, so the
    // decoders behind DecodeHeader() would rarely run: a good share of the
    // inputs are changed value by value instead, and stay well-formed.
    if (pick < 11) return Structured(s);
    if (pick == 11) {  // splice: the head of one entry, the tail of another
      const std::string& other = (*corpus_)[rng_() % corpus_->size()];
      s = s.substr(0, s.empty() ? 0 : rng_() % s.size()) +
          other.substr(other.empty() ? 0 : rng_() % other.size());
    }
    const int mutations = 1 + static_cast<int>(rng_() % (rng_() % 2 == 0 ? 1 : 6));
    for (int i = 0; i < mutations; ++i) Mutate(&s);
    return s;
  }

 private:
  // Every object of a MessagePack document, in document order.
  static void Collect(msgpack::object* o, std::vector<msgpack::object*>* out) {
    out->push_back(o);
    if (o->type == msgpack::type::ARRAY) {
      for (uint32_t i = 0; i < o->via.array.size; ++i) Collect(&o->via.array.ptr[i], out);
    } else if (o->type == msgpack::type::MAP) {
      for (uint32_t i = 0; i < o->via.map.size; ++i) {
        Collect(&o->via.map.ptr[i].key, out);
        Collect(&o->via.map.ptr[i].val, out);
      }
    }
  }

  // Decodes `s` (a sequence of MessagePack objects, possibly after a few
  // fixint bytes such as a magic, and before a tail that is not MessagePack),
  // replaces a few of its values with values of another type, edge values of
  // the same type, shorter arrays and maps, or copies of other parts of the
  // document, and encodes the result, tail included.
  std::string Structured(const std::string& s) {
    // The objects live in the handles' zones, which this function owns.
    std::vector<msgpack::object_handle> handles;
    std::vector<msgpack::object> roots;
    size_t offset = 0;
    while (offset < s.size() && roots.size() < 64) {
      // Seeds are ours, but a spliced one is not: no parse may allocate for
      // what it only claims.
      if (!shardfs::CheckClaimedSizes(s, offset, 16).ok()) break;
      const size_t start = offset;
      try {
        handles.push_back(msgpack::unpack(s.data(), s.size(), offset));
      } catch (const std::exception&) {
        offset = start;
        break;
      }
      roots.push_back(handles.back().get());
    }
    if (roots.empty()) return s;
    const std::string tail = s.substr(offset);
    std::vector<msgpack::object*> nodes;
    for (msgpack::object& root : roots) Collect(&root, &nodes);
    static const uint64_t kEdges[] = {0,
                                      1,
                                      4095,
                                      4096,
                                      65536,
                                      10000,
                                      10001,
                                      0xffffffffull,
                                      1ull << 32,
                                      64ull << 20,
                                      (64ull << 20) + 1,
                                      ~0ull};
    static const std::string kLongText(100, 'n');
    static const std::string kKeyText = "ino";
    const int changes = 1 + static_cast<int>(rng_() % 3);
    for (int c = 0; c < changes; ++c) {
      const size_t at = rng_() % nodes.size();
      msgpack::object* o = nodes[at];
      switch (rng_() % 9) {
        case 0:
          *o = msgpack::object(kEdges[rng_() % std::size(kEdges)]);
          break;
        case 1:
          *o = msgpack::object(rng_() % 2 == 0 ? int64_t{-1} : INT64_MIN);
          break;
        case 2:
          *o = msgpack::object();  // nil
          break;
        case 3:
          *o = msgpack::object(rng_() % 2 == 0);
          break;
        case 4:
          *o = msgpack::object(1.5);
          break;
        case 5: {
          const std::string& text = rng_() % 2 == 0 ? kLongText : kKeyText;
          const auto size = static_cast<uint32_t>(rng_() % (text.size() + 1));
          if (rng_() % 2 == 0) {
            o->type = msgpack::type::STR;
            o->via.str.ptr = text.data();
            o->via.str.size = size;
          } else {
            o->type = msgpack::type::BIN;
            o->via.bin.ptr = text.data();
            o->via.bin.size = size;
          }
          break;
        }
        case 6:  // a shorter array or map (never longer: the items must exist)
          if (o->type == msgpack::type::ARRAY && o->via.array.size > 0) {
            o->via.array.size = static_cast<uint32_t>(rng_() % o->via.array.size);
          } else if (o->type == msgpack::type::MAP && o->via.map.size > 0) {
            o->via.map.size = static_cast<uint32_t>(rng_() % o->via.map.size);
          }
          break;
        case 7: {
          // A later part of the document in this place. Only later ones: a
          // node's children always come after it, so copying backwards can
          // never make a node contain itself.
          size_t other = at + 1 + (at + 1 < nodes.size() ? rng_() % (nodes.size() - at - 1) : 0);
          if (other < nodes.size()) *o = *nodes[other];
          break;
        }
        default:  // a nearby number (wrapping around 0 is fine: still a number)
          if (o->type == msgpack::type::POSITIVE_INTEGER) {
            o->via.u64 += rng_() % 3;
            o->via.u64 -= rng_() % 3;
          }
          break;
      }
    }
    msgpack::sbuffer out;
    for (const msgpack::object& root : roots) msgpack::pack(out, root);
    return std::string(out.data(), out.size()) + tail;
  }

  std::string RandomBytes(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng_());
    return s;
  }

  void Mutate(std::string* s) {
    const size_t at = s->empty() ? 0 : rng_() % s->size();
    switch (rng_() % 9) {
      case 0:  // flip a bit
        if (!s->empty()) (*s)[at] = static_cast<char>((*s)[at] ^ (1 << (rng_() % 8)));
        break;
      case 1:  // a random byte
        if (!s->empty()) (*s)[at] = static_cast<char>(rng_());
        break;
      case 2:  // a MessagePack type tag
        if (!s->empty()) {
          (*s)[at] = static_cast<char>(kInteresting[rng_() % sizeof(kInteresting)]);
        }
        break;
      case 3:  // a large big-endian length or count right after a byte
        s->insert(std::min(at + 1, s->size()),
                  std::string(rng_() % 2 == 0 ? "\xff\xff\xff\xff" : "\x00\x10\x00\x01", 4));
        break;
      case 4:  // insert random bytes
        s->insert(at, RandomBytes(1 + rng_() % 8));
        break;
      case 5:  // delete a range
        if (!s->empty()) s->erase(at, 1 + rng_() % std::min<size_t>(16, s->size() - at));
        break;
      case 6:  // duplicate a range
        if (!s->empty()) s->insert(at, s->substr(at, 1 + rng_() % 32));
        break;
      case 7:  // truncate
        s->resize(at);
        break;
      default:  // overwrite with a 64-bit edge value
        if (s->size() >= 8) {
          static const uint64_t kEdges[] = {0,
                                            1,
                                            0x7fffffffffffffffull,
                                            0x8000000000000000ull,
                                            ~0ull,
                                            0xffffffffull,
                                            0x100000000ull};
          uint64_t v = kEdges[rng_() % 7];
          std::memcpy(s->data() + std::min(at, s->size() - 8), &v, 8);
        }
        break;
    }
  }

  std::mt19937_64 rng_;
  const std::vector<std::string>* corpus_;
};

int Usage() {
  std::cerr << "usage: fuzz_replay CORPUS_DIR [--runs N] [--seed S]\n"
               "       fuzz_replay --input FILE\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string corpus_dir;
  std::string single_input;
  uint64_t runs = 20000;
  uint64_t seed = 20240521;
  if (const char* env = std::getenv("SHARDFS_FUZZ_SEED")) seed = std::strtoull(env, nullptr, 0);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--runs" && i + 1 < argc) {
      runs = std::strtoull(argv[++i], nullptr, 0);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 0);
    } else if (arg == "--input" && i + 1 < argc) {
      single_input = argv[++i];
    } else if (!arg.empty() && arg[0] != '-' && corpus_dir.empty()) {
      corpus_dir = arg;
    } else {
      return Usage();
    }
  }
  InstallCrashHandler();
  if (!single_input.empty()) {
    Run(ReadFile(single_input));
    std::cout << "ran " << single_input << ": no failure\n";
    return 0;
  }
  if (corpus_dir.empty()) return Usage();

  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(corpus_dir, ec)) {
    if (entry.is_regular_file()) names.push_back(entry.path().string());
  }
  std::sort(names.begin(), names.end());
  // An empty or missing corpus would make this test pass without testing
  // the interesting part: refuse.
  if (ec || names.size() < 5) {
    std::cerr << "fuzz_replay: corpus " << corpus_dir << " is missing or has fewer than 5 files\n";
    return 1;
  }
  std::vector<std::string> corpus;
  for (const auto& name : names) {
    corpus.push_back(ReadFile(name));
    Run(corpus.back());
  }

  const auto start = std::chrono::steady_clock::now();
  Mutator mutator(seed, &corpus);
  for (uint64_t i = 0; i < runs; ++i) Run(mutator.Next());
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::cout << "fuzz_replay: " << corpus.size() << " corpus files and " << runs
            << " generated inputs (seed " << seed << ") in " << ms << " ms: no failure\n";
  return 0;
}
