#include "vswitch/config/topology.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <toml++/toml.h>

#include "shm/fabric.hpp"
#include "shm/frame_ring.hpp"

namespace vswitch {

std::string TopologyError::message() const {
  std::string m = file;
  // Two appends, not ":" + to_string(line): g++ 12 at -O3 (a Release build) reports a
  // false -Wrestrict in the inlined operator+ (GCC bug 105329), an error with -Werror.
  if (line != 0) {
    m += ':';
    m += std::to_string(line);
  }
  m += ": ";
  if (!key.empty()) m += key + ": ";
  return m + problem;
}

std::string format_errors(const TopologyErrors& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += '\n';
    out += e.message();
  }
  return out;
}

std::string_view to_string(FrontendKind k) {
  switch (k) {
    case FrontendKind::kTap: return "tap";
    case FrontendKind::kVhostUser: return "vhost-user";
    case FrontendKind::kGenerator: return "generator";
  }
  return "unknown";
}

namespace {

std::string_view type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "a value";
}

std::uint32_t line_of(const toml::node& n) { return n.source().begin.line; }

// Reads typed values out of toml++ tables, recording each problem with its place.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  void error(std::uint32_t line, std::string key, std::string problem) {
    errors_.push_back(TopologyError{file_, line, std::move(key), std::move(problem)});
  }

  void only_keys(const toml::table& t, const std::string& prefix,
                 std::initializer_list<std::string_view> allowed) {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        error(k.source().begin.line != 0 ? k.source().begin.line : line_of(v),
              join(prefix, k.str()), "unknown key (known: " + list + ")");
      }
    }
  }

  std::optional<std::int64_t> integer(const toml::table& t, const std::string& prefix,
                                      std::string_view key, std::int64_t min, std::int64_t max) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    const auto* i = n->as_integer();
    if (i == nullptr) {
      error(line_of(*n), join(prefix, key), "must be an integer, not " + std::string(type_name(n->type())));
      return std::nullopt;
    }
    const std::int64_t v = i->get();
    if (v < min || v > max) {
      error(line_of(*n), join(prefix, key),
            std::to_string(v) + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
      return std::nullopt;
    }
    return v;
  }

  std::optional<std::string> string(const toml::table& t, const std::string& prefix,
                                    std::string_view key, bool required, std::uint32_t table_line) {
    const toml::node* n = t.get(key);
    if (n == nullptr) {
      if (required) error(table_line, join(prefix, key), "missing (required)");
      return std::nullopt;
    }
    const auto* s = n->as_string();
    if (s == nullptr) {
      error(line_of(*n), join(prefix, key), "must be a string, not " + std::string(type_name(n->type())));
      return std::nullopt;
    }
    return s->get();
  }

  std::optional<bool> boolean(const toml::table& t, const std::string& prefix, std::string_view key) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    const auto* b = n->as_boolean();
    if (b == nullptr) {
      error(line_of(*n), join(prefix, key), "must be true or false, not " + std::string(type_name(n->type())));
      return std::nullopt;
    }
    return b->get();
  }

  const toml::table* table(const toml::table& t, const std::string& prefix, std::string_view key) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return nullptr;
    if (const auto* tt = n->as_table()) return tt;
    error(line_of(*n), join(prefix, key), "must be a table, not " + std::string(type_name(n->type())));
    return nullptr;
  }

  static std::string join(const std::string& prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }

  TopologyErrors& errors() { return errors_; }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  TopologyErrors errors_;
};

template <typename T>
void assign(std::optional<std::int64_t> v, T& out) {
  if (v) out = static_cast<T>(*v);
}

void read_switch(Reader& r, const toml::table& root, Topology& t) {
  const toml::table* s = r.table(root, "", "switch");
  if (s == nullptr) return;
  r.only_keys(*s, "switch",
              {"name", "mac_table_size", "aging_s", "max_macs_per_port", "watchdog_ms", "endpoint_uid_base", "seccomp"});
  if (auto name = r.string(*s, "switch", "name", false, line_of(*s))) {
    if (!shm::valid_name_component(*name))
      r.error(line_of(*s->get("name")), "switch.name",
              "\"" + *name + "\" must be 1-64 characters of [A-Za-z0-9_-]");
    else
      t.switch_config.name = *name;
  }
  assign(r.integer(*s, "switch", "mac_table_size", 1, 1 << 24), t.switch_config.mac_table_size);
  assign(r.integer(*s, "switch", "aging_s", 0, std::int64_t{86400} * 365), t.switch_config.aging_s);
  if (auto m = r.integer(*s, "switch", "max_macs_per_port", 1, 1 << 24)) {
    if (*m > t.switch_config.mac_table_size)
      r.error(line_of(*s->get("max_macs_per_port")), "switch.max_macs_per_port",
              std::to_string(*m) + " is above mac_table_size = " + std::to_string(t.switch_config.mac_table_size));
    else
      t.switch_config.max_macs_per_port = static_cast<std::uint32_t>(*m);
  }
  if (auto w = r.integer(*s, "switch", "watchdog_ms", 0, std::int64_t{3600} * 1000)) {
    if (*w != 0 && *w < 100)
      r.error(line_of(*s->get("watchdog_ms")), "switch.watchdog_ms",
              std::to_string(*w) + " is below 100 ms (0 turns the watchdog off)");
    else
      t.switch_config.watchdog_ms = static_cast<std::uint32_t>(*w);
  }
  // Ids stay below 2^31 (some programs take larger ones for negative numbers), with room
  // for 64 endpoints (the most a switch has).
  if (auto b = r.integer(*s, "switch", "endpoint_uid_base", 0, std::int64_t{0x7fffffff} - 64)) {
    t.switch_config.endpoint_uid_base = static_cast<std::uint32_t>(*b);
    t.switch_config.endpoint_uid_base_line = line_of(*s->get("endpoint_uid_base"));
  }
  if (auto f = r.string(*s, "switch", "seccomp", false, line_of(*s))) {
    if (*f != "enforce" && *f != "log" && *f != "off")
      r.error(line_of(*s->get("seccomp")), "switch.seccomp", "\"" + *f + "\" is not one of \"enforce\", \"log\", \"off\"");
    else
      t.switch_config.seccomp = *f;
  }
}

void read_fabric(Reader& r, const toml::table& root, Topology& t) {
  const toml::table* f = r.table(root, "", "fabric");
  if (f == nullptr) return;
  r.only_keys(*f, "fabric", {"ring_bytes", "max_frame", "stall_timeout_ms", "spare_ports"});
  assign(r.integer(*f, "fabric", "spare_ports", 0, static_cast<std::int64_t>(kMaxPorts)), t.fabric.spare_ports);
  if (const toml::node* n = f->get("spare_ports")) t.fabric.spare_ports_line = line_of(*n);
  assign(r.integer(*f, "fabric", "max_frame", 64, shm::kMaxFrameBytes), t.fabric.max_frame);
  assign(r.integer(*f, "fabric", "stall_timeout_ms", 1, std::int64_t{3600} * 1000), t.fabric.stall_timeout_ms);
  if (auto ring = r.integer(*f, "fabric", "ring_bytes", 1,
                            static_cast<std::int64_t>(shm::kMaxRingCapacity))) {
    const auto bytes = static_cast<std::uint64_t>(*ring);
    const std::uint32_t line = line_of(*f->get("ring_bytes"));
    const std::uint64_t one_frame = shm::record_bytes(t.fabric.max_payload());
    if ((bytes & (bytes - 1)) != 0) {
      r.error(line, "fabric.ring_bytes", std::to_string(bytes) + " is not a power of two");
    } else if (bytes < one_frame) {
      r.error(line, "fabric.ring_bytes",
              std::to_string(bytes) + " is below one maximum frame record (" +
                  std::to_string(one_frame) + " bytes for max_frame = " +
                  std::to_string(t.fabric.max_frame) + " plus headers)");
    } else {
      t.fabric.ring_bytes = bytes;
    }
  }
}

void read_metrics(Reader& r, const toml::table& root, Topology& t) {
  const toml::table* m = r.table(root, "", "metrics");
  if (m == nullptr) return;
  r.only_keys(*m, "metrics", {"listen"});
  auto listen = r.string(*m, "metrics", "listen", true, line_of(*m));
  if (!listen) return;
  const std::uint32_t line = line_of(*m->get("listen"));
  auto bad = [&](const std::string& why) {
    r.error(line, "metrics.listen", "\"" + *listen + "\": " + why);
  };
  const std::size_t colon = listen->rfind(':');
  if (colon == std::string::npos) return bad("not ADDR:PORT (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\")");
  std::string addr = listen->substr(0, colon);
  const std::string port_text = listen->substr(colon + 1);
  const bool v6 = addr.size() >= 2 && addr.front() == '[' && addr.back() == ']';
  if (v6) addr = addr.substr(1, addr.size() - 2);
  unsigned char buf[sizeof(in6_addr)];
  if (::inet_pton(v6 ? AF_INET6 : AF_INET, addr.c_str(), buf) != 1)
    return bad(v6 ? "\"" + addr + "\" is not a numeric IPv6 address"
                  : "\"" + addr + "\" is not a numeric IPv4 address (an IPv6 one goes in brackets)");
  unsigned long port = 0;
  const bool digits = !port_text.empty() && port_text.size() <= 5 &&
                      std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) port = std::stoul(port_text);
  if (!digits || port == 0 || port > 65535) return bad("the port must be 1..65535");
  t.metrics.listen = *listen;
  t.metrics.address = addr;
  t.metrics.port = static_cast<std::uint16_t>(port);
  t.metrics.line = line;
}

void read_capture(Reader& r, const toml::table& root, Topology& t) {
  const toml::table* c = r.table(root, "", "capture");
  if (c == nullptr) return;
  r.only_keys(*c, "capture", {"ring_bytes"});
  auto ring = r.integer(*c, "capture", "ring_bytes", 0, static_cast<std::int64_t>(CaptureConfig::kMaxRingBytes));
  if (!ring) return;
  const auto bytes = static_cast<std::uint64_t>(*ring);
  const std::uint32_t line = line_of(*c->get("ring_bytes"));
  // Four of the largest records: a reader a little behind still finds room for the next.
  const std::uint64_t least = 4 * shm::record_bytes(std::uint64_t{t.fabric.max_frame} + CaptureConfig::kRecordHeaderBytes);
  if (bytes == 0) {
    t.capture.ring_bytes = 0;
  } else if ((bytes & (bytes - 1)) != 0) {
    r.error(line, "capture.ring_bytes", std::to_string(bytes) + " is not a power of two (or 0: capture off)");
  } else if (bytes < least) {
    r.error(line, "capture.ring_bytes",
            std::to_string(bytes) + " holds fewer than four of the largest capture records (" + std::to_string(least) +
                " bytes for max_frame = " + std::to_string(t.fabric.max_frame) + ")");
  } else {
    t.capture.ring_bytes = bytes;
  }
}

// The frontends a topology can name: the value of `frontend` and its options table.
struct FrontendName {
  std::string_view name;
  std::string_view options_table;
  FrontendKind kind;
};
constexpr FrontendName kFrontendNames[] = {{"tap", "tap", FrontendKind::kTap},
                                           {"vhost-user", "vhost_user", FrontendKind::kVhostUser},
                                           {"generator", "generator", FrontendKind::kGenerator}};

void read_endpoint_name(Reader& r, const toml::table& e, const std::string& p, const Topology& t, EndpointConfig& ep) {
  auto name = r.string(e, p, "name", true, ep.line);
  if (!name) return;
  const std::uint32_t line = line_of(*e.get("name"));
  if (!shm::valid_name_component(*name)) {
    r.error(line, p + ".name", "\"" + *name + "\" must be 1-64 characters of [A-Za-z0-9_-]");
    return;
  }
  for (const auto& other : t.endpoints)
    if (other.name == *name)
      r.error(line, p + ".name", "\"" + *name + "\" is already used by the endpoint at line " + std::to_string(other.line));
  ep.name = *name;
}

void read_endpoint_mac(Reader& r, const toml::table& e, const std::string& p, const Topology& t, EndpointConfig& ep) {
  auto mac = r.string(e, p, "mac", false, ep.line);
  if (!mac) return;
  const std::uint32_t line = line_of(*e.get("mac"));
  auto parsed = MacAddress::parse(*mac);
  if (!parsed) {
    r.error(line, p + ".mac", "\"" + *mac + "\" is not a MAC address (expected xx:xx:xx:xx:xx:xx)");
    return;
  }
  if (parsed->is_multicast() || parsed->is_zero()) {
    r.error(line, p + ".mac", "\"" + *mac + "\" is a multicast or zero address, not a port's own");
    return;
  }
  for (const auto& other : t.endpoints)
    if (other.mac && *other.mac == *parsed)
      r.error(line, p + ".mac", "\"" + *mac + "\" is already used by endpoint \"" + other.name + "\"");
  ep.mac = parsed;
}

// `frontend`, and no options table but the one of that frontend.
std::optional<FrontendKind> read_frontend_kind(Reader& r, const toml::table& e, const std::string& p,
                                               const EndpointConfig& ep) {
  const auto frontend = r.string(e, p, "frontend", true, ep.line);
  std::optional<FrontendKind> kind;
  if (frontend) {
    for (const auto& f : kFrontendNames)
      if (*frontend == f.name) kind = f.kind;
    if (!kind)
      r.error(line_of(*e.get("frontend")), p + ".frontend",
              "\"" + *frontend + "\" is not one of tap, vhost-user, generator");
  }
  for (const auto& f : kFrontendNames) {
    const toml::node* n = e.get(f.options_table);
    if (n != nullptr && kind && *kind != f.kind)
      r.error(line_of(*n), p + "." + std::string(f.options_table),
              "options for frontend \"" + std::string(to_string(f.kind)) + "\" on a \"" +
                  std::string(to_string(*kind)) + "\" endpoint");
  }
  return kind;
}

TapOptions read_tap_options(Reader& r, const toml::table& e, const std::string& p, const EndpointConfig& ep) {
  TapOptions o;
  const toml::table* tt = r.table(e, p, "tap");
  const std::string tp = p + ".tap";
  if (tt == nullptr) {
    if (e.get("tap") == nullptr) r.error(ep.line, tp, "missing (a tap endpoint needs [endpoint.tap] ifname)");
    return o;
  }
  r.only_keys(*tt, tp, {"ifname", "netns"});
  if (auto v = r.string(*tt, tp, "ifname", true, line_of(*tt))) {
    if (v->empty() || v->size() > 15)
      r.error(line_of(*tt->get("ifname")), tp + ".ifname", "\"" + *v + "\" must be 1-15 characters (IFNAMSIZ)");
    o.ifname = *v;
  }
  if (auto v = r.string(*tt, tp, "netns", false, line_of(*tt))) o.netns = *v;
  return o;
}

// The uid of user `name` or the gid of group `name`, if the system knows it.
std::optional<std::uint32_t> lookup_id(const std::string& name, bool group) {
  std::vector<char> buf(16384);
  if (group) {
    struct group g {};
    struct group* found = nullptr;
    if (::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found) != 0 || found == nullptr) return std::nullopt;
    return static_cast<std::uint32_t>(found->gr_gid);
  }
  struct passwd pw {};
  struct passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return std::nullopt;
  return static_cast<std::uint32_t>(found->pw_uid);
}

// socket_owner / socket_group: a user or group name (resolved now, so that a typo is
// reported with its line rather than when the endpoint starts) or a numeric id.
std::optional<std::uint32_t> read_owner(Reader& r, const toml::table& t, const std::string& prefix,
                                        const std::string& key, bool group) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::nullopt;
  const std::string where = prefix + "." + key;
  const char* what = group ? "group" : "user";
  if (const auto* i = n->as_integer()) {
    if (i->get() < 0 || i->get() >= 0xffffffffLL) {
      r.error(line_of(*n), where, std::to_string(i->get()) + " is not a valid " + (group ? "gid" : "uid"));
      return std::nullopt;
    }
    return static_cast<std::uint32_t>(i->get());
  }
  const auto* s = n->as_string();
  if (s == nullptr) {
    r.error(line_of(*n), where, "must be a " + std::string(what) + " name or a numeric id");
    return std::nullopt;
  }
  auto id = lookup_id(s->get(), group);
  if (!id) r.error(line_of(*n), where, "no " + std::string(what) + " \"" + s->get() + "\" on this system");
  return id;
}

// socket_mode: octal digits in a string ("0660"; a TOML integer would read 660 as
// decimal). Never writable by others: whoever can connect acts as the VM's VMM.
std::optional<std::uint32_t> read_mode(Reader& r, const toml::table& t, const std::string& prefix) {
  const toml::node* n = t.get("socket_mode");
  if (n == nullptr) return std::nullopt;
  const std::string where = prefix + ".socket_mode";
  const auto* s = n->as_string();
  const std::string v = s != nullptr ? s->get() : std::string();
  const bool octal = !v.empty() && v.size() <= 4 && v.find_first_not_of("01234567") == std::string::npos;
  if (!octal) {
    r.error(line_of(*n), where, "must be a string of octal digits such as \"0660\"");
    return std::nullopt;
  }
  const auto mode = static_cast<std::uint32_t>(std::stoul(v, nullptr, 8));
  if (mode > 0777 || (mode & 0002) != 0) {
    r.error(line_of(*n), where, "\"" + v + "\" must be at most 0777 and not writable by others (anyone could connect as the VMM)");
    return std::nullopt;
  }
  return mode;
}

VhostUserOptions read_vhost_user_options(Reader& r, const toml::table& e, const std::string& p,
                                         const EndpointConfig& ep) {
  VhostUserOptions o;
  const toml::table* vt = r.table(e, p, "vhost_user");
  const std::string vp = p + ".vhost_user";
  if (vt == nullptr) {
    if (e.get("vhost_user") == nullptr)
      r.error(ep.line, vp, "missing (a vhost-user endpoint needs [endpoint.vhost_user] socket)");
    return o;
  }
  r.only_keys(*vt, vp, {"socket", "queue_size", "socket_owner", "socket_group", "socket_mode", "max_guest_memory_gib"});
  if (auto v = r.string(*vt, vp, "socket", true, line_of(*vt))) o.socket = *v;
  if (auto q = r.integer(*vt, vp, "queue_size", 1, 32768)) {
    if ((*q & (*q - 1)) != 0)
      r.error(line_of(*vt->get("queue_size")), vp + ".queue_size", std::to_string(*q) + " is not a power of two");
    else
      o.queue_size = static_cast<std::uint32_t>(*q);
  }
  o.socket_owner = read_owner(r, *vt, vp, "socket_owner", false);
  o.socket_group = read_owner(r, *vt, vp, "socket_group", true);
  if (auto m = read_mode(r, *vt, vp)) o.socket_mode = *m;
  if (auto g = r.integer(*vt, vp, "max_guest_memory_gib", 1, 4096)) o.max_guest_memory_gib = static_cast<std::uint32_t>(*g);
  return o;
}

GeneratorOptions read_generator_options(Reader& r, const toml::table& e, const std::string& p, const Topology& t) {
  GeneratorOptions o;
  const std::string gp = p + ".generator";
  const toml::table* gt = r.table(e, p, "generator");
  if (gt == nullptr) return o;  // every option has a default
  r.only_keys(*gt, gp, {"rate_fps", "sizes", "peer"});
  assign(r.integer(*gt, gp, "rate_fps", 0, 1'000'000'000), o.rate_fps);
  if (auto v = r.string(*gt, gp, "peer", false, line_of(*gt))) o.peer = *v;
  const toml::node* s = gt->get("sizes");
  if (s == nullptr) return o;
  const toml::array* a = s->as_array();
  if (a == nullptr || a->empty()) {
    r.error(line_of(*s), gp + ".sizes", "must be a non-empty array of frame sizes");
    return o;
  }
  o.sizes.clear();
  for (std::size_t i = 0; i < a->size(); ++i) {
    const auto* iv = (*a)[i].as_integer();
    const std::string key = gp + ".sizes[" + std::to_string(i) + "]";
    if (iv == nullptr)
      r.error(line_of((*a)[i]), key, "must be an integer, not " + std::string(type_name((*a)[i].type())));
    else if (iv->get() < 60 || iv->get() > t.fabric.max_frame)
      r.error(line_of((*a)[i]), key,
              std::to_string(iv->get()) + " is outside [60, max_frame = " + std::to_string(t.fabric.max_frame) + "]");
    else
      o.sizes.push_back(static_cast<std::uint32_t>(iv->get()));
  }
  return o;
}

// The port's MTU: the largest IP packet (Ethernet payload) its frames may carry, as
// `ip link` shows it. It must leave room in a fabric record for the Ethernet header and
// one VLAN tag.
void read_endpoint_mtu(Reader& r, const toml::table& e, const std::string& p, const Topology& t, EndpointConfig& ep) {
  const auto m = r.integer(e, p, "mtu", kMinMtu, kMaxMtu);
  if (!m) return;
  if (*m + kMtuOverheadBytes > t.fabric.max_frame) {
    r.error(line_of(*e.get("mtu")), p + ".mtu",
            std::to_string(*m) + " + 18 (an Ethernet header and a VLAN tag) is above fabric.max_frame = " +
                std::to_string(t.fabric.max_frame));
    return;
  }
  ep.mtu = static_cast<std::uint32_t>(*m);
}

// `vlan` (the port's untagged VLAN) and `trunk` (the VLANs it carries tagged).
void read_endpoint_vlans(Reader& r, const toml::table& e, const std::string& p, EndpointConfig& ep) {
  if (auto v = r.integer(e, p, "vlan", kMinVlan, kMaxVlan)) ep.vlan = static_cast<std::uint16_t>(*v);
  const toml::node* n = e.get("trunk");
  if (n == nullptr) return;
  const toml::array* a = n->as_array();
  if (a == nullptr || a->empty()) {
    r.error(line_of(*n), p + ".trunk", "must be a non-empty array of VLAN ids (1..4094)");
    return;
  }
  for (std::size_t i = 0; i < a->size(); ++i) {
    const std::string key = p + ".trunk[" + std::to_string(i) + "]";
    const auto* iv = (*a)[i].as_integer();
    if (iv == nullptr) {
      r.error(line_of((*a)[i]), key, "must be an integer, not " + std::string(type_name((*a)[i].type())));
      continue;
    }
    const std::int64_t vid = iv->get();
    if (vid < kMinVlan || vid > kMaxVlan) {
      r.error(line_of((*a)[i]), key, std::to_string(vid) + " is out of range [1, 4094]");
      continue;
    }
    const auto v16 = static_cast<std::uint16_t>(vid);
    if (std::find(ep.trunk.begin(), ep.trunk.end(), v16) != ep.trunk.end()) {
      r.error(line_of((*a)[i]), key, "VLAN " + std::to_string(vid) + " is listed twice");
      continue;
    }
    if (ep.vlan && *ep.vlan == v16) {
      r.error(line_of((*a)[i]), key,
              "VLAN " + std::to_string(vid) + " is this port's untagged vlan; a port carries a VLAN either untagged or tagged");
      continue;
    }
    ep.trunk.push_back(v16);
  }
}

void read_endpoint(Reader& r, const toml::table& e, std::size_t index, Topology& t) {
  const std::string p = "endpoint[" + std::to_string(index) + "]";
  EndpointConfig ep;
  ep.line = line_of(e);
  r.only_keys(e, p, {"name", "frontend", "core", "mac", "poll_us", "poll_max_us", "coalesce_us", "port_security", "mtu", "vlan",
                    "trunk", "enabled", "tap", "vhost_user", "generator"});
  read_endpoint_name(r, e, p, t, ep);
  if (const toml::node* n = e.get("core")) {
    ep.core_line = line_of(*n);
    if (auto core = r.integer(e, p, "core", 0, 4095)) ep.core = static_cast<std::uint32_t>(*core);
  }
  read_endpoint_mac(r, e, p, t, ep);
  assign(r.integer(e, p, "poll_us", 0, 1000000), ep.poll_us);
  assign(r.integer(e, p, "poll_max_us", 0, 1000000), ep.poll_max_us);
  assign(r.integer(e, p, "coalesce_us", 0, kMaxCoalesceUs), ep.coalesce_us);
  // The poll spins without publishing its heartbeat: a spin as long as half the
  // watchdog's timeout would get a live endpoint killed as hung.
  for (const auto& [key, us] : {std::pair<const char*, std::uint32_t>{"poll_us", ep.poll_us}, {"poll_max_us", ep.poll_max_us}})
    if (const std::uint64_t wd_us = std::uint64_t{t.switch_config.watchdog_ms} * 1000;
        wd_us != 0 && std::uint64_t{us} * 4 > wd_us && e.get(key) != nullptr)
      r.error(line_of(*e.get(key)), p + "." + key,
              std::to_string(us) + " us is above a quarter of switch.watchdog_ms = " +
                  std::to_string(t.switch_config.watchdog_ms) + " ms (the watchdog would take the spin for a hang)");
  // An endpoint with its own address sends from that address only, unless the file says
  // otherwise: a guest that forges sources is refused by default.
  ep.port_security = ep.mac.has_value();
  if (auto ps = r.boolean(e, p, "port_security")) {
    ep.port_security = *ps;
    if (*ps && !e.get("mac"))
      r.error(line_of(*e.get("port_security")), p + ".port_security",
              "needs the endpoint's own mac (port security drops every source but that one)");
  }
  if (auto en = r.boolean(e, p, "enabled")) ep.enabled = *en;
  read_endpoint_mtu(r, e, p, t, ep);
  read_endpoint_vlans(r, e, p, ep);
  if (const auto kind = read_frontend_kind(r, e, p, ep)) {
    ep.frontend = *kind;
    switch (*kind) {
      case FrontendKind::kTap: ep.options = read_tap_options(r, e, p, ep); break;
      case FrontendKind::kVhostUser: ep.options = read_vhost_user_options(r, e, p, ep); break;
      case FrontendKind::kGenerator: ep.options = read_generator_options(r, e, p, t); break;
    }
  }
  // A generator's frames must pass its own port's MTU check.
  if (const auto* g = std::get_if<GeneratorOptions>(&ep.options); g != nullptr && ep.mtu)
    for (std::size_t i = 0; i < g->sizes.size(); ++i)
      if (g->sizes[i] > ep.frame_limit())
        r.error(line_of(*e.get("mtu")), p + ".generator.sizes[" + std::to_string(i) + "]",
                std::to_string(g->sizes[i]) + " bytes is above mtu " + std::to_string(*ep.mtu) +
                    " + 18 (an Ethernet header and a VLAN tag): every such frame would be dropped");
  ep.key = ep.name;
  t.endpoints.push_back(std::move(ep));
}

// A spare port (EndpointConfig::spare): disabled, nameless, in no VLAN.
EndpointConfig spare_port(std::string key) {
  EndpointConfig e;
  e.key = std::move(key);
  e.spare = true;
  e.enabled = false;
  e.frontend = FrontendKind::kGenerator;
  e.options = GeneratorOptions{};
  return e;
}

// fabric.spare_ports after the file's endpoints, keyed "spare-N" ('_' put in front while
// an endpoint has that name), as many as fit in kMaxPorts: a file a reload reads may hold
// endpoints that took spare ports (place_in_slots lays it out on the ports that run, and
// checks the sum only at start).
void add_spare_ports(Topology& t) {
  for (std::uint32_t i = 0; i < t.fabric.spare_ports && t.endpoints.size() < kMaxPorts; ++i) {
    std::string key = "spare-";  // appended: GCC 12 -O3 warns -Wrestrict on literal + temporary
    key += std::to_string(i);
    while (std::any_of(t.endpoints.begin(), t.endpoints.end(), [&](const EndpointConfig& e) { return e.key == key; }))
      key.insert(key.begin(), '_');
    t.endpoints.push_back(spare_port(std::move(key)));
  }
}

// vswitchd's [slots] table (place_in_slots): `keys`, one per port, name its objects;
// `names` says which endpoint holds each port ("": a spare one). Every endpoint of the
// text holds exactly one port.
void read_slots(Reader& r, const toml::node& node, Topology& t) {
  const toml::table* tb = node.as_table();
  if (tb == nullptr) return r.error(line_of(node), "slots", "must be a table");
  r.only_keys(*tb, "slots", {"keys", "names"});
  const auto strings = [&](std::string_view key) -> std::optional<std::vector<std::string>> {
    const toml::array* a = tb->get_as<toml::array>(key);
    if (a == nullptr) {
      r.error(line_of(*tb), "slots." + std::string(key), "missing, or not an array of strings");
      return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& v : *a) {
      const auto* str = v.as_string();
      if (str == nullptr) {
        r.error(line_of(v), "slots." + std::string(key), "holds something other than a string");
        return std::nullopt;
      }
      out.push_back(str->get());
    }
    return out;
  };
  const auto keys = strings("keys");
  const auto names = strings("names");
  if (!keys || !names) return;
  const std::uint32_t line = line_of(*tb);
  if (keys->size() != names->size() || keys->size() < t.endpoints.size() || keys->size() > kMaxPorts)
    return r.error(line, "slots", std::to_string(keys->size()) + " keys and " + std::to_string(names->size()) +
                                      " names for " + std::to_string(t.endpoints.size()) + " endpoints");
  std::vector<EndpointConfig> ports;
  std::vector<bool> placed(t.endpoints.size(), false);
  for (std::size_t s = 0; s < keys->size(); ++s) {
    const std::string& key = (*keys)[s];
    const std::string& name = (*names)[s];
    if (!shm::valid_name_component(key) ||
        std::find(keys->begin(), keys->begin() + static_cast<std::ptrdiff_t>(s), key) != keys->begin() + static_cast<std::ptrdiff_t>(s))
      return r.error(line, "slots.keys", "\"" + key + "\" is not a valid key, or is there twice");
    if (name.empty()) {
      ports.push_back(spare_port(key));
      continue;
    }
    std::size_t i = 0;
    while (i < t.endpoints.size() && t.endpoints[i].name != name) ++i;
    if (i == t.endpoints.size() || placed[i])
      return r.error(line, "slots.names", "\"" + name + "\" is not an endpoint of the text, or is there twice");
    placed[i] = true;
    ports.push_back(t.endpoints[i]);
    ports.back().key = key;
  }
  for (std::size_t i = 0; i < placed.size(); ++i)
    if (!placed[i]) return r.error(line, "slots.names", "endpoint \"" + t.endpoints[i].name + "\" holds no port");
  t.endpoints = std::move(ports);
  t.slotted = true;
}

// Debian's toml++ 3.3 reaches TOML_UNREACHABLE (undefined behaviour) when its lexer asks
// whether U+00A1..U+0499, U+2C5E..U+3057 (but U+3000) or U+FB26..U+FEFE is whitespace:
// is_non_ascii_horizontal_whitespace has no case for three of its 64 buckets (found by
// tests/fuzz/topology_fuzz.cpp). It asks that
// outside strings and comments, and also while looking ahead through malformed values, so
// no scan of ours can tell the safe places reliably: those code points are refused
// anywhere, before toml++ sees the text. Returns the first one and its line, or {0, 0}.
struct BadCodePoint {
  std::uint32_t line = 0;
  char32_t code_point = 0;
};
BadCodePoint find_code_point_toml_mishandles(std::string_view text) {
  std::uint32_t line = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (b0 == '\n') ++line;
    if (b0 < 0x80 || i + 1 >= text.size()) continue;
    const auto b1 = static_cast<unsigned char>(text[i + 1]);
    char32_t cp = 0;
    if ((b0 & 0xE0) == 0xC0 && (b1 & 0xC0) == 0x80) {
      cp = static_cast<char32_t>(((b0 & 0x1Fu) << 6) | (b1 & 0x3Fu));
    } else if ((b0 & 0xF0) == 0xE0 && i + 2 < text.size() && (b1 & 0xC0) == 0x80 &&
               (static_cast<unsigned char>(text[i + 2]) & 0xC0) == 0x80) {
      cp = static_cast<char32_t>(((b0 & 0x0Fu) << 12) | ((b1 & 0x3Fu) << 6) |
                                 (static_cast<unsigned char>(text[i + 2]) & 0x3Fu));
    } else {
      continue;  // other sequences (and invalid UTF-8) are toml++'s to judge
    }
    if ((cp >= 0xA1 && cp <= 0x499) || (cp >= 0x2C5E && cp <= 0x3057 && cp != 0x3000) ||
        (cp >= 0xFB26 && cp <= 0xFEFE))
      return {line, cp};
  }
  return {};
}

}  // namespace

sys::Result<Topology, TopologyErrors> load_topology_string(std::string_view text, const std::string& file,
                                                           bool running) {
  using sys::Unexpected;
  Reader r(file);
  if (const BadCodePoint bad = find_code_point_toml_mishandles(text); bad.line != 0) {
    char cp[16];
    std::snprintf(cp, sizeof cp, "U+%04X", static_cast<unsigned>(bad.code_point));
    r.error(bad.line, "", std::string("character ") + cp +
                              " is not accepted in topology files (toml++ 3.3 mishandles U+00A1-U+0499, "
                              "U+2C5E-U+3057 and U+FB26-U+FEFE); use ASCII");
    return Unexpected{r.errors()};
  }
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    r.error(e.source().begin.line, "", "TOML syntax: " + std::string(e.description()));
    return Unexpected{r.errors()};
  }
  Topology t;
  t.file = file;
  t.source = std::string(text);
  r.only_keys(root, "", {"switch", "fabric", "metrics", "capture", "endpoint", "slots"});
  read_switch(r, root, t);
  read_fabric(r, root, t);
  read_metrics(r, root, t);
  read_capture(r, root, t);
  const toml::node* eps = root.get("endpoint");
  const toml::array* arr = eps != nullptr ? eps->as_array() : nullptr;
  if (eps == nullptr) {
    r.error(0, "endpoint", "no [[endpoint]] tables: a switch needs at least two endpoints");
  } else if (arr == nullptr || !arr->is_array_of_tables()) {
    r.error(line_of(*eps), "endpoint", "must be an array of tables ([[endpoint]])");
  } else {
    for (std::size_t i = 0; i < arr->size(); ++i) read_endpoint(r, *(*arr)[i].as_table(), i, t);
    if (arr->size() < 2)
      r.error(line_of(*eps), "endpoint", "only " + std::to_string(arr->size()) +
                                             " endpoint: a switch needs at least two");
    // A generator's peer must name another endpoint.
    for (std::size_t i = 0; i < t.endpoints.size(); ++i) {
      const auto* g = std::get_if<GeneratorOptions>(&t.endpoints[i].options);
      if (g == nullptr || g->peer.empty()) continue;
      const bool found = std::any_of(t.endpoints.begin(), t.endpoints.end(), [&](const EndpointConfig& o) {
        return o.name == g->peer && &o != &t.endpoints[i];
      });
      if (!found)
        r.error(t.endpoints[i].line, "endpoint[" + std::to_string(i) + "].generator.peer",
                "\"" + g->peer + "\" is not another endpoint of this topology");
    }
    // One device per TAP name in a namespace, one endpoint per socket path: two ports on
    // one would share a VM or a namespace (and a reload that turns one on must not take
    // the other's socket from under its VMM).
    for (std::size_t i = 0; i < t.endpoints.size(); ++i)
      for (std::size_t j = 0; j < i; ++j) {
        const auto& a = t.endpoints[j].options;
        const auto& b = t.endpoints[i].options;
        const std::string p = "endpoint[" + std::to_string(i) + "]";
        if (const auto* x = std::get_if<TapOptions>(&a), *y = std::get_if<TapOptions>(&b);
            x != nullptr && y != nullptr && x->ifname == y->ifname && x->netns == y->netns)
          r.error(t.endpoints[i].line, p + ".tap.ifname",
                  "\"" + y->ifname + "\" is already endpoint \"" + t.endpoints[j].name + "\"'s TAP" +
                      (y->netns.empty() ? std::string() : " in netns \"" + y->netns + "\""));
        if (const auto* x = std::get_if<VhostUserOptions>(&a), *y = std::get_if<VhostUserOptions>(&b);
            x != nullptr && y != nullptr && x->socket == y->socket)
          r.error(t.endpoints[i].line, p + ".vhost_user.socket",
                  "\"" + y->socket + "\" is already endpoint \"" + t.endpoints[j].name + "\"'s socket");
      }
    // Each declared mac is a static entry in every MAC table, once per VLAN of its port:
    // the table must hold them all.
    std::uint64_t statics = 0;
    for (const auto& e : t.endpoints)
      if (e.mac) statics += e.vlan_aware() ? (e.vlan ? 1 : 0) + e.trunk.size() : 1;
    if (statics > t.switch_config.mac_table_size) {
      std::uint32_t line = 0;  // the default size: no line to name
      if (const toml::table* sw = root.get_as<toml::table>("switch"))
        if (const toml::node* n = sw->get("mac_table_size")) line = line_of(*n);
      r.error(line, "switch.mac_table_size",
              std::to_string(t.switch_config.mac_table_size) + " cannot hold the " + std::to_string(statics) +
                  " static entries of the declared macs (one in each VLAN of its port)");
    }
  }
  const toml::node* slots = root.get("slots");
  if (slots != nullptr && !running)
    r.error(line_of(*slots), "slots",
            "is vswitchd's own table (the port each endpoint holds, which it appends to what it runs); a topology "
            "file may not set it");
  // The ports, laid out once the endpoints are valid.
  if (r.errors().empty()) {
    if (t.endpoints.size() > kMaxPorts)
      r.error(line_of(*eps), "endpoint", std::to_string(t.endpoints.size()) + " endpoints: a switch has at most " +
                                             std::to_string(kMaxPorts) + " ports");
    else if (slots != nullptr) read_slots(r, *slots, t);
    else add_spare_ports(t);
  }
  if (!r.errors().empty()) return Unexpected{r.errors()};
  return t;
}

sys::Result<Topology, TopologyErrors> place_in_slots(const Topology* running, const Topology& file,
                                                     std::uint64_t busy) {
  const std::uint32_t spares = file.fabric.spare_ports;
  if (spares == 0 || (running != nullptr && running->fabric.spare_ports != spares)) return file;
  std::vector<std::string> keys;
  std::vector<std::string> names;
  if (running == nullptr) {
    const auto declared = static_cast<std::size_t>(
        std::count_if(file.endpoints.begin(), file.endpoints.end(), [](const EndpointConfig& e) { return !e.spare; }));
    if (declared + spares > kMaxPorts) {
      std::string problem = std::to_string(declared);
      problem += " endpoints and ";
      problem += std::to_string(spares);
      problem += " spare ports: a switch has at most ";
      problem += std::to_string(kMaxPorts);
      problem += " ports";
      return sys::Unexpected{TopologyErrors{TopologyError{file.file, file.fabric.spare_ports_line, "fabric.spare_ports",
                                                          std::move(problem)}}};
    }
    for (const auto& e : file.endpoints) {
      keys.push_back(e.key);
      names.push_back(e.name);
    }
  } else {
    for (const auto& e : running->endpoints) {
      keys.push_back(e.key);
      names.push_back(!e.spare && file.find(e.name) ? e.name : std::string());
    }
    TopologyErrors errors;
    for (const auto& e : file.endpoints) {
      if (e.spare || std::find(names.begin(), names.end(), e.name) != names.end()) continue;
      // A port its endpoint leaves in this same reload is not free yet: that endpoint
      // still runs until the reload stops it; nor is one whose last endpoint is still
      // stopping (`busy`).
      std::size_t s = 0;
      while (s < names.size() &&
             !(running->endpoints[s].spare && names[s].empty() && (s >= 64 || ((busy >> s) & 1) == 0)))
        ++s;
      if (s == names.size()) {
        std::uint64_t stopping = 0;
        for (std::size_t k = 0; k < names.size() && k < 64; ++k)
          if (running->endpoints[k].spare && names[k].empty()) stopping |= busy & (std::uint64_t{1} << k);
        std::string problem = "added, but every spare port is taken (fabric.spare_ports = ";
        problem += std::to_string(spares);
        problem += stopping != 0 ? "; the endpoint last on a spare port is still stopping: reload again once it has)"
                                 : "); adding it needs a restart of vswitchd";
        errors.push_back(TopologyError{file.file, e.line, "endpoint " + e.name, std::move(problem)});
        continue;
      }
      names[s] = e.name;
    }
    if (!errors.empty()) return sys::Unexpected{std::move(errors)};
  }
  std::string text(file.file_text());
  text += kSlotsIntro;
  const auto list = [&](const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i != 0) out += ", ";
      out += '"';
      out += v[i];  // [A-Za-z0-9_-]: nothing to escape
      out += '"';
    }
    out += "]\n";
    return out;
  };
  text += "[slots]\nkeys = ";
  text += list(keys);
  text += "names = ";
  text += list(names);
  return load_topology_string(text, file.file, true);
}

sys::Result<Topology, TopologyErrors> load_topology_file(const std::string& path) {
  using sys::Unexpected;
  // A regular file of a bounded size: a reload (SIGHUP) reads it in the running daemon,
  // which a FIFO would stall and a huge file bloat. Opened without blocking (a FIFO's
  // open waits for a writer), then judged by what was opened, then read at most 1 byte
  // past the limit (a file that grows meanwhile is refused, not read on and on).
  const auto error = [&](const std::string& what) { return Unexpected{TopologyErrors{TopologyError{path, 0, "", what}}}; };
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return error(std::string("cannot open the file: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return error(std::string("cannot open the file: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return error("not a regular file");
  const auto too_big = [&](std::uint64_t bytes) {
    return error(std::to_string(bytes) + " bytes; a topology may have at most " + std::to_string(kMaxTopologyBytes >> 20) +
                 " MiB");
  };
  if (static_cast<std::uint64_t>(st.st_size) > kMaxTopologyBytes) return too_big(static_cast<std::uint64_t>(st.st_size));
  std::string text(kMaxTopologyBytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return error(std::string("cannot read the file: ") + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > kMaxTopologyBytes) return too_big(got);
  text.resize(got);
  return load_topology_string(text, path);
}

TopologyErrors check_cores(const Topology& t, unsigned cpus) {
  TopologyErrors errs;
  for (std::size_t i = 0; i < t.endpoints.size(); ++i) {
    const auto& e = t.endpoints[i];
    if (e.core && *e.core >= cpus)
      errs.push_back(TopologyError{t.file, e.core_line, "endpoint[" + std::to_string(i) + "].core",
                                   "core " + std::to_string(*e.core) + " is beyond this machine's " +
                                       std::to_string(cpus) + " CPUs (0-" + std::to_string(cpus - 1) + ")"});
  }
  return errs;
}

TopologyErrors check_endpoint_ids(const Topology& t) {
  TopologyErrors errs;
  const std::uint32_t base = t.switch_config.endpoint_uid_base;
  if (base == 0) return errs;
  for (std::uint32_t i = 0; i < t.endpoints.size(); ++i) {
    const std::uint32_t id = base + i;
    std::string taken;
    // Piece by piece: GCC 12 at -O3 warns -Wrestrict (a false positive) on a literal +
    // std::string temporary.
    if (const passwd* u = ::getpwuid(id)) {
      taken = "user \"";
      taken += u->pw_name;
      taken += '"';
    }
    if (const group* g = ::getgrgid(id)) {
      taken += taken.empty() ? "group \"" : " and group \"";
      taken += g->gr_name;
      taken += '"';
    }
    if (taken.empty()) continue;
    std::string problem = t.endpoints[i].spare ? "spare port " : "endpoint ";
    problem += t.endpoints[i].spare ? t.endpoints[i].key : t.endpoints[i].name;
    problem += " would run as id ";
    problem += std::to_string(id);
    problem += ", which ";
    problem += taken;
    problem += " has on this system; choose a base whose next ";
    problem += std::to_string(t.endpoints.size());
    problem += " ids are unused (0: endpoints keep vswitchd's uid)";
    errs.push_back(TopologyError{t.file, t.switch_config.endpoint_uid_base_line, "switch.endpoint_uid_base", std::move(problem)});
  }
  return errs;
}

std::string_view Topology::file_text() const noexcept {
  const std::string_view all(source);
  const std::size_t at = slotted ? all.rfind(kSlotsIntro) : std::string_view::npos;
  return at == std::string_view::npos ? all : all.substr(0, at);
}

std::optional<std::size_t> Topology::find(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < endpoints.size(); ++i)
    if (!endpoints[i].spare && endpoints[i].name == name) return i;
  return std::nullopt;
}

shm::FabricSpec Topology::fabric_spec(std::uint64_t generation) const {
  shm::FabricSpec spec;
  spec.name = switch_config.name;
  for (const auto& e : endpoints) spec.endpoints.push_back(e.key);
  spec.ring_bytes = fabric.ring_bytes;
  spec.max_payload = fabric.max_payload();
  spec.generation = generation;
  return spec;
}

}  // namespace vswitch
