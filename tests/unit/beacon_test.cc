// The beacon datagram, --beacon parsing, and sender/listener over the
// loopback broadcast address (never a LAN address: nothing here leaves the
// machine).
#include "protocol/beacon.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <random>
#include <thread>

#include "protocol/fields.h"
#include "protocol/message_type.h"
#include "src/beacon_listener.h"
#include "src/beacon_sender.h"
#include "tests/integration/daemon_process.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

BeaconInfo SampleInfo() {
  BeaconInfo info;
  info.version = kProtocolVersion;
  info.cluster = "test-cluster";
  info.registry_endpoint = "tcp://10.1.2.3:7400";
  info.publish_endpoint = "tcp://10.1.2.3:7401";
  return info;
}

// A datagram with the magic and an arbitrary field map.
std::string RawBeacon(const FieldWriter& fields) {
  return std::string(kBeaconMagic) + fields.Finish();
}

// Sends one datagram to 127.0.0.1:port (unicast: the test's own listener).
void SendDatagram(uint16_t port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  ASSERT_EQ(sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)),
            static_cast<ssize_t>(bytes.size()));
  close(fd);
}

TEST(BeaconCodecTest, RoundTrip) {
  auto bytes = EncodeBeacon(SampleInfo());
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(bytes->substr(0, 4), "SFSB");
  EXPECT_LE(bytes->size(), kMaxBeaconBytes);
  auto info = DecodeBeacon(*bytes);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->version, kProtocolVersion);
  EXPECT_EQ(info->cluster, "test-cluster");
  EXPECT_EQ(info->registry_endpoint, "tcp://10.1.2.3:7400");
  EXPECT_EQ(info->publish_endpoint, "tcp://10.1.2.3:7401");
}

TEST(BeaconCodecTest, EncodeRefusesInvalidFields) {
  BeaconInfo bad = SampleInfo();
  bad.cluster = "has space";
  EXPECT_FALSE(EncodeBeacon(bad).ok());
  bad = SampleInfo();
  bad.registry_endpoint = "udp://x:1";
  EXPECT_FALSE(EncodeBeacon(bad).ok());
  bad = SampleInfo();
  bad.publish_endpoint = "tcp://x:0";
  EXPECT_FALSE(EncodeBeacon(bad).ok());
}

TEST(BeaconCodecTest, OtherVersionDecodesSoTheListenerCanSayWhy) {
  BeaconInfo info = SampleInfo();
  info.version = 99;
  auto decoded = DecodeBeacon(*EncodeBeacon(info));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->version, 99);
}

TEST(BeaconCodecTest, MalformedBeaconsAreErrors) {
  auto good = [] {
    FieldWriter w;
    w.U64("v", 1).Str("c", "c").Str("r", "tcp://h:1").Str("p", "tcp://h:2");
    return w;
  };
  ASSERT_TRUE(DecodeBeacon(RawBeacon(good())).ok());
  std::vector<std::pair<std::string, std::string>> cases;
  cases.push_back({"empty", ""});
  cases.push_back({"magic only", "SFSB"});
  cases.push_back({"wrong magic", "XFSB" + good().Finish()});
  cases.push_back({"trailing bytes", RawBeacon(good()) + "x"});
  cases.push_back({"not a map", std::string("SFSB\x93\x01\x02\x03", 8)});
  cases.push_back({"oversized", RawBeacon(good()) + std::string(kMaxBeaconBytes, 'x')});
  {
    FieldWriter w;
    w.Str("v", "1").Str("c", "c").Str("r", "tcp://h:1").Str("p", "tcp://h:2");
    cases.push_back({"version not a number", RawBeacon(w)});
  }
  {
    FieldWriter w;
    w.U64("v", 70000).Str("c", "c").Str("r", "tcp://h:1").Str("p", "tcp://h:2");
    cases.push_back({"version out of range", RawBeacon(w)});
  }
  {
    FieldWriter w;
    w.U64("v", 1).Str("r", "tcp://h:1").Str("p", "tcp://h:2");
    cases.push_back({"no cluster", RawBeacon(w)});
  }
  {
    FieldWriter w;
    w.U64("v", 1).Str("c", "a/b").Str("r", "tcp://h:1").Str("p", "tcp://h:2");
    cases.push_back({"bad cluster", RawBeacon(w)});
  }
  {
    FieldWriter w;
    w.U64("v", 1).Str("c", "c").Str("r", "tcp://h:99999").Str("p", "tcp://h:2");
    cases.push_back({"bad port", RawBeacon(w)});
  }
  {
    FieldWriter w;
    w.U64("v", 1).Str("c", "c").Str("r", "ipc:///tmp/x").Str("p", "tcp://h:2");
    cases.push_back({"not tcp", RawBeacon(w)});
  }
  {
    FieldWriter w;
    w.U64("v", 1).Str("c", "c").Str("r", "tcp://h:1").U64("p", 2);
    cases.push_back({"publish not a string", RawBeacon(w)});
  }
  {
    // One nested level is tolerated (and ignored) for future fields; two are not.
    FieldWriter inner;
    inner.Map("y", good());
    FieldWriter w;
    w.U64("v", 1).Str("c", "c").Str("r", "tcp://h:1").Str("p", "tcp://h:2").Map("x", inner);
    cases.push_back({"nested too deep", RawBeacon(w)});
  }
  for (const auto& [name, bytes] : cases) {
    auto r = DecodeBeacon(bytes);
    EXPECT_FALSE(r.ok()) << name;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), ErrorCode::kBadMessage) << name;
    }
  }
}

// Every truncation and every single-byte change of a valid beacon, plus
// random bytes behind the magic: decoding returns, and whatever it accepts
// is still a valid beacon.
TEST(BeaconCodecTest, GarbageNeverCrashes) {
  const std::string valid = *EncodeBeacon(SampleInfo());
  auto check = [](const std::string& bytes) {
    auto r = DecodeBeacon(bytes);
    if (r.ok()) {
      EXPECT_TRUE(ValidateClusterName(r->cluster).ok());
      EXPECT_TRUE(ParseTcpEndpoint(r->registry_endpoint).ok());
      EXPECT_TRUE(ParseTcpEndpoint(r->publish_endpoint).ok());
    }
  };
  for (size_t len = 0; len < valid.size(); ++len) check(valid.substr(0, len));
  for (size_t i = 0; i < valid.size(); ++i) {
    for (int b = 0; b < 256; b += 7) {
      std::string mutated = valid;
      mutated[i] = static_cast<char>(b);
      check(mutated);
    }
  }
  std::mt19937 rng(1234);
  for (int round = 0; round < 20000; ++round) {
    std::string bytes(kBeaconMagic);
    size_t len = rng() % 64;
    for (size_t i = 0; i < len; ++i) bytes.push_back(static_cast<char>(rng() & 0xff));
    check(bytes);
  }
}

TEST(TcpEndpointTest, Parse) {
  auto ep = ParseTcpEndpoint("tcp://10.0.0.5:7400");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "10.0.0.5");
  EXPECT_EQ(ep->port, 7400);
  EXPECT_FALSE(ep->IsWildcard());
  EXPECT_EQ(ep->ToString(), "tcp://10.0.0.5:7400");
  EXPECT_TRUE(ParseTcpEndpoint("tcp://*:1")->IsWildcard());
  EXPECT_TRUE(ParseTcpEndpoint("tcp://0.0.0.0:1")->IsWildcard());
  EXPECT_TRUE(ParseTcpEndpoint("tcp://[::]:1")->IsWildcard());
  EXPECT_EQ(ParseTcpEndpoint("tcp://[::1]:5")->host, "[::1]");
  EXPECT_EQ(ParseTcpEndpoint("tcp://host-a.example:0")->port, 0);
  for (const char* bad :
       {"", "tcp://", "tcp://:1", "tcp://h:", "tcp://h", "http://h:1", "tcp://h:65536",
        "tcp://h:12a", "tcp://h h:1", "tcp://[zz]:1", "tcp://h:123456"}) {
    EXPECT_FALSE(ParseTcpEndpoint(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseTcpEndpoint("tcp://" + std::string(300, 'a') + ":1").ok());
}

TEST(BeaconSpecTest, Parse) {
  auto def = ParseBeaconSpecs("", 7400);
  ASSERT_TRUE(def.ok());
  ASSERT_EQ(def->size(), 1u);
  EXPECT_EQ((*def)[0].address, "127.255.255.255");
  EXPECT_EQ((*def)[0].port, 7400);

  EXPECT_TRUE(ParseBeaconSpecs("off", 7400)->empty());

  auto addr = ParseBeaconSpecs("10.77.0.255", 7500);
  ASSERT_TRUE(addr.ok());
  EXPECT_EQ((*addr)[0].kind, BeaconSpec::Kind::kAddress);
  EXPECT_EQ((*addr)[0].address, "10.77.0.255");
  EXPECT_EQ((*addr)[0].port, 7500);

  auto with_port = ParseBeaconSpecs("10.77.0.255:9000", 7400);
  ASSERT_TRUE(with_port.ok());
  EXPECT_EQ((*with_port)[0].port, 9000);

  auto lan = ParseBeaconSpecs("lan", 7400);
  ASSERT_TRUE(lan.ok());
  EXPECT_EQ((*lan)[0].kind, BeaconSpec::Kind::kLan);
  EXPECT_EQ((*ParseBeaconSpecs("lan:7600", 7400))[0].port, 7600);

  auto list = ParseBeaconSpecs("127.255.255.255,10.0.0.255:1", 7400);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].port, 1);

  for (const char* bad : {"nonsense", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:", "off,1.2.3.4",
                          "1.2.3", ",", "1.2.3.4,", "lan:x"}) {
    EXPECT_FALSE(ParseBeaconSpecs(bad, 7400).ok()) << bad;
  }
  EXPECT_FALSE(ParseBeaconSpecs("", 0).ok());
}

TEST(BeaconSpecTest, AdvertisedEndpointFillsOnlyWildcards) {
  EXPECT_EQ(AdvertisedEndpoint("tcp://0.0.0.0:7400", "10.77.0.1"), "tcp://10.77.0.1:7400");
  EXPECT_EQ(AdvertisedEndpoint("tcp://*:7400", "127.0.0.1"), "tcp://127.0.0.1:7400");
  EXPECT_EQ(AdvertisedEndpoint("tcp://10.0.0.9:7400", "10.77.0.1"), "tcp://10.0.0.9:7400");
  EXPECT_EQ(AdvertisedEndpoint("tcp://0.0.0.0:7400", ""), "tcp://0.0.0.0:7400");
}

TEST(BeaconSpecTest, LoopbackBroadcastLeavesFromLoopback) {
  auto source = SourceAddressToward("127.255.255.255");
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  EXPECT_EQ(*source, "127.0.0.1");
  auto targets = ResolveBeaconTargets(*ParseBeaconSpecs("", 7400));
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].source, "127.0.0.1");
}

// Only resolves (sends nothing): every "lan" target is a non-loopback
// interface's broadcast address.
TEST(BeaconSpecTest, LanNeverPicksLoopback) {
  for (const BeaconTarget& t : ResolveBeaconTargets(*ParseBeaconSpecs("lan", 7400))) {
    EXPECT_NE(t.source.substr(0, 4), "127.") << t.address;
    EXPECT_NE(t.address.substr(0, 4), "127.") << t.address;
  }
}

class BeaconWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreeUdpPort();
    ASSERT_NE(port_, 0);
  }

  std::unique_ptr<BeaconSender> StartSender(const std::string& cluster,
                                            const std::string& registry) {
    BeaconSender::Options o;
    o.specs = *ParseBeaconSpecs(std::string(kLoopbackBroadcast), port_);
    o.info.version = kProtocolVersion;
    o.info.cluster = cluster;
    o.info.registry_endpoint = registry;
    o.info.publish_endpoint = *PublishEndpointOf(registry);
    o.interval = 100ms;
    auto sender = std::make_unique<BeaconSender>(std::move(o));
    EXPECT_TRUE(sender->Start().ok());
    return sender;
  }

  static Result<std::string> PublishEndpointOf(const std::string& registry) {
    SHARDFS_ASSIGN_OR_RETURN(TcpEndpoint ep, ParseTcpEndpoint(registry));
    ep.port = static_cast<uint16_t>(ep.port + 1);
    return ep.ToString();
  }

  uint16_t port_ = 0;
};

TEST_F(BeaconWireTest, TwoListenersShareThePortAndBothHear) {
  auto a = BeaconListener::Open(port_);
  auto b = BeaconListener::Open(port_);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto sender = StartSender("wire", "tcp://0.0.0.0:7400");
  auto got_a = a->Wait("wire", 3s);
  auto got_b = b->Wait("wire", 3s);
  ASSERT_TRUE(got_a.ok()) << got_a.status().ToString();
  ASSERT_TRUE(got_b.ok()) << got_b.status().ToString();
  // Bound to every interface, announced as the loopback address it left from.
  EXPECT_EQ(got_a->registry_endpoint, "tcp://127.0.0.1:7400");
  EXPECT_EQ(got_a->publish_endpoint, "tcp://127.0.0.1:7401");
  EXPECT_EQ(got_b->registry_endpoint, "tcp://127.0.0.1:7400");
  EXPECT_TRUE(WaitUntil([&] { return sender->sent() > 0; }, 1s));
}

TEST_F(BeaconWireTest, OtherClusterIsIgnored) {
  auto sender = StartSender("someone-else", "tcp://127.0.0.1:7400");
  auto start = std::chrono::steady_clock::now();
  auto got = WaitForBeacon("mine", port_, 700ms);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), ErrorCode::kTimeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 650ms);
  EXPECT_GT(sender->sent(), 2u);
}

TEST_F(BeaconWireTest, GarbageAndOtherVersionsAreSkipped) {
  auto listener = BeaconListener::Open(port_);
  ASSERT_TRUE(listener.ok());
  SendDatagram(port_, "garbage");
  SendDatagram(port_, std::string(2000, 'x'));  // larger than any beacon
  BeaconInfo future = SampleInfo();
  future.version = kProtocolVersion + 1;
  future.cluster = "c";
  SendDatagram(port_, *EncodeBeacon(future));
  BeaconInfo wrong_cluster = SampleInfo();
  SendDatagram(port_, *EncodeBeacon(wrong_cluster));
  BeaconInfo good = SampleInfo();
  good.cluster = "c";
  good.registry_endpoint = "tcp://0.0.0.0:9100";  // a sender that did not fill it in
  good.publish_endpoint = "tcp://10.9.9.9:9101";
  SendDatagram(port_, *EncodeBeacon(good));
  auto got = listener->Wait("c", 2s);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->version, kProtocolVersion);
  // The wildcard became the address the datagram came from.
  EXPECT_EQ(got->registry_endpoint, "tcp://127.0.0.1:9100");
  EXPECT_EQ(got->publish_endpoint, "tcp://10.9.9.9:9101");
}

TEST_F(BeaconWireTest, SenderStopsPromptly) {
  auto sender = StartSender("wire", "tcp://127.0.0.1:7400");
  std::this_thread::sleep_for(150ms);
  auto start = std::chrono::steady_clock::now();
  sender->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
  uint64_t sent = sender->sent();
  std::this_thread::sleep_for(250ms);
  EXPECT_EQ(sender->sent(), sent);
}

TEST_F(BeaconWireTest, OffSendsNothing) {
  BeaconSender::Options o;
  o.info = SampleInfo();
  BeaconSender sender(std::move(o));
  ASSERT_TRUE(sender.Start().ok());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(sender.sent(), 0u);
}

}  // namespace
}  // namespace shardfs
