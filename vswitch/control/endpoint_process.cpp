#include "vswitch/control/endpoint_process.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "endpoints/tap/tap_device.hpp"
#include "endpoints/vhost_user/connection.hpp"
#include "shm/doorbell.hpp"
#include "shm/fabric.hpp"
#include "shm/frame_ring.hpp"
#include "shm/sys/clock.hpp"
#include "vswitch/config/topology.hpp"
#include "vswitch/control/process_limits.hpp"
#include "vswitch/control/syscall_filter.hpp"
#include "vswitch/dataplane/endpoint.hpp"
#include "vswitch/frontends/generator.hpp"
#include "vswitch/frontends/tap.hpp"
#include "vswitch/frontends/vhost_user.hpp"
#include "vswitch/observability/capture.hpp"
#include "vswitch/observability/stats.hpp"

namespace vswitch {
namespace {

// An endpoint that cannot start: says why and exits (the daemon restarts it).
[[noreturn]] void fails(const std::string& name, const std::string& why) {
  std::fprintf(stderr, "vswitch[%s]: %s\n", name.c_str(), why.c_str());
  std::fflush(stderr);
  ::_exit(1);
}

bool parse_u64(std::string_view s, std::uint64_t& v) {
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && p == end && !s.empty();
}

bool parse_fd(std::string_view s, int& fd) {
  if (s == "-1") {
    fd = -1;
    return true;
  }
  std::uint64_t v = 0;
  if (!parse_u64(s, v) || v > 1'000'000) return false;
  fd = static_cast<int>(v);
  return true;
}

// The topology the daemon runs, from its sealed memfd (read at offset 0: every endpoint
// shares the open file, and with it the file offset).
std::optional<std::string> read_topology(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0 || static_cast<std::uint64_t>(st.st_size) > kMaxTopologyBytes) return std::nullopt;
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::pread(fd, text.data() + got, text.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    got += static_cast<std::size_t>(n);
  }
  return text;
}

class EndpointProcess {
 public:
  EndpointProcess(const EndpointProcessArgs& a, Topology topo) : a_(a), topo_(std::move(topo)) {}
  [[noreturn]] void run();

 private:
  [[nodiscard]] const EndpointConfig& me() const { return topo_.endpoints[a_.index]; }
  [[noreturn]] void fail(const std::string& why) const { fails(me().name, why); }
  void enter();
  void attach();
  void drop_privileges();
  [[nodiscard]] std::unique_ptr<Frontend> make_frontend(const EndpointCounters& initial);

  EndpointProcessArgs a_;
  Topology topo_;
  sys::Fd stop_fd_;
  std::optional<shm::Fabric> fabric_;
  std::optional<StatsSlice> stats_;
  std::optional<CaptureWriter> capture_;  // none when [capture] ring_bytes = 0
  std::vector<shm::PipeDoorbell> doorbells_;
  std::vector<shm::Doorbell*> doorbell_ptrs_;
  std::unique_ptr<endpoints::tap::TapDevice> tap_;
  sys::Fd listener_;
};

// Signals, name, core: what the process is before it attaches anything.
void EndpointProcess::enter() {
  const auto& e = me();
  // Die with the daemon, never outlive it holding channels. The parent-death signal the
  // daemon's child set survives exec; set it again and check that the daemon is still the
  // parent (it may have died in between).
  if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) fail(sys::SysError{"prctl(PR_SET_PDEATHSIG)", errno}.message());
  if (static_cast<long>(::getppid()) != a_.daemon_pid) ::_exit(1);
  // The name shows in ps and top; a failure only leaves the program's name there.
  (void)::prctl(PR_SET_NAME, ("vsw-" + e.name).substr(0, 15).c_str());
  // The daemon blocked these for its signalfd, and exec kept its mask: SIGTERM and SIGINT
  // stay blocked and arrive through this endpoint's own signalfd; SIGCHLD and SIGHUP get
  // back their default action; SIGUSR1 (the daemon's wake-up) stays blocked, so a stray
  // one never ends an endpoint.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGCHLD);
  sigaddset(&unblock, SIGHUP);
  if (::sigprocmask(SIG_UNBLOCK, &unblock, nullptr) != 0) fail(sys::SysError{"sigprocmask", errno}.message());
  if (::sigprocmask(SIG_BLOCK, &stop, nullptr) != 0) fail(sys::SysError{"sigprocmask", errno}.message());
  stop_fd_ = sys::Fd(::signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!stop_fd_.valid()) fail(sys::SysError{"signalfd", errno}.message());
  if (e.core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(*e.core, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0)
      std::fprintf(stderr, "vswitch[%s]: cannot pin to core %u: %s\n", e.name.c_str(), *e.core, std::strerror(errno));
  }
}

// Its own resources and nothing else: the 2(N-1) channels that touch it and its own stats
// slice, attached by name and validated against the daemon's generation (objects of this
// switch are 0600 and owned by vswitchd's user: this runs before the uid changes); the
// descriptors the daemon handed over, adopted.
void EndpointProcess::attach() {
  const auto& e = me();
  const shm::FabricSpec spec = topo_.fabric_spec(a_.generation);
  // By size only: the channels' headers are writable by the peers, and a peer that broke
  // one must not keep this endpoint from coming back after a restart.
  auto fabric = shm::Fabric::attach_sized(spec, a_.index);
  if (!fabric) fail("channels: " + fabric.error());
  fabric_.emplace(std::move(fabric.value()));
  auto slice = StatsSlice::attach_sized(spec.name, e.key, a_.index, topo_.switch_config.mac_table_size, a_.generation);
  if (!slice) fail("stats slice: " + slice.error());
  stats_.emplace(std::move(slice.value()));
  if (topo_.capture.enabled()) {
    auto capture = CaptureWriter::attach_sized(spec.name, e.key, CaptureGeometry::of(topo_), a_.generation);
    if (!capture) fail("capture: " + capture.error());
    capture_.emplace(std::move(capture.value()));
  }
  if (a_.doorbells.size() != topo_.endpoints.size()) fail("the daemon handed over the wrong number of doorbells");
  for (std::size_t j = 0; j < a_.doorbells.size(); ++j) {
    sys::Fd fd(a_.doorbells[j]);
    // What each descriptor must be: a pipe, read-only for its own, write-only for a peer's.
    struct stat st {};
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (::fstat(fd.get(), &st) != 0 || !S_ISFIFO(st.st_mode) || flags < 0 || (flags & O_NONBLOCK) == 0 ||
        (flags & O_ACCMODE) != (j == a_.index ? O_RDONLY : O_WRONLY))
      fail("doorbell descriptor " + std::to_string(a_.doorbells[j]) + " for endpoint " + std::to_string(j) +
           " is not the non-blocking pipe end it should be");
    doorbells_.push_back(j == a_.index ? shm::PipeDoorbell::adopt(std::move(fd), sys::Fd())
                                       : shm::PipeDoorbell::adopt(sys::Fd(), std::move(fd)));
  }
  for (auto& b : doorbells_) doorbell_ptrs_.push_back(&b);
  sys::Fd frontend(a_.frontend_fd);
  switch (e.frontend) {
    case FrontendKind::kTap: {
      const auto& o = std::get<TapOptions>(e.options);
      endpoints::tap::TapSpec ts;
      ts.ifname = o.ifname;
      ts.netns = o.netns;
      if (e.mac) ts.mac = e.mac->bytes;
      ts.max_frame = topo_.fabric.max_frame;
      auto tap = endpoints::tap::TapDevice::adopt(std::move(frontend), ts);
      if (!tap) fail(tap.error());
      tap_ = std::make_unique<endpoints::tap::TapDevice>(std::move(tap.value()));
      break;
    }
    case FrontendKind::kVhostUser: {
      // A listening unix stream socket (the one vswitchd bound at the topology's path).
      int listening = 0;
      int domain = 0;
      int type = 0;
      socklen_t len = sizeof(int);
      const bool ok = frontend.valid() &&
                      ::getsockopt(frontend.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
                      (len = sizeof(int), ::getsockopt(frontend.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0) &&
                      (len = sizeof(int), ::getsockopt(frontend.get(), SOL_SOCKET, SO_TYPE, &type, &len) == 0) &&
                      listening == 1 && domain == AF_UNIX && type == SOCK_STREAM;
      if (!ok) fail("the daemon handed over no listening unix stream socket for " + std::get<VhostUserOptions>(e.options).socket);
      listener_ = std::move(frontend);
      break;
    }
    case FrontendKind::kGenerator:
      break;
  }
}

// Its own uid and gid (when vswitchd is root and the topology does not say 0): a
// compromised endpoint then owns no file (uid 0 without capabilities would still own
// every root file: /etc, the daemon's binary), and can signal no other process. The
// bounding set goes first, while CAP_SETPCAP is still there; changing uid then clears the
// other sets. Then no way back to more privileges, no ptrace or /proc memory access by
// other processes of this uid, no core dump, and no capability: nothing an endpoint does
// needs one (TAP I/O is on a descriptor the daemon opened, the vhost-user socket is bound
// by the daemon, the channels and its stats slice are mapped already, pinning itself is
// free). After the uid change, which reset the dumpable flag.
void EndpointProcess::drop_privileges() {
  const std::uint32_t base = topo_.switch_config.endpoint_uid_base;
  if (base != 0 && ::geteuid() == 0) {
    const std::uint32_t id = base + static_cast<std::uint32_t>(a_.index);
    if (auto st = clear_bounding_set(); !st) fail(st.error());
    if (auto st = become_user(id, id); !st) fail(st.error());
  }
  if (auto st = forbid_new_privileges(); !st) fail(st.error());
  if (auto st = limit_capabilities(0); !st) fail(st.error());
  // A change of credentials also cleared the parent-death signal: set it again, then make
  // sure the daemon did not die in between.
  if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) fail(sys::SysError{"prctl(PR_SET_PDEATHSIG)", errno}.message());
  if (static_cast<long>(::getppid()) != a_.daemon_pid) ::_exit(1);
}

namespace {
// The most a VMM may give its guest as MTU: the port's, or (none set) what a fabric record
// holds after an Ethernet header and a VLAN tag.
std::uint32_t guest_mtu_limit(const EndpointConfig& e, const FabricConfig& f) {
  if (e.mtu) return *e.mtu;
  const std::uint32_t room = f.max_frame > kMtuOverheadBytes ? f.max_frame - kMtuOverheadBytes : 0;
  return std::min<std::uint32_t>(room, endpoints::vhost_user::kMaxGuestMtu);
}
}  // namespace

std::unique_ptr<Frontend> EndpointProcess::make_frontend(const EndpointCounters& initial) {
  const auto& e = me();
  switch (e.frontend) {
    case FrontendKind::kTap:
      return std::make_unique<TapFrontend>(*tap_);
    case FrontendKind::kVhostUser: {
      const auto& o = std::get<VhostUserOptions>(e.options);
      const auto counters = sys::load_block<endpoints::vhost_user::NetDeviceCounters>(initial.frontend);
      auto d = endpoints::vhost_user::NetDevice::create_on(
          std::move(listener_), static_cast<std::uint16_t>(o.queue_size), shm::kMaxFrameBytes, counters,
          std::uint64_t{o.max_guest_memory_gib} << 30, guest_mtu_limit(e, topo_.fabric));
      if (!d) fail("vhost-user socket " + o.socket + ": " + d.error());
      // The predecessor's guest comes back (QEMU: reconnect=N): its frames wait in their
      // channels for it, as long as the loop lets a frame wait for a guest (the stall
      // timeout), rather than being dropped as guest_not_ready meanwhile.
      // Not after being disabled: that predecessor's guest was cut off on purpose.
      if (counters.totals.attached != 0 && !a_.fresh) {
        const std::uint64_t wait_ns = std::uint64_t{topo_.fabric.stall_timeout_ms} * 1'000'000;
        d.value()->await_reconnect(sys::monotonic_ns() + wait_ns);
        std::fprintf(stderr, "vswitch[%s]: the predecessor had a guest: frames for it wait up to %u ms for its receive queue to run again\n",
                     e.name.c_str(), topo_.fabric.stall_timeout_ms);
      }
      return std::make_unique<VhostUserFrontend>(std::move(d.value()));
    }
    case FrontendKind::kGenerator: {
      const auto& o = std::get<GeneratorOptions>(e.options);
      GeneratorFrontend::Config c;
      c.stream = static_cast<std::uint32_t>(a_.index) | static_cast<std::uint32_t>(a_.restarts << 8);
      c.source = e.mac ? *e.mac : MacAddress{{0x02, 0x76, 0x73, 0x77, 0x00, static_cast<std::uint8_t>(a_.index)}};
      c.destination = MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
      for (const auto& p : topo_.endpoints)
        if (!o.peer.empty() && p.name == o.peer && p.mac) c.destination = *p.mac;
      c.sizes = o.sizes;
      c.rate_fps = o.rate_fps;
      // Frames lost meanwhile were counted by senders; and a port turned on (or taken by an
      // endpoint added) joins its peers' streams where they are, not at their start.
      c.join_streams_midway = a_.restarts != 0 || a_.fresh;
      return std::make_unique<GeneratorFrontend>(c, sys::load_block<GeneratorCounters>(initial.frontend));
    }
  }
  fail("unknown frontend kind");
}

void EndpointProcess::run() {
  const auto& e = me();
  enter();
  attach();
  drop_privileges();
  // Where its predecessor left its totals: its own slice.
  const EndpointCounters initial = stats_->read_counters();
  std::unique_ptr<Frontend> frontend = make_frontend(initial);
  EndpointResources res;
  res.topology = &topo_;
  res.self = a_.index;
  res.fabric = &*fabric_;
  res.doorbells = doorbell_ptrs_;
  res.doorbell_fd = doorbells_[a_.index].read_fd();
  res.stats = &*stats_;
  res.capture = capture_ ? &*capture_ : nullptr;
  res.stop_fd = stop_fd_.get();
  res.fresh = a_.fresh;
  int status = 0;
  {
    // Scoped: the loop (and its event log's writer thread, which flushes pending messages)
    // ends here, before _exit.
    EndpointLoop loop(res, *frontend, initial);
    if (auto* vhost = dynamic_cast<VhostUserFrontend*>(frontend.get())) vhost->use_log(loop.events());
    // Set up: from here on the process only forwards, within the allow-list (every thread,
    // the event log's writer included). A filter the kernel refuses stops the endpoint: it
    // never runs with less protection than the topology asked for.
    if (const SyscallFilter f = syscall_filter_for(topo_.switch_config.seccomp); f != SyscallFilter::kOff)
      if (auto st = restrict_system_calls(f); !st)
        fail("switch.seccomp = \"" + topo_.switch_config.seccomp + "\": " + st.error());
    std::fprintf(stderr, "vswitch[%s]: up (pid %d, core %s, %s)\n", e.name.c_str(), ::getpid(),
                 e.core ? std::to_string(*e.core).c_str() : "any", std::string(to_string(e.frontend)).c_str());
    std::fflush(stderr);
    // Tell the daemon: a failed write only delays readiness (the daemon sees end of file
    // and never counts this process up), so it is reported, not fatal.
    if (::write(a_.ready_fd, "u", 1) != 1)
      std::fprintf(stderr, "vswitch[%s]: cannot report up to vswitchd: %s\n", e.name.c_str(), std::strerror(errno));
    ::close(a_.ready_fd);
    auto st = loop.run();
    if (!st) {
      std::fprintf(stderr, "vswitch[%s]: %s\n", e.name.c_str(), st.error().c_str());
      status = 1;
    } else if (((stats_->peers_disabled() >> a_.index) & 1) != 0) {
      // Stopped because a reload turned this port off: what its peers sent it before they
      // saw that goes nowhere now, and is counted as it goes (its successor, if the port
      // comes back, drops what arrived after this).
      if (const std::uint64_t n = loop.discard_inbound(); n != 0)
        std::fprintf(stderr, "vswitch[%s]: disabled: dropped %llu frame(s) still on their way to it (port_disabled)\n",
                     e.name.c_str(), static_cast<unsigned long long>(n));
      loop.publish_stats();
    }
  }
  std::fflush(stderr);
  // No destructors of shared objects: this process owns no name (attach never unlinks),
  // and the loop has ended.
  ::_exit(status);
}

}  // namespace

std::vector<std::string> endpoint_process_argv(const EndpointProcessArgs& a) {
  std::string bells;
  for (std::size_t j = 0; j < a.doorbells.size(); ++j) {
    if (j != 0) bells += ',';
    bells += std::to_string(a.doorbells[j]);
  }
  return {"vswitchd",
          "--endpoint-process",
          "--index",
          std::to_string(a.index),
          "--config",
          a.config_path,
          "--topology-fd",
          std::to_string(a.topology_fd),
          "--ready-fd",
          std::to_string(a.ready_fd),
          "--doorbells",
          bells,
          "--frontend-fd",
          std::to_string(a.frontend_fd),
          "--generation",
          std::to_string(a.generation),
          "--restarts",
          std::to_string(a.restarts),
          "--daemon-pid",
          std::to_string(a.daemon_pid),
          "--fresh",
          a.fresh ? "1" : "0"};
}

bool parse_endpoint_process_args(int argc, char** argv, EndpointProcessArgs& out, std::string& error) {
  EndpointProcessArgs a;
  bool seen_index = false;
  bool seen_topology = false;
  bool seen_ready = false;
  bool seen_generation = false;
  bool seen_pid = false;
  static constexpr std::array<std::string_view, 10> kKeys{"--index", "--config", "--topology-fd", "--ready-fd",
                                                           "--doorbells", "--frontend-fd", "--generation", "--restarts",
                                                           "--daemon-pid", "--fresh"};
  std::vector<std::string_view> seen;
  for (int i = 0; i < argc; ++i) {
    const std::string_view k = argv[i];
    if (std::find(kKeys.begin(), kKeys.end(), k) == kKeys.end()) {
      error = "unknown argument \"" + std::string(k) + "\"";
      return false;
    }
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) {
      error = "\"" + std::string(k) + "\" given twice";
      return false;
    }
    seen.push_back(k);
    if (i + 1 >= argc) {
      error = "\"" + std::string(k) + "\" needs a value";
      return false;
    }
    const std::string_view v = argv[++i];
    std::uint64_t n = 0;
    bool ok = true;
    if (k == "--index") {
      ok = parse_u64(v, n) && n < 4096;
      a.index = static_cast<std::size_t>(n);
      seen_index = true;
    } else if (k == "--config") {
      a.config_path = std::string(v);
    } else if (k == "--topology-fd") {
      ok = parse_fd(v, a.topology_fd) && a.topology_fd >= 0;
      seen_topology = true;
    } else if (k == "--ready-fd") {
      ok = parse_fd(v, a.ready_fd) && a.ready_fd >= 0;
      seen_ready = true;
    } else if (k == "--doorbells") {
      std::string_view rest = v;
      while (ok) {
        const std::size_t comma = rest.find(',');
        int fd = -1;
        ok = parse_fd(rest.substr(0, comma), fd) && fd >= 0;
        a.doorbells.push_back(fd);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    } else if (k == "--frontend-fd") {
      ok = parse_fd(v, a.frontend_fd);
    } else if (k == "--generation") {
      ok = parse_u64(v, a.generation);
      seen_generation = true;
    } else if (k == "--restarts") {
      ok = parse_u64(v, a.restarts);
    } else if (k == "--daemon-pid") {
      ok = parse_u64(v, n) && n >= 1 && n < (1U << 31);  // 1: vswitchd as a container's init
      a.daemon_pid = static_cast<long>(n);
      seen_pid = true;
    } else if (k == "--fresh") {
      ok = v == "0" || v == "1";
      a.fresh = v == "1";
    } else {
      error = "unknown argument \"" + std::string(k) + "\"";
      return false;
    }
    if (!ok) {
      error = "invalid " + std::string(k) + " \"" + std::string(v) + "\"";
      return false;
    }
  }
  if (!seen_index || !seen_topology || !seen_ready || !seen_generation || !seen_pid || a.doorbells.empty()) {
    error = "--index, --topology-fd, --ready-fd, --doorbells, --generation and --daemon-pid are required";
    return false;
  }
  // Every handed-over descriptor is its own, above standard input, output and error.
  std::vector<int> fds{a.topology_fd, a.ready_fd};
  fds.insert(fds.end(), a.doorbells.begin(), a.doorbells.end());
  if (a.frontend_fd != -1) fds.push_back(a.frontend_fd);
  std::sort(fds.begin(), fds.end());
  if (fds.front() <= 2 || std::adjacent_find(fds.begin(), fds.end()) != fds.end()) {
    error = "the descriptors must be distinct and above 2";
    return false;
  }
  out = std::move(a);
  return true;
}

void run_endpoint_process(const EndpointProcessArgs& a) {
  const auto text = read_topology(a.topology_fd);
  if (!text) fails("endpoint " + std::to_string(a.index), "cannot read the topology vswitchd handed over");
  ::close(a.topology_fd);
  auto topo = load_topology_string(*text, a.config_path.empty() ? std::string("topology") : a.config_path, true);
  if (!topo)
    fails("endpoint " + std::to_string(a.index),
          "the topology vswitchd handed over does not load: " + format_errors(topo.error()));
  if (a.index >= topo.value().endpoints.size() || topo.value().endpoints[a.index].spare)
    fails("endpoint " + std::to_string(a.index), "no such endpoint in the topology");
  EndpointProcess p(a, std::move(topo.value()));
  p.run();
}

}  // namespace vswitch
