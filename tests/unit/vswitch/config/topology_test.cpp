#include "vswitch/config/topology.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>

namespace vswitch {
namespace {

const char* kTwoEndpoints = R"(
[fabric]
ring_bytes = 262144

[[endpoint]]
name = "a"
core = 0
mac = "02:00:00:00:00:01"
frontend = "generator"

[[endpoint]]
name = "b"
core = 1
mac = "02:00:00:00:00:02"
frontend = "generator"
)";

// Loads `text`, expects failure, and returns the one error whose key is `key`.
TopologyError only_error(const std::string& text, const std::string& key) {
  auto t = load_topology_string(text, "test.toml");
  EXPECT_FALSE(t.has_value());
  if (t.has_value()) return {};
  for (const auto& e : t.error())
    if (e.key == key) return e;
  ADD_FAILURE() << "no error for key " << key << "; got:\n" << format_errors(t.error());
  return {};
}

TEST(Topology, LoadsAValidFile) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  ASSERT_EQ(t->endpoints.size(), 2u);
  EXPECT_EQ(t->endpoints[1].name, "b");
  EXPECT_EQ(t->endpoints[1].core, 1u);
  EXPECT_EQ(t->endpoints[1].mac->str(), "02:00:00:00:00:02");
  EXPECT_EQ(t->fabric.ring_bytes, 262144u);
  EXPECT_EQ(t->switch_config.name, "vswitch");
  EXPECT_EQ(t->endpoints[0].frontend, FrontendKind::kGenerator);
}

TEST(Topology, EveryShippedConfigLoads) {
  for (const auto& f : std::filesystem::directory_iterator(VSWITCH_CONFIG_DIR)) {
    if (f.path().extension() != ".toml") continue;
    auto t = load_topology_file(f.path().string());
    EXPECT_TRUE(t.has_value()) << f.path() << "\n" << (t ? "" : format_errors(t.error()));
  }
}

TEST(Topology, SyntaxErrorNamesFileAndLine) {
  auto e = only_error("[fabric]\nring_bytes = = 4\n", "");
  EXPECT_EQ(e.line, 2u);
  EXPECT_NE(e.message().find("test.toml:2:"), std::string::npos) << e.message();
}

TEST(Topology, RegressionFuzzCodePointsTomlppMishandles) {
  // "[fab\xEF\xBB\xBD]" (U+FEFD in a table name) and "name =0\"vm\xCA\x9B..." (U+029B seen
  // while toml++ looks ahead through a malformed value) drove toml++ 3.3 into
  // TOML_UNREACHABLE. They must be plain errors naming the line and the code point.
  auto e = only_error("[switch]\nname = \"x\"\n[fab\xEF\xBB\xBD]\nri = 1\n", "");
  EXPECT_EQ(e.line, 3u);
  EXPECT_NE(e.problem.find("U+FEFD"), std::string::npos) << e.problem;
  e = only_error("[switch]\nname =0\"vm\xCA\x9B" "emo\"\n", "");
  EXPECT_EQ(e.line, 2u);
  EXPECT_NE(e.problem.find("U+029B"), std::string::npos) << e.problem;
}

TEST(Topology, OtherNonAsciiInCommentsAndStringsIsFine) {
  // U+2014 (em dash) and U+00A0 are outside the refused ranges.
  std::string text = std::string("# topology \xE2\x80\x94 demo\n") + kTwoEndpoints;
  text += "[endpoint.generator]\npeer = \"a\"  # \xE2\x80\x94 \"quoted\"\n";
  auto t = load_topology_string(text, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
}

TEST(Topology, MissingFileIsNamed) {
  auto t = load_topology_file("/nonexistent/x.toml");
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(format_errors(t.error()).find("/nonexistent/x.toml: cannot open"), std::string::npos);
}

// Only a regular file is read (a reload reads it in the running daemon: a FIFO would
// stall it, a device or a huge file bloat it).
TEST(Topology, AFifoOrAHugeFileIsRefusedUnread) {
  const auto dir = std::filesystem::temp_directory_path() / ("topo-fifo-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string fifo = (dir / "t.toml").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto t = load_topology_file(fifo);  // would block in open() if it were opened
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(format_errors(t.error()).find(fifo + ": not a regular file"), std::string::npos) << format_errors(t.error());
  const std::string big = (dir / "big.toml").string();
  std::filesystem::remove(fifo);
  {
    std::FILE* f = std::fopen(big.c_str(), "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(::ftruncate(::fileno(f), static_cast<off_t>(kMaxTopologyBytes + 1)), 0);
    std::fclose(f);
  }
  t = load_topology_file(big);
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(format_errors(t.error()).find("a topology may have at most 16 MiB"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Topology, DuplicateEndpointName) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("name = \"b\""), 10, "name = \"a\"");
  auto e = only_error(text, "endpoint[1].name");
  EXPECT_EQ(e.line, 12u);
  EXPECT_NE(e.problem.find("already used"), std::string::npos);
  EXPECT_EQ(e.message().rfind("test.toml:12: endpoint[1].name: ", 0), 0u) << e.message();
}

TEST(Topology, DuplicateMac) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("02:00:00:00:00:02"), 17, "02:00:00:00:00:01");
  auto e = only_error(text, "endpoint[1].mac");
  EXPECT_EQ(e.line, 14u);
  EXPECT_NE(e.problem.find("already used by endpoint \"a\""), std::string::npos) << e.problem;
}

TEST(Topology, MalformedMac) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("02:00:00:00:00:02"), 17, "02:00:00:00:00:0g");
  EXPECT_EQ(only_error(text, "endpoint[1].mac").line, 14u);
}

TEST(Topology, MulticastMacIsNotAPortAddress) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("02:00:00:00:00:02"), 17, "01:00:5e:00:00:01");
  EXPECT_NE(only_error(text, "endpoint[1].mac").problem.find("multicast"), std::string::npos);
}

TEST(Topology, CoreBeyondTheMachine) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(check_cores(*t, 2).empty());
  auto errs = check_cores(*t, 1);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].key, "endpoint[1].core");
  EXPECT_EQ(errs[0].line, 13u);
  EXPECT_NE(errs[0].problem.find("beyond this machine's 1 CPUs"), std::string::npos) << errs[0].problem;
}

TEST(Topology, NegativeCore) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("core = 1"), 8, "core = -1");
  EXPECT_NE(only_error(text, "endpoint[1].core").problem.find("out of range"), std::string::npos);
}

TEST(Topology, RingSmallerThanOneMaximumFrame) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("262144"), 6, "65536");
  auto e = only_error(text, "fabric.ring_bytes");
  EXPECT_EQ(e.line, 3u);
  EXPECT_NE(e.problem.find("below one maximum frame"), std::string::npos) << e.problem;
}

TEST(Topology, RingFitsWhenMaxFrameIsSmaller) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("ring_bytes = 262144"), 19, "ring_bytes = 16384\nmax_frame = 9000");
  EXPECT_TRUE(load_topology_string(text, "test.toml").has_value());
}

TEST(Topology, RingNotAPowerOfTwo) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("262144"), 6, "300000");
  EXPECT_NE(only_error(text, "fabric.ring_bytes").problem.find("power of two"), std::string::npos);
}

// [metrics] listen: numeric IPv4, bracketed IPv6, a port 1..65535; each mistake named
// with its line.
TEST(Topology, MetricsListenIsParsed) {
  auto t = load_topology_string(std::string(kTwoEndpoints) + "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n", "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_TRUE(t.value().metrics.enabled());
  EXPECT_EQ(t.value().metrics.address, "127.0.0.1");
  EXPECT_EQ(t.value().metrics.port, 9464);
  auto v6 = load_topology_string(std::string(kTwoEndpoints) + "\n[metrics]\nlisten = \"[::1]:9100\"\n", "test.toml");
  ASSERT_TRUE(v6.has_value()) << format_errors(v6.error());
  EXPECT_EQ(v6.value().metrics.address, "::1");
  EXPECT_EQ(v6.value().metrics.port, 9100);
  auto off = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(off.has_value());
  EXPECT_FALSE(off.value().metrics.enabled());
}

TEST(Topology, MetricsListenMistakesAreNamed) {
  const std::string base = std::string(kTwoEndpoints) + "\n[metrics]\n";
  const std::uint32_t line = static_cast<std::uint32_t>(std::count(base.begin(), base.end(), '\n')) + 1;
  const struct {
    const char* listen;
    const char* says;
  } cases[] = {{"localhost:9464", "not a numeric IPv4 address"},
               {"127.0.0.1", "not ADDR:PORT"},
               {"127.0.0.1:0", "1..65535"},
               {"127.0.0.1:65536", "1..65535"},
               {"127.0.0.1:9x", "1..65535"},
               {"::1:9464", "not a numeric IPv4 address"},
               {"[::1:9464", "not a numeric IPv4 address"},
               {"[fe80::zz]:9464", "not a numeric IPv6 address"}};
  for (const auto& c : cases) {
    auto e = only_error(base + "listen = \"" + c.listen + "\"\n", "metrics.listen");
    EXPECT_EQ(e.line, line) << c.listen;
    EXPECT_NE(e.problem.find(c.says), std::string::npos) << c.listen << ": " << e.problem;
  }
  EXPECT_NE(only_error(base + "port = 9464\n", "metrics.listen").problem.find("missing"), std::string::npos);
  auto unknown = load_topology_string(base + "listen = \"127.0.0.1:1\"\nport = 2\n", "test.toml");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(format_errors(unknown.error()).find("metrics.port"), std::string::npos) << format_errors(unknown.error());
}

// [capture] ring_bytes: 4 MiB by default, 0 turns capture off, anything else a power of
// two that holds four of the largest records (max_frame + 32 bytes each), at most 1 GiB.
TEST(Topology, CaptureRingBytes) {
  auto dflt = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(dflt.has_value());
  EXPECT_EQ(dflt.value().capture.ring_bytes, std::uint64_t{4} << 20);
  auto off = load_topology_string(std::string(kTwoEndpoints) + "\n[capture]\nring_bytes = 0\n", "test.toml");
  ASSERT_TRUE(off.has_value()) << format_errors(off.error());
  EXPECT_FALSE(off.value().capture.enabled());
  auto big = load_topology_string(std::string(kTwoEndpoints) + "\n[capture]\nring_bytes = 16777216\n", "test.toml");
  ASSERT_TRUE(big.has_value()) << format_errors(big.error());
  EXPECT_EQ(big.value().capture.ring_bytes, std::uint64_t{16} << 20);
  const std::string base = std::string(kTwoEndpoints) + "\n[capture]\n";
  const std::uint32_t line = static_cast<std::uint32_t>(std::count(base.begin(), base.end(), '\n')) + 1;
  auto e = only_error(base + "ring_bytes = 3000000\n", "capture.ring_bytes");
  EXPECT_EQ(e.line, line);
  EXPECT_NE(e.problem.find("not a power of two"), std::string::npos) << e.problem;
  // kTwoEndpoints has max_frame 65536: four records of 65568 bytes do not fit 256 KiB.
  e = only_error(base + "ring_bytes = 262144\n", "capture.ring_bytes");
  EXPECT_NE(e.problem.find("fewer than four"), std::string::npos) << e.problem;
  only_error(base + "ring_bytes = 2147483648\n", "capture.ring_bytes");
  only_error(base + "size = 1\n", "capture.size");
}

TEST(Topology, UnknownKey) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("core = 1"), 8, "cores = 1");
  auto e = only_error(text, "endpoint[1].cores");
  EXPECT_EQ(e.line, 13u);
  EXPECT_NE(e.problem.find("unknown key"), std::string::npos);
}

TEST(Topology, UnknownTopLevelTable) {
  auto e = only_error(std::string(kTwoEndpoints) + "\n[swtich]\nname = \"x\"\n", "swtich");
  EXPECT_NE(e.problem.find("known: switch, fabric, metrics, capture, endpoint"), std::string::npos) << e.problem;
}

TEST(Topology, WrongType) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("ring_bytes = 262144"), 19, "ring_bytes = \"big\"");
  auto e = only_error(text, "fabric.ring_bytes");
  EXPECT_EQ(e.line, 3u);
  EXPECT_NE(e.problem.find("must be an integer, not a string"), std::string::npos) << e.problem;
}

TEST(Topology, MissingName) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("name = \"b\""), 10, "");
  auto e = only_error(text, "endpoint[1].name");
  EXPECT_EQ(e.line, 11u);  // the [[endpoint]] header
  EXPECT_NE(e.problem.find("missing"), std::string::npos);
}

TEST(Topology, UnknownFrontend) {
  std::string text = kTwoEndpoints;
  text.replace(text.rfind("frontend = \"generator\""), 22, "frontend = \"pcap\"");
  EXPECT_EQ(only_error(text, "endpoint[1].frontend").line, 15u);
}

TEST(Topology, TapWithoutIfname) {
  std::string text = kTwoEndpoints;
  text.replace(text.rfind("frontend = \"generator\""), 22, "frontend = \"tap\"\n[endpoint.tap]\nnetns = \"x\"");
  auto e = only_error(text, "endpoint[1].tap.ifname");
  EXPECT_EQ(e.line, 16u);
}

TEST(Topology, OptionsForAnotherFrontend) {
  std::string text = std::string(kTwoEndpoints) + "[endpoint.tap]\nifname = \"x\"\n";
  auto e = only_error(text, "endpoint[1].tap");
  EXPECT_NE(e.problem.find("on a \"generator\" endpoint"), std::string::npos) << e.problem;
}

TEST(Topology, GeneratorPeerMustExist) {
  std::string text = std::string(kTwoEndpoints) + "[endpoint.generator]\npeer = \"zz\"\n";
  EXPECT_NE(only_error(text, "endpoint[1].generator.peer").problem.find("\"zz\""), std::string::npos);
}

TEST(Topology, GeneratorSizeOutOfRange) {
  std::string text = std::string(kTwoEndpoints) + "[endpoint.generator]\nsizes = [64, 70000]\n";
  auto e = only_error(text, "endpoint[1].generator.sizes[1]");
  EXPECT_EQ(e.line, 17u);
}

TEST(Topology, EndpointMtu) {
  auto t = load_topology_string(std::string(kTwoEndpoints) + "mtu = 9000\n", "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t->endpoints[1].mtu, 9000u);
  EXPECT_EQ(t->endpoints[1].frame_limit(), 9018u) << "an Ethernet header and a VLAN tag on top";
  EXPECT_FALSE(t->endpoints[0].mtu.has_value());
  EXPECT_EQ(t->endpoints[0].frame_limit(), std::numeric_limits<std::uint32_t>::max());

  auto e = only_error(std::string(kTwoEndpoints) + "mtu = 67\n", "endpoint[1].mtu");
  EXPECT_EQ(e.line, 16u);
  EXPECT_NE(e.problem.find("out of range [68, 65535]"), std::string::npos) << e.problem;
  only_error(std::string(kTwoEndpoints) + "mtu = \"9000\"\n", "endpoint[1].mtu");

  // Room for the Ethernet header and a tag within fabric.max_frame.
  std::string small = kTwoEndpoints;
  small.replace(small.find("ring_bytes = 262144"), 19, "ring_bytes = 262144\nmax_frame = 1514");
  auto fits = load_topology_string(small + "mtu = 1496\n", "test.toml");
  ASSERT_TRUE(fits.has_value()) << format_errors(fits.error());
  e = only_error(small + "mtu = 1500\n", "endpoint[1].mtu");
  EXPECT_EQ(e.line, 17u);
  EXPECT_NE(e.problem.find("above fabric.max_frame = 1514"), std::string::npos) << e.problem;

  // A generator whose frames its own port would drop.
  e = only_error(std::string(kTwoEndpoints) + "mtu = 1000\n[endpoint.generator]\nsizes = [64, 1018, 1019]\n",
                 "endpoint[1].generator.sizes[2]");
  EXPECT_EQ(e.line, 16u);
  EXPECT_NE(e.problem.find("above mtu 1000"), std::string::npos) << e.problem;
}

TEST(Topology, EndpointVlans) {
  auto t = load_topology_string(std::string(kTwoEndpoints) + "vlan = 10\ntrunk = [20, 4094]\n", "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  const EndpointConfig& b = t->endpoints[1];
  EXPECT_EQ(b.vlan, 10);
  EXPECT_EQ(b.trunk, (std::vector<std::uint16_t>{20, 4094}));
  EXPECT_TRUE(b.vlan_aware());
  EXPECT_TRUE(b.member(10) && b.member(20) && b.member(4094));
  EXPECT_FALSE(b.member(0) || b.member(30));
  const EndpointConfig& a = t->endpoints[0];
  EXPECT_FALSE(a.vlan_aware());
  EXPECT_TRUE(a.member(0));
  EXPECT_FALSE(a.member(10));

  auto e = only_error(std::string(kTwoEndpoints) + "vlan = 4095\n", "endpoint[1].vlan");
  EXPECT_EQ(e.line, 16u);
  only_error(std::string(kTwoEndpoints) + "vlan = 0\n", "endpoint[1].vlan");
  e = only_error(std::string(kTwoEndpoints) + "trunk = [10, 0]\n", "endpoint[1].trunk[1]");
  EXPECT_NE(e.problem.find("out of range"), std::string::npos) << e.problem;
  e = only_error(std::string(kTwoEndpoints) + "trunk = [10, 10]\n", "endpoint[1].trunk[1]");
  EXPECT_NE(e.problem.find("twice"), std::string::npos) << e.problem;
  e = only_error(std::string(kTwoEndpoints) + "vlan = 10\ntrunk = [10]\n", "endpoint[1].trunk[0]");
  EXPECT_EQ(e.line, 17u);
  EXPECT_NE(e.problem.find("untagged"), std::string::npos) << e.problem;
  only_error(std::string(kTwoEndpoints) + "trunk = []\n", "endpoint[1].trunk");
  // b's mac is static in each of its 3 VLANs, a's in one: 4 entries.
  e = only_error("[switch]\nmac_table_size = 3\n" + std::string(kTwoEndpoints) + "vlan = 10\ntrunk = [20, 30]\n",
                 "switch.mac_table_size");
  EXPECT_EQ(e.line, 2u);
  EXPECT_NE(e.problem.find("4 static entries"), std::string::npos) << e.problem;
  EXPECT_TRUE(load_topology_string("[switch]\nmac_table_size = 4\n" + std::string(kTwoEndpoints) +
                                       "vlan = 10\ntrunk = [20, 30]\n", "test.toml").has_value());
  only_error(std::string(kTwoEndpoints) + "trunk = [\"10\"]\n", "endpoint[1].trunk[0]");
}

TEST(Topology, VhostUserQueueSizeNotPowerOfTwo) {
  std::string text = kTwoEndpoints;
  text.replace(text.rfind("frontend = \"generator\""), 22,
               "frontend = \"vhost-user\"\n[endpoint.vhost_user]\nsocket = \"/tmp/s\"\nqueue_size = 100");
  EXPECT_EQ(only_error(text, "endpoint[1].vhost_user.queue_size").line, 18u);
}

// Without queue_size every split-ring size is accepted (QEMU users set rx_queue_size=1024).
TEST(Topology, VhostUserQueueSizeDefaultsToTheLargestSplitRing) {
  std::string text = kTwoEndpoints;
  text.replace(text.rfind("frontend = \"generator\""), 22,
               "frontend = \"vhost-user\"\n[endpoint.vhost_user]\nsocket = \"/tmp/s\"");
  const auto t = load_topology_string(text, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(std::get<VhostUserOptions>(t->endpoints[1].options).queue_size, 32768u);
}

// The socket's owner, group and mode: names resolved at load, ids taken as they are, the
// mode an octal string never writable by others; each bad value named with its line.
std::string with_vhost_user(const std::string& keys) {
  std::string text = kTwoEndpoints;
  text.replace(text.rfind("frontend = \"generator\""), 22,
               "frontend = \"vhost-user\"\n[endpoint.vhost_user]\nsocket = \"/tmp/s\"\n" + keys);
  return text;
}

TEST(Topology, VhostUserSocketOwnerGroupAndMode) {
  const auto t = load_topology_string(with_vhost_user("socket_owner = \"root\"\nsocket_group = 0\nsocket_mode = \"0660\""),
                                      "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  const auto& o = std::get<VhostUserOptions>(t->endpoints[1].options);
  EXPECT_EQ(o.socket_owner, 0u);
  EXPECT_EQ(o.socket_group, 0u);
  EXPECT_EQ(o.socket_mode, 0660u);
  const auto d = load_topology_string(with_vhost_user(""), "test.toml");
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(std::get<VhostUserOptions>(d->endpoints[1].options).socket_owner.has_value());
  EXPECT_EQ(std::get<VhostUserOptions>(d->endpoints[1].options).socket_mode, 0600u);

  EXPECT_EQ(only_error(with_vhost_user("socket_owner = \"no-such-user-vswitch\""), "endpoint[1].vhost_user.socket_owner").line, 18u);
  EXPECT_EQ(only_error(with_vhost_user("socket_group = \"no-such-group-vswitch\""), "endpoint[1].vhost_user.socket_group").line, 18u);
  EXPECT_EQ(only_error(with_vhost_user("socket_group = -1"), "endpoint[1].vhost_user.socket_group").line, 18u);
  EXPECT_EQ(only_error(with_vhost_user("socket_mode = \"0666\""), "endpoint[1].vhost_user.socket_mode").line, 18u);
  EXPECT_EQ(only_error(with_vhost_user("socket_mode = 660"), "endpoint[1].vhost_user.socket_mode").line, 18u);
  EXPECT_EQ(only_error(with_vhost_user("socket_mode = \"rw\""), "endpoint[1].vhost_user.socket_mode").line, 18u);
}

TEST(Topology, VhostUserGuestMemoryLimit) {
  const auto d = load_topology_string(with_vhost_user(""), "test.toml");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(std::get<VhostUserOptions>(d->endpoints[1].options).max_guest_memory_gib, 64u);
  const auto t = load_topology_string(with_vhost_user("max_guest_memory_gib = 8"), "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(std::get<VhostUserOptions>(t->endpoints[1].options).max_guest_memory_gib, 8u);
  EXPECT_EQ(only_error(with_vhost_user("max_guest_memory_gib = 0"), "endpoint[1].vhost_user.max_guest_memory_gib").line, 18u);
}

TEST(Topology, FewerThanTwoEndpoints) {
  auto e = only_error("[[endpoint]]\nname = \"a\"\nfrontend = \"generator\"\n", "endpoint");
  EXPECT_NE(e.problem.find("at least two"), std::string::npos);
}

TEST(Topology, ReportsEveryProblemNotJustTheFirst) {
  std::string text = kTwoEndpoints;
  text.replace(text.find("262144"), 6, "300000");
  text.replace(text.find("02:00:00:00:00:02"), 17, "nonsense-mac-addr");
  auto t = load_topology_string(text, "test.toml");
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().size(), 2u) << format_errors(t.error());
}


// Port security is on for an endpoint with a mac unless the file turns it off, and off
// (it could not be on) for one without.
TEST(Topology, PortSecurityDefaultsOnForAnEndpointWithAMac) {
  std::string text = kTwoEndpoints;
  text.insert(text.find("frontend = \"generator\""), "port_security = false\n");
  text += "\n[[endpoint]]\nname = \"c\"\nfrontend = \"generator\"\n";
  auto t = load_topology_string(text, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_FALSE(t->endpoints[0].port_security);  // explicit false
  EXPECT_TRUE(t->endpoints[1].port_security);   // a mac, nothing said
  EXPECT_FALSE(t->endpoints[2].port_security);  // no mac
}

TEST(Topology, PortSecurityTrueIsAccepted) {
  std::string text = kTwoEndpoints;
  text.insert(text.find("frontend = \"generator\""), "port_security = true\n");
  auto t = load_topology_string(text, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_TRUE(t->endpoints[0].port_security);
}

TEST(Topology, MaxMacsPerPortDefaultsToAQuarterOfTheTable) {
  auto t = load_topology_string(std::string("[switch]\nmac_table_size = 1000\n") + kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t->switch_config.macs_per_port(), 250u);
  auto tiny = load_topology_string(std::string("[switch]\nmac_table_size = 3\n") + kTwoEndpoints, "test.toml");
  ASSERT_TRUE(tiny.has_value()) << format_errors(tiny.error());
  EXPECT_EQ(tiny->switch_config.macs_per_port(), 1u);
  auto set = load_topology_string(std::string("[switch]\nmac_table_size = 1000\nmax_macs_per_port = 900\n") +
                                      kTwoEndpoints, "test.toml");
  ASSERT_TRUE(set.has_value()) << format_errors(set.error());
  EXPECT_EQ(set->switch_config.macs_per_port(), 900u);
}

TEST(Topology, MaxMacsPerPortMustFitTheTable) {
  auto e = only_error(std::string("[switch]\nmac_table_size = 100\nmax_macs_per_port = 101\n") + kTwoEndpoints,
                      "switch.max_macs_per_port");
  EXPECT_EQ(e.line, 3u);
  EXPECT_NE(e.problem.find("mac_table_size"), std::string::npos) << e.problem;
  auto zero = only_error(std::string("[switch]\nmax_macs_per_port = 0\n") + kTwoEndpoints, "switch.max_macs_per_port");
  EXPECT_NE(zero.problem.find("out of range"), std::string::npos) << zero.problem;
}

TEST(Topology, WatchdogIsOnByDefaultAndBounded) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t->switch_config.watchdog_ms, 10000u);
  auto off = load_topology_string(std::string("[switch]\nwatchdog_ms = 0\n") + kTwoEndpoints, "test.toml");
  ASSERT_TRUE(off.has_value()) << format_errors(off.error());
  EXPECT_EQ(off->switch_config.watchdog_ms, 0u);
  auto e = only_error(std::string("[switch]\nwatchdog_ms = 50\n") + kTwoEndpoints, "switch.watchdog_ms");
  EXPECT_EQ(e.line, 2u);
  EXPECT_NE(e.problem.find("below 100 ms"), std::string::npos) << e.problem;
  // An adaptive poll as long as a quarter of the timeout would look like a hang.
  std::string spin = std::string("[switch]\nwatchdog_ms = 1000\n") + kTwoEndpoints;
  spin.insert(spin.find("frontend = \"generator\""), "poll_us = 300000\n");
  auto p = only_error(spin, "endpoint[0].poll_us");
  EXPECT_NE(p.problem.find("quarter of switch.watchdog_ms"), std::string::npos) << p.problem;
  std::string spin_max = std::string("[switch]\nwatchdog_ms = 1000\n") + kTwoEndpoints;
  spin_max.insert(spin_max.find("frontend = \"generator\""), "poll_max_us = 250001\n");
  auto m = only_error(spin_max, "endpoint[0].poll_max_us");
  EXPECT_NE(m.problem.find("quarter of switch.watchdog_ms"), std::string::npos) << m.problem;
}

TEST(Topology, TheAdaptivePollWindowIsOnByDefaultAndCanBeTurnedOff) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t->endpoints[0].poll_max_us, kDefaultPollMaxUs);
  std::string off = kTwoEndpoints;
  off.insert(off.find("frontend = \"generator\""), "poll_max_us = 0\n");
  auto o = load_topology_string(off, "test.toml");
  ASSERT_TRUE(o.has_value()) << format_errors(o.error());
  EXPECT_EQ(o->endpoints[0].poll_max_us, 0u);
  EXPECT_EQ(o->endpoints[1].poll_max_us, kDefaultPollMaxUs);
}

TEST(Topology, WakeCoalescingIsOffByDefaultAndBounded) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t->endpoints[0].coalesce_us, 0u);
  std::string on = kTwoEndpoints;
  on.insert(on.find("frontend = \"generator\""), "coalesce_us = 50\n");
  auto o = load_topology_string(on, "test.toml");
  ASSERT_TRUE(o.has_value()) << format_errors(o.error());
  EXPECT_EQ(o->endpoints[0].coalesce_us, 50u);
  EXPECT_EQ(o->endpoints[1].coalesce_us, 0u);
  std::string big = kTwoEndpoints;
  big.insert(big.find("frontend = \"generator\""), "coalesce_us = 10001\n");
  auto e = only_error(big, "endpoint[0].coalesce_us");
  EXPECT_NE(e.problem.find("10000"), std::string::npos) << e.problem;
}

TEST(Topology, EndpointsRunUnderTheirOwnIdsAndASyscallFilterByDefault) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t->switch_config.endpoint_uid_base, 60600u);
  EXPECT_EQ(t->switch_config.seccomp, "enforce");
  auto set = load_topology_string(std::string("[switch]\nendpoint_uid_base = 0\nseccomp = \"log\"\n") + kTwoEndpoints,
                                  "test.toml");
  ASSERT_TRUE(set.has_value()) << format_errors(set.error());
  EXPECT_EQ(set->switch_config.endpoint_uid_base, 0u);
  EXPECT_EQ(set->switch_config.seccomp, "log");
  auto bad = only_error(std::string("[switch]\nseccomp = \"strict\"\n") + kTwoEndpoints, "switch.seccomp");
  EXPECT_EQ(bad.line, 2u);
  EXPECT_NE(bad.problem.find("\"enforce\", \"log\", \"off\""), std::string::npos) << bad.problem;
  // Ids stay below 2^31 with room for every endpoint.
  auto high = only_error(std::string("[switch]\nendpoint_uid_base = 2147483584\n") + kTwoEndpoints,
                         "switch.endpoint_uid_base");
  EXPECT_NE(high.problem.find("out of range"), std::string::npos) << high.problem;
}

TEST(Topology, EndpointIdsMustBelongToNoUserOrGroup) {
  auto t = load_topology_string(kTwoEndpoints, "test.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_TRUE(check_endpoint_ids(*t).empty()) << format_errors(check_endpoint_ids(*t));  // the default block is free
  auto off = load_topology_string(std::string("[switch]\nendpoint_uid_base = 0\n") + kTwoEndpoints, "test.toml");
  ASSERT_TRUE(off.has_value());
  EXPECT_TRUE(check_endpoint_ids(*off).empty());  // 0: no ids taken at all
  // A base whose first id is a system user's (Debian's uid 1 is "daemon"; any named user
  // below 1000 does).
  std::uint32_t named = 0;
  for (std::uint32_t id = 1; id < 1000 && named == 0; ++id)
    if (::getpwuid(id) != nullptr) named = id;
  ASSERT_NE(named, 0u) << "no user with an id in 1..999 on this system";
  const std::string user = ::getpwuid(named)->pw_name;
  auto taken = load_topology_string(std::string("[switch]\nendpoint_uid_base = ") + std::to_string(named) + "\n" +
                                        kTwoEndpoints,
                                    "test.toml");
  ASSERT_TRUE(taken.has_value()) << format_errors(taken.error());
  const TopologyErrors errs = check_endpoint_ids(*taken);
  ASSERT_FALSE(errs.empty());
  const TopologyError& e = errs.front();  // the next ids may be taken too
  EXPECT_EQ(e.key, "switch.endpoint_uid_base");
  EXPECT_EQ(e.line, 2u);
  EXPECT_NE(e.problem.find("endpoint a would run as id " + std::to_string(named)), std::string::npos) << e.problem;
  EXPECT_NE(e.problem.find("user \"" + user + "\""), std::string::npos) << e.problem;
}

TEST(Topology, PortSecurityNeedsAMac) {
  const std::string text = "[[endpoint]]\nname = \"a\"\nfrontend = \"generator\"\nport_security = true\n";
  auto e = only_error(text, "endpoint[0].port_security");
  EXPECT_EQ(e.line, 4u);
  EXPECT_NE(e.problem.find("mac"), std::string::npos);
}

TEST(Topology, EnabledIsABooleanAndOnByDefault) {
  std::string text = kTwoEndpoints;
  auto t = load_topology_string(text, "t.toml");
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(t.value().endpoints[0].enabled);
  text.insert(text.find("frontend = \"generator\""), "enabled = false\n");
  t = load_topology_string(text, "t.toml");
  ASSERT_TRUE(t.has_value());
  EXPECT_FALSE(t.value().endpoints[0].enabled);
  EXPECT_TRUE(t.value().endpoints[1].enabled);
  text = kTwoEndpoints;
  text.insert(text.find("frontend = \"generator\""), "enabled = \"no\"\n");
  auto e = only_error(text, "endpoint[0].enabled");
  EXPECT_NE(e.problem.find("true or false"), std::string::npos);
}

TEST(Topology, TwoPortsCannotShareATapOrASocket) {
  const std::string head = "[[endpoint]]\nname = \"a\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = \"t0\"\n";
  auto e = only_error(head + "[[endpoint]]\nname = \"b\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = \"t0\"\n",
                      "endpoint[1].tap.ifname");
  EXPECT_EQ(e.line, 6u);
  EXPECT_NE(e.problem.find("already endpoint \"a\"'s TAP"), std::string::npos) << e.problem;
  EXPECT_TRUE(load_topology_string(head + "[[endpoint]]\nname = \"b\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = "
                                          "\"t0\"\nnetns = \"other\"\n",
                                   "t.toml")
                  .has_value())
      << "the same name in another namespace is another device";
  const std::string vu = "[[endpoint]]\nname = \"v\"\nfrontend = \"vhost-user\"\n[endpoint.vhost_user]\nsocket = \"/run/v.sock\"\n";
  e = only_error(head + vu + "[[endpoint]]\nname = \"w\"\nfrontend = \"vhost-user\"\nenabled = false\n"
                              "[endpoint.vhost_user]\nsocket = \"/run/v.sock\"\n",
                 "endpoint[2].vhost_user.socket");
  EXPECT_NE(e.problem.find("already endpoint \"v\"'s socket"), std::string::npos) << e.problem;
}

TEST(Topology, PortSecurityMustBeABoolean) {
  std::string text = kTwoEndpoints;
  text.insert(text.find("frontend = \"generator\""), "port_security = 1\n");
  auto e = only_error(text, "endpoint[0].port_security");
  EXPECT_NE(e.problem.find("true or false"), std::string::npos);
}

}  // namespace
}  // namespace vswitch
