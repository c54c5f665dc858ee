#include "vswitch/config/topology_diff.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

namespace vswitch {
namespace {

// Two TAP endpoints and a generator; `a_extra` goes into a's table, `tail` at the end.
std::string topology(const std::string& a_extra = "", const std::string& fabric = "ring_bytes = 1048576\n",
                     const std::string& tail = "") {
  return "[switch]\nname = \"diff\"\n\n[fabric]\n" + fabric +
         "\n[[endpoint]]\nname = \"a\"\nmac = \"02:00:00:00:00:01\"\nfrontend = \"tap\"\n" + a_extra +
         "[endpoint.tap]\nifname = \"ta\"\n"
         "\n[[endpoint]]\nname = \"b\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = \"tb\"\n"
         "\n[[endpoint]]\nname = \"g\"\nfrontend = \"generator\"\n[endpoint.generator]\nrate_fps = 10\n" + tail;
}

Topology load(const std::string& text) {
  auto t = load_topology_string(text, "t.toml");
  EXPECT_TRUE(t.has_value()) << (t ? "" : format_errors(t.error()));
  return t ? t.value() : Topology{};
}

// The line of the first line of `text` that starts with `prefix` (1-based).
std::uint32_t line_of(const std::string& text, const std::string& prefix) {
  std::uint32_t line = 1;
  for (std::size_t at = 0; at < text.size(); ++line) {
    if (text.compare(at, prefix.size(), prefix) == 0) return line;
    const auto nl = text.find('\n', at);
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return 0;
}

TEST(TopologyChanges, NothingButCommentsAndSpacingIsNoChange) {
  const std::string text = topology();
  EXPECT_TRUE(topology_changes(load(text), load("# a comment\n\n" + text)).empty());
}

// An endpoint's own settings are its own (applied by restarting it), each named with its
// key, both values and the line the key is on in the new file.
TEST(TopologyChanges, AnEndpointsOwnSettingsAreLocalToItWithTheirLine) {
  const Topology running = load(topology());
  struct Case {
    std::string extra, key, was, now;
  };
  const Case cases[] = {
      {"mtu = 1400\n", "endpoint a: mtu", "(unset)", "1400"},
      {"poll_us = 20\n", "endpoint a: poll_us", "0", "20"},
      {"poll_max_us = 0\n", "endpoint a: poll_max_us", "50", "0"},
      {"coalesce_us = 100\n", "endpoint a: coalesce_us", "0", "100"},
      {"port_security = false\n", "endpoint a: port_security", "true", "false"},
      {"core = 1\n", "endpoint a: core", "(unset)", "1"},
  };
  for (const auto& k : cases) {
    const std::string next_text = topology(k.extra);
    const auto changes = topology_changes(running, load(next_text));
    ASSERT_EQ(changes.size(), 1u) << k.key;
    EXPECT_EQ(changes[0].key, k.key);
    EXPECT_EQ(changes[0].was, k.was);
    EXPECT_EQ(changes[0].now, k.now);
    EXPECT_EQ(changes[0].endpoint, std::optional<std::size_t>(0)) << k.key;
    EXPECT_EQ(changes[0].line, line_of(next_text, k.extra.substr(0, k.extra.find(' ')))) << k.key;
    EXPECT_EQ(changes[0].describe("t.toml"),
              "t.toml:" + std::to_string(changes[0].line) + ": " + k.key + ": " + k.was + " -> " + k.now);
  }
  const std::string gen = topology("", "ring_bytes = 1048576\n", "sizes = [64, 1500]\n");
  const auto g = topology_changes(running, load(gen));
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].key, "endpoint g: generator.sizes");
  EXPECT_EQ(g[0].endpoint, std::optional<std::size_t>(2));
  EXPECT_EQ(g[0].line, line_of(gen, "sizes"));
}

// `enabled` is the port's own: vswitchd turns that port on or off alone. While it is off in
// the running topology, what only its TAP or socket depends on may change with it; while
// it runs, not.
TEST(TopologyChanges, TurningAPortOnOrOffIsItsOwnAndAnIdlePortsTapMayChange) {
  const Topology running = load(topology());
  const std::string off_text = topology("enabled = false\n");
  const Topology off = load(off_text);
  EXPECT_FALSE(off.endpoints[0].enabled);
  EXPECT_TRUE(running.endpoints[0].enabled);
  auto changes = topology_changes(running, off);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "endpoint a: enabled");
  EXPECT_EQ(changes[0].was, "true");
  EXPECT_EQ(changes[0].now, "false");
  EXPECT_EQ(changes[0].endpoint, std::optional<std::size_t>(0));
  EXPECT_EQ(changes[0].line, line_of(off_text, "enabled"));
  EXPECT_TRUE(changes[0].applicable());
  // Off in the running topology: its TAP's name may change as it is turned on.
  std::string renamed = topology();
  renamed.replace(renamed.find("ifname = \"ta\""), 13, "ifname = \"tz\"");
  changes = topology_changes(off, load(renamed));
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "endpoint a: enabled");
  EXPECT_EQ(changes[1].key, "endpoint a: tap.ifname");
  EXPECT_TRUE(changes[1].applicable());
  // Running: the same rename needs a restart of vswitchd.
  changes = topology_changes(running, load(renamed));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].applicable());
  // Off, its address may change too: every MAC table takes the new one from its slice
  // (StatsSlice::write_port_table), and its TAP is made with it as it is turned on.
  std::string remac = topology("enabled = false\n");
  remac.replace(remac.find("mac = \"02:00:00:00:00:01\""), 25, "mac = \"02:00:00:00:00:09\"");
  changes = topology_changes(off, load(remac));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "endpoint a: mac");
  EXPECT_EQ(changes[0].endpoint, std::optional<std::size_t>(0));
}

// A port's VLANs are its own to restart on; the other endpoints take them from their
// slices (StatsSlice::write_port_table), so no restart of vswitchd.
TEST(TopologyChanges, APortsVlansAreItsOwn) {
  const Topology running = load(topology());
  struct Case {
    std::string text, key;
  };
  const Case cases[] = {
      {topology("vlan = 10\n"), "endpoint a: vlan"},
      {topology("trunk = [10]\n"), "endpoint a: trunk"},
  };
  for (const auto& k : cases) {
    const auto changes = topology_changes(running, load(k.text));
    ASSERT_EQ(changes.size(), 1u) << k.key;
    EXPECT_EQ(changes[0].key, k.key);
    ASSERT_TRUE(changes[0].endpoint.has_value()) << k.key;
    EXPECT_EQ(*changes[0].endpoint, 0u) << k.key;
    EXPECT_TRUE(changes[0].applicable()) << k.key;
  }
}

// What every endpoint reads, or what sizes the shared objects, needs a restart of
// vswitchd: no endpoint is named.
TEST(TopologyChanges, SharedSettingsAndEndpointsAddedOrRemovedNeedARestart) {
  const Topology running = load(topology());
  struct Case {
    std::string text, key;
  };
  const Case cases[] = {
      {topology("", "ring_bytes = 2097152\n"), "fabric.ring_bytes"},
      {topology("", "ring_bytes = 1048576\nstall_timeout_ms = 900\n"), "fabric.stall_timeout_ms"},
      {topology("", "ring_bytes = 1048576\n", "\n[[endpoint]]\nname = \"c\"\nfrontend = \"generator\"\n"),
       "endpoint c: added (generator)"},
  };
  for (const auto& k : cases) {
    const auto changes = topology_changes(running, load(k.text));
    ASSERT_EQ(changes.size(), 1u) << k.key;
    EXPECT_EQ(changes[0].key, k.key);
    EXPECT_FALSE(changes[0].endpoint.has_value()) << k.key;
    EXPECT_FALSE(changes[0].applicable()) << k.key;
    EXPECT_NE(changes[0].line, 0u) << k.key;
  }
  std::string renamed = topology();
  renamed.replace(renamed.find("mac = \"02:00:00:00:00:01\""), 25, "mac = \"02:00:00:00:00:09\"");
  const auto mac = topology_changes(running, load(renamed));
  ASSERT_EQ(mac.size(), 1u);
  EXPECT_EQ(mac[0].key, "endpoint a: mac");
  EXPECT_FALSE(mac[0].endpoint.has_value()) << "every port holds a declared mac as a static entry";
}

// The metrics address is vswitchd's alone: applied by vswitchd (its listener moves), no
// endpoint restarted. Turning metrics on or off is a change of it too.
TEST(TopologyChanges, TheMetricsAddressIsAppliedByVswitchdItself) {
  const std::string on = topology("", "ring_bytes = 1048576\n", "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n");
  const std::string moved = topology("", "ring_bytes = 1048576\n", "\n[metrics]\nlisten = \"127.0.0.1:9465\"\n");
  for (const auto& [from, to, was, now] :
       {std::tuple{on, moved, "\"127.0.0.1:9464\"", "\"127.0.0.1:9465\""}, std::tuple{topology(), on, "(unset)", "\"127.0.0.1:9464\""},
        std::tuple{on, topology(), "\"127.0.0.1:9464\"", "(unset)"}}) {
    const auto changes = topology_changes(load(from), load(to));
    ASSERT_EQ(changes.size(), 1u) << to;
    EXPECT_EQ(changes[0].key, "metrics.listen");
    EXPECT_EQ(changes[0].was, was);
    EXPECT_EQ(changes[0].now, now);
    EXPECT_TRUE(changes[0].daemon);
    EXPECT_FALSE(changes[0].endpoint.has_value());
    EXPECT_TRUE(changes[0].applicable());
  }
}

// A VM's MTU, ring size and memory are its VMM's, fixed when it started: a vhost-user
// port's are not changed live (a smaller limit would refuse the VMM's reconnect).
TEST(TopologyChanges, AVhostUserPortsVmSettingsNeedARestart) {
  const std::string vm =
      "[switch]\nname = \"d\"\n[[endpoint]]\nname = \"vm\"\nfrontend = \"vhost-user\"\n{MTU}"
      "[endpoint.vhost_user]\nsocket = \"/run/vswitch/vm.sock\"\n{VU}"
      "[[endpoint]]\nname = \"t\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = \"tt\"\n";
  const auto make = [&](const std::string& mtu, const std::string& vu) {
    std::string s = vm;
    s.replace(s.find("{MTU}"), 5, mtu);
    s.replace(s.find("{VU}"), 4, vu);
    return load(s);
  };
  const Topology running = make("", "");
  for (const auto& [mtu, vu, key] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"mtu = 1400\n", "", "endpoint vm: mtu"},
           {"", "queue_size = 256\n", "endpoint vm: vhost_user.queue_size"},
           {"", "max_guest_memory_gib = 2\n", "endpoint vm: vhost_user.max_guest_memory_gib"},
           {"", "socket_mode = \"0660\"\n", "endpoint vm: vhost_user.socket_mode"},
       }) {
    const auto changes = topology_changes(running, make(mtu, vu));
    ASSERT_EQ(changes.size(), 1u) << key;
    EXPECT_EQ(changes[0].key, key);
    EXPECT_FALSE(changes[0].endpoint.has_value()) << key;
  }
}

// The switch's own tables, and endpoints removed, moved or of another kind.
TEST(TopologyChanges, EndpointsRemovedMovedOrReplacedAndSwitchTablesNeedARestart) {
  const Topology running = load(topology());
  std::string text = topology();
  text.replace(text.find("name = \"diff\""), 13, "name = \"diff\"\nwatchdog_ms = 500");
  auto changes = topology_changes(running, load(text));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "switch.watchdog_ms");
  EXPECT_EQ(changes[0].line, 3u);
  EXPECT_FALSE(changes[0].endpoint.has_value());

  changes = topology_changes(running, load(topology("", "ring_bytes = 1048576\n", "\n[capture]\nring_bytes = 0\n")));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "capture.ring_bytes");

  // b removed: g moves from port 2 to 1, and b is gone.
  std::string no_b = topology();
  const auto b_at = no_b.find("[[endpoint]]\nname = \"b\"");
  no_b.erase(b_at, no_b.find("[[endpoint]]\nname = \"g\"") - b_at);
  changes = topology_changes(running, load(no_b));
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "endpoint b: removed");
  EXPECT_EQ(changes[1].key, "endpoint g: position (port number)");
  EXPECT_EQ(changes[1].was, "2");
  EXPECT_EQ(changes[1].now, "1");

  std::string kind = topology();
  const std::string tap_b = "name = \"b\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = \"tb\"\n";
  kind.replace(kind.find(tap_b), tap_b.size(), "name = \"b\"\nfrontend = \"generator\"\n");
  changes = topology_changes(running, load(kind));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "endpoint b: frontend");
  EXPECT_FALSE(changes[0].endpoint.has_value());
}


// `text` laid out on ports as vswitchd runs it, after `running` (none: at start).
Topology placed(const Topology* running, const std::string& text) {
  auto t = place_in_slots(running, load(text));
  EXPECT_TRUE(t.has_value()) << (t ? "" : format_errors(t.error()));
  return t ? t.value() : Topology{};
}

// Endpoints a, b (TAPs) and g, then `extra` endpoints (generators named by each letter), two
// spare ports; without b when `b` is false.
std::string with_spares(const std::string& extra, bool b = true) {
  std::string t = "[switch]\nname = \"diff\"\n\n[fabric]\nspare_ports = 2\n"
                  "\n[[endpoint]]\nname = \"a\"\nmac = \"02:00:00:00:00:01\"\nfrontend = \"tap\"\n"
                  "[endpoint.tap]\nifname = \"ta\"\n";
  if (b) t += "\n[[endpoint]]\nname = \"b\"\nfrontend = \"tap\"\n[endpoint.tap]\nifname = \"tb\"\n";
  t += "\n[[endpoint]]\nname = \"g\"\nfrontend = \"generator\"\n[endpoint.generator]\nrate_fps = 10\n";
  for (const char c : extra) t += std::string("\n[[endpoint]]\nname = \"") + c + "\"\nfrontend = \"generator\"\n";
  return t;
}

// With spare ports, an endpoint added to the file takes the first spare port and one
// removed gives its port back: each the change of that port alone, applied without a
// restart of vswitchd. Every endpoint keeps its port (and the key its objects are named
// by) whatever the file's order.
TEST(TopologyChanges, WithSparePortsEndpointsAreAddedAndRemovedPortByPort) {
  const Topology start = placed(nullptr, with_spares(""));
  ASSERT_EQ(start.endpoints.size(), 5u);
  EXPECT_TRUE(start.slotted);
  EXPECT_TRUE(start.endpoints[3].spare);
  EXPECT_EQ(start.endpoints[3].key, "spare-0");
  EXPECT_EQ(start.endpoints[4].key, "spare-1");
  EXPECT_FALSE(start.endpoints[3].enabled);
  EXPECT_TRUE(vlan_set(start.endpoints[3]).none()) << "a spare port is in no VLAN";
  EXPECT_EQ(start.file_text(), with_spares("")) << "what the file said, without vswitchd's table";
  EXPECT_FALSE(start.find(""));
  EXPECT_EQ(start.fabric_spec().endpoints[3], "spare-0");
  // The text vswitchd hands on loads as it runs (an endpoint program, vswitchctl).
  auto again = load_topology_string(start.source, "t.toml", true);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again.value().endpoints.size(), 5u);
  EXPECT_TRUE(topology_changes(start, again.value()).empty());

  const std::string add_text = with_spares("c");
  const Topology added = placed(&start, add_text);
  ASSERT_EQ(added.endpoints.size(), 5u);
  EXPECT_EQ(added.endpoints[3].name, "c");
  EXPECT_EQ(added.endpoints[3].key, "spare-0") << "its objects keep the port's key";
  auto changes = topology_changes(start, added);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "endpoint c: added (generator, port 3)");
  EXPECT_EQ(changes[0].endpoint, std::optional<std::size_t>(3));
  EXPECT_EQ(changes[0].line, line_of(add_text, "name = \"c\"") - 1);
  EXPECT_TRUE(changes[0].applicable());

  // b leaves: its port (1) becomes spare; c keeps port 3 though it moved up in the file.
  const Topology removed = placed(&added, with_spares("c", false));
  EXPECT_TRUE(removed.endpoints[1].spare);
  EXPECT_EQ(removed.endpoints[1].key, "b");
  EXPECT_EQ(removed.endpoints[3].name, "c");
  changes = topology_changes(added, removed);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, "endpoint b: removed");
  EXPECT_EQ(changes[0].endpoint, std::optional<std::size_t>(1));
  EXPECT_TRUE(changes[0].applicable());

  // A port freed by this same reload is not free yet: d, e and f find one spare port (4).
  auto full = place_in_slots(&added, load(with_spares("cdef", false)));
  ASSERT_FALSE(full.has_value());
  ASSERT_EQ(full.error().size(), 2u);
  EXPECT_NE(full.error()[0].message().find("endpoint e: added, but every spare port is taken"), std::string::npos)
      << full.error()[0].message();
  // While b's process is still stopping, its port is not free: d gets port 4.
  auto stopping = place_in_slots(&removed, load(with_spares("cd", false)), std::uint64_t{1} << 1);
  ASSERT_TRUE(stopping.has_value());
  EXPECT_TRUE(stopping.value().endpoints[1].spare);
  EXPECT_EQ(stopping.value().endpoints[4].name, "d");
  // Once b's removal is in force, its port is taken again: d gets 1, e gets 4.
  const Topology refilled = placed(&removed, with_spares("cde", false));
  EXPECT_EQ(refilled.endpoints[1].name, "d");
  EXPECT_EQ(refilled.endpoints[1].key, "b");
  EXPECT_EQ(refilled.endpoints[4].name, "e");
  changes = topology_changes(removed, refilled);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "endpoint d: added (generator, port 1)");
  EXPECT_EQ(changes[1].key, "endpoint e: added (generator, port 4)");

  // The file's order is not the ports': moving an endpoint in the file changes nothing.
  std::string reordered = with_spares("", true);
  const std::string g_table = "\n[[endpoint]]\nname = \"g\"\nfrontend = \"generator\"\n[endpoint.generator]\nrate_fps = 10\n";
  reordered.erase(reordered.find(g_table), g_table.size());
  reordered.insert(reordered.find("\n[[endpoint]]"), g_table);
  EXPECT_TRUE(topology_changes(start, placed(&start, reordered)).empty());

  // The number of spare ports sizes the shared memory: a restart of vswitchd.
  std::string more = with_spares("");
  more.replace(more.find("spare_ports = 2"), 15, "spare_ports = 3");
  changes = topology_changes(start, placed(&start, more));
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes[0].key, "fabric.spare_ports");
  EXPECT_FALSE(changes[0].applicable());
}

// [slots] is vswitchd's own: a file that sets it is refused with its line; a text vswitchd
// handed on is checked (every endpoint on one port, keys valid and unique).
TEST(TopologySlots, ATableOfPortsIsVswitchdsOwnAndChecked) {
  const Topology start = placed(nullptr, with_spares(""));
  auto as_file = load_topology_string(start.source, "t.toml");
  ASSERT_FALSE(as_file.has_value());
  EXPECT_NE(format_errors(as_file.error()).find("slots: is vswitchd's own table"), std::string::npos)
      << format_errors(as_file.error());
  const std::string base = with_spares("") + "\n[slots]\n";
  const std::pair<std::string, std::string> bad[] = {
      {"keys = [\"a\", \"b\", \"g\", \"x\"]\nnames = [\"a\", \"b\", \"g\", \"\", \"\"]\n", "keys and"},
      {"keys = [\"a\", \"b\", \"g\", \"x\", \"x\"]\nnames = [\"a\", \"b\", \"g\", \"\", \"\"]\n", "twice"},
      {"keys = [\"a\", \"b\", \"g\", \"x\", \"y.z\"]\nnames = [\"a\", \"b\", \"g\", \"\", \"\"]\n", "not a valid key"},
      {"keys = [\"a\", \"b\", \"g\", \"x\", \"y\"]\nnames = [\"a\", \"b\", \"b\", \"\", \"\"]\n", "twice"},
      {"keys = [\"a\", \"b\", \"g\", \"x\", \"y\"]\nnames = [\"a\", \"b\", \"\", \"\", \"\"]\n", "\"g\" holds no port"},
      {"keys = [\"a\", \"b\", \"g\", \"x\", \"y\"]\nnames = [\"a\", \"b\", \"g\", \"q\", \"\"]\n", "not an endpoint"},
      {"keys = \"a\"\nnames = []\n", "not an array of strings"},
  };
  for (const auto& [table, problem] : bad) {
    auto t = load_topology_string(base + table, "t.toml", true);
    ASSERT_FALSE(t.has_value()) << table;
    EXPECT_NE(format_errors(t.error()).find(problem), std::string::npos) << table << format_errors(t.error());
  }
  // At most 64 ports, endpoints and spare ports together, as laid out at start (with its
  // line); a file a reload reads may hold endpoints that took spare ports.
  std::string big = with_spares("");
  big.replace(big.find("spare_ports = 2"), 15, "spare_ports = 62");
  auto t = load_topology_string(big, "t.toml");
  ASSERT_TRUE(t.has_value()) << format_errors(t.error());
  EXPECT_EQ(t.value().endpoints.size(), 64u) << "as many spare ports as fit";
  auto at_start = place_in_slots(nullptr, t.value());
  ASSERT_FALSE(at_start.has_value());
  EXPECT_NE(format_errors(at_start.error()).find("t.toml:5: fabric.spare_ports: 3 endpoints and 62 spare ports: a switch has at most 64"),
            std::string::npos)
      << format_errors(at_start.error());
  // A spare port's key stays clear of every endpoint's name.
  std::string clash = with_spares("");
  clash.replace(clash.find("name = \"g\""), 10, "name = \"spare-0\"");
  auto c = load_topology_string(clash, "t.toml");
  ASSERT_TRUE(c.has_value()) << format_errors(c.error());
  EXPECT_EQ(c.value().endpoints[3].key, "_spare-0");
}

}  // namespace
}  // namespace vswitch