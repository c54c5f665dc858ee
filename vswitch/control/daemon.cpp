#include "vswitch/control/daemon.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "endpoints/tap/tap_device.hpp"
#include "endpoints/vhost_user/connection.hpp"
#include "shm/doorbell.hpp"
#include "shm/sys/clock.hpp"
#include "shm/fabric.hpp"
#include "shm/frame_ring.hpp"
#include "vswitch/dataplane/endpoint.hpp"
#include "vswitch/frontends/generator.hpp"
#include "vswitch/frontends/tap.hpp"
#include "vswitch/frontends/vhost_user.hpp"
#include "vswitch/observability/capture.hpp"
#include "vswitch/observability/running_topology.hpp"
#include "vswitch/observability/stats.hpp"
#include "vswitch/config/topology.hpp"
#include "vswitch/config/topology_diff.hpp"
#include "vswitch/control/endpoint_process.hpp"
#include "vswitch/control/metrics_server.hpp"
#include "vswitch/observability/metrics.hpp"
#include "vswitch/control/process_limits.hpp"
#include "vswitch/control/syscall_filter.hpp"

namespace vswitch {
namespace {

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("vswitchd: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}



// The service manager's readiness protocol (sd_notify(3)), by hand: one datagram of
// newline-separated VAR=value assignments to the AF_UNIX socket named by $NOTIFY_SOCKET,
// an absolute path or, when it starts with '@', a name in the abstract namespace. Without
// $NOTIFY_SOCKET (not started by systemd with Type=notify) nothing is sent. The variable is
// removed from the environment so that endpoint processes, which the manager does not
// listen to (NotifyAccess=main), cannot send in the daemon's name. A failure is logged
// once and never stops the daemon: the manager then times the start out by itself.
class Notifier {
 public:
  Notifier() {
    if (const char* p = std::getenv("NOTIFY_SOCKET"); p != nullptr && *p != '\0') path_ = p;
    ::unsetenv("NOTIFY_SOCKET");
  }

  void send(const std::string& message) {
    if (path_.empty()) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_[0] != '/' && path_[0] != '@') return fail("it is neither an absolute path nor an abstract name (@...)");
    if (path_.size() >= sizeof addr.sun_path) return fail("the name is too long for a unix socket address");
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    if (path_[0] == '@') addr.sun_path[0] = '\0';  // abstract: no terminating NUL, length exact
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
    sys::Fd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s.valid()) return fail(std::string("socket: ") + std::strerror(errno));
    const ssize_t n =
        ::sendto(s.get(), message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
    if (n < 0) return fail(std::string("sendto: ") + std::strerror(errno));
    if (static_cast<std::size_t>(n) != message.size()) return fail("short datagram");
  }

 private:
  void fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    say("cannot notify the service manager at NOTIFY_SOCKET=%s: %s (not fatal; further failures are not logged)",
        path_.c_str(), why.c_str());
  }
  std::string path_;
  bool failed_ = false;
};

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    std::string s = "killed by signal ";
    s += std::to_string(WTERMSIG(status));
    s += " (";
    s += strsignal(WTERMSIG(status));
    // SIGSYS: the system call filter refused a call (the endpoint logged which, unless the
    // refusing thread had every signal blocked).
    s += WTERMSIG(status) == SIGSYS ? ": a system call outside switch.seccomp's allow-list)" : ")";
    return s;
  }
  return "stopped (status " + std::to_string(status) + ")";
}

unsigned machine_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<unsigned>(CPU_COUNT(&set));
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

// The lock directory (lock_dir()) exists, is a directory and not a link, belongs to this
// user and nobody else may enter it: a lock file any local user could create first (as in
// the world-writable /dev/shm) lets that user keep vswitchd from ever starting, by holding
// the lock, or point it elsewhere with a link. Missing components are created: the parent
// 0755 (it may also hold vhost-user sockets QEMU must reach), the directory itself 0700.
sys::Status<std::string> prepare_lock_dir() {
  const std::string dir = lock_dir();
  if (dir.empty())
    return sys::Unexpected(std::string("no directory for the lock: not root, and neither XDG_RUNTIME_DIR nor HOME is set"));
  const std::string parent = dir.substr(0, dir.rfind('/'));
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
    return sys::Unexpected("cannot create " + parent + ": " + std::strerror(errno));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return sys::Unexpected("cannot create lock directory " + dir + ": " + std::strerror(errno));
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return sys::Unexpected("lock directory " + dir + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return sys::Unexpected("lock directory " + dir + " is not a directory (a link?)");
  if (st.st_uid != ::geteuid())
    return sys::Unexpected("lock directory " + dir + " belongs to uid " + std::to_string(st.st_uid) +
                           ", not to this user: its owner could hold or replace the lock; remove it");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return sys::Unexpected("lock directory " + dir + " has mode " + mode +
                           ": others could hold or replace the lock; chmod 0700 " + dir);
  }
  return {};
}

// A lock file: opened without following links, locked (flock, exclusive, never waiting)
// and `owner` written into it, for whoever finds it taken. When another process holds it,
// the error is empty and `holder` says what that process wrote.
sys::Result<sys::Fd, std::string> lock_file(const std::string& path, const std::string& owner, std::string& holder) {
  sys::Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return sys::Unexpected("cannot open lock " + path + ": " + std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[96] = {};
    const ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return sys::Unexpected(std::string());
  }
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), owner.data(), owner.size(), 0) < 0)
    return sys::Unexpected("cannot write lock " + path + ": " + std::strerror(errno));
  return fd;
}

// Holds the topology's lock file (and the endpoint ids' lock files) for the daemon's
// lifetime.
class TopologyLock {
 public:
  static sys::Result<TopologyLock, std::string> take(const std::string& name) {
    if (auto st = prepare_lock_dir(); !st) return sys::Unexpected(st.error());
    const std::string path = lock_path(name);
    std::string holder;
    auto fd = lock_file(path, std::to_string(::getpid()) + "\n", holder);
    if (!fd && fd.error().empty())
      return sys::Unexpected("topology \"" + name + "\" is already run by another vswitchd (pid " + holder +
                             ", lock " + path + "); stop it first");
    if (!fd) return sys::Unexpected(fd.error());
    return TopologyLock(std::move(fd.value()), path);
  }
  TopologyLock(TopologyLock&&) = default;
  TopologyLock& operator=(TopologyLock&&) = default;

  // Also locks the ids endpoints will run as (first_id .. first_id + count - 1), one lock
  // file each: two switches whose endpoints shared an id could signal and ptrace each
  // other's endpoints (same uid), whatever else keeps them apart. The other holder is
  // named (its switch and pid).
  sys::Status<std::string> take_ids(const std::string& name, std::uint32_t first_id, std::size_t count) {
    const std::string me = "switch \"" + name + "\", vswitchd pid " + std::to_string(::getpid()) + "\n";
    for (std::size_t k = 0; k < count; ++k) {
      const std::string id = std::to_string(first_id + k);
      const std::string path = lock_dir() + "/uid-" + id + ".lock";
      std::string holder;
      auto fd = lock_file(path, me, holder);
      if (!fd && fd.error().empty())
        return sys::Unexpected("endpoint id " + id + " (switch.endpoint_uid_base) is used by another switch (" + holder +
                               "); give each switch on this machine its own range of ids");
      if (!fd) return sys::Unexpected(fd.error());
      ids_.emplace_back(std::move(fd.value()), path);
    }
    return {};
  }
  // In an endpoint process: closes its inherited copies of the descriptors (the daemon's
  // locks stay: flock belongs to the open file, which the daemon still holds) and makes
  // sure these copies never remove the files.
  void close_in_endpoint() {
    fd_.reset();
    for (auto& l : ids_) l.first.reset();
  }
  ~TopologyLock() {
    // Still locked: nobody else can own them now.
    for (auto& l : ids_)
      if (l.first.valid()) ::unlink(l.second.c_str());
    if (fd_.valid()) ::unlink(path_.c_str());
  }

 private:
  TopologyLock(sys::Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  sys::Fd fd_;
  std::string path_;
  std::vector<std::pair<sys::Fd, std::string>> ids_;
};

// Shared-memory objects of this switch name that a daemon which did not shut down left.
// Only called with the lock held, so none of them can belong to a live daemon. Objects of
// another user with this switch's names (made to keep vswitchd from creating its own)
// go the same way, named in the log.
void remove_stale_objects(const std::string& name) {
  const std::string prefix = shm::object_name(name, "").substr(1);  // without the leading slash
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.rfind(prefix, 0) == 0) stale.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : stale) {
    const std::string path = "/dev/shm/" + n;
    struct stat st {};
    const bool foreign = ::lstat(path.c_str(), &st) == 0 && st.st_uid != ::geteuid();
    if (::unlink(path.c_str()) != 0) continue;  // creating ours over it then fails, saying why
    if (foreign)
      say("removed /dev/shm/%s: it has this switch's name but belongs to uid %u (not made by vswitchd)", n.c_str(),
          static_cast<unsigned>(st.st_uid));
    else
      say("removed stale shared memory /dev/shm/%s (left by a vswitchd that did not shut down)", n.c_str());
  }
}

// The directory a vhost-user endpoint's listening socket goes in. The daemon binds the
// socket (listen_sockets) and the endpoint serves it (a restarted endpoint serves the same
// socket); the daemon makes sure, before creating anything, that the directory exists and that nobody but its owner can replace
// what is in it: QEMU connects to whatever socket is at that path, so a directory another
// local user can write would let that user put a socket of their own in the switch's place.
//
// A missing directory is created (with any missing parents) with mode 0755: QEMU may run
// as another user and must be able to reach the socket, which itself stays 0600
// (connecting needs write permission on the socket, so only its owner can connect).
sys::Status<std::string> prepare_socket_dir(const std::string& endpoint, const std::string& socket) {
  const auto fail = [&endpoint](const std::string& why) { return sys::Unexpected("endpoint " + endpoint + ": " + why); };
  const auto slash = socket.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : socket.substr(0, slash);
  const uid_t me = ::geteuid();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return fail("socket directory " + dir + ": " + std::strerror(errno));
    // mkdir -p, each component created 0755 whatever the umask.
    for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
      if (pos != dir.size() && dir[pos] != '/') continue;
      const std::string part = dir.substr(0, pos);
      if (::mkdir(part.c_str(), 0755) == 0) {
        if (::chmod(part.c_str(), 0755) != 0) return fail("chmod 0755 " + part + ": " + std::strerror(errno));
        say("endpoint %s: created socket directory %s (mode 0755)", endpoint.c_str(), part.c_str());
      } else if (errno != EEXIST) {
        return fail("cannot create socket directory " + part + ": " + std::strerror(errno));
      }
    }
    if (::stat(dir.c_str(), &st) != 0) return fail("socket directory " + dir + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return fail("socket directory " + dir + " is not a directory");
  if (st.st_uid != me && st.st_uid != 0)
    return fail("socket directory " + dir + " is owned by uid " + std::to_string(st.st_uid) + ", not by " +
                (me == 0 ? std::string("root") : "uid " + std::to_string(me) + " or root") +
                ": its owner could replace the socket; use a directory of your own");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail("socket directory " + dir + " (mode " + mode +
                ") is writable by group or others: another user could replace the socket; use a directory only its "
                "owner can write (e.g. chmod go-w " + dir + ")");
  }
  return {};
}

struct Child {
  pid_t pid = 0;
  std::uint64_t started_ms = 0;
  std::uint64_t restarts = 0;
  std::uint64_t restart_at_ms = 0;  // 0: none scheduled
  std::uint64_t backoff_ms = 0;
  int last_exit = 0;
  // The read end of a pipe the endpoint writes one byte to once its frontend is open and
  // its loop about to run ("up"); end of file without it: it died before.
  sys::Fd ready;
  bool up = false;
  // The watchdog's view (while up): the endpoint's heartbeat (its loop's passes with work
  // plus its sleeps, both in its counters) and when it last moved.
  std::uint64_t heartbeat = 0;
  std::uint64_t moved_ms = 0;
  bool killed_hung = false;  // SIGKILLed by the watchdog; reap() says so
  bool rung = false;         // the watchdog rang its doorbell since its heartbeat last moved
  std::uint64_t rung_ms = 0;  // when (while rung)
  bool reconfigure = false;  // stopped by a reload: started again at once, not counted as a restart
  bool disabling = false;    // stopped because a reload turned it off: not started again
  bool fresh = false;        // its next start follows a time disabled (EndpointProcessArgs::fresh)
  bool turning_on = false;   // its next start is the one a reload turned it on with (said so)
  std::uint64_t reconfigure_kill_ms = 0;  // when a reload's SIGTERM is followed by SIGKILL
  // Processes started after the first, for any reason (a crash, the watchdog, a reload):
  // each has its own incarnation (a generator's stream id; a receiver joins its senders'
  // streams midway), where `restarts` counts the deaths only.
  std::uint64_t incarnations = 0;
  std::uint64_t hung = 0;
  std::string name;  // the endpoint it runs (or last ran): a port whose endpoint was removed is spare
  std::uint64_t holder = 0;  // times a reload gave the port to an endpoint added (DaemonState::holder)
};

class Daemon {
 public:
  Daemon(Topology topology, TopologyLock lock) : topo_(std::move(topology)), lock_(std::move(lock)) {}

  int run();

 private:
  // Everything the endpoints need, made before the first fork, in this order; an error
  // says what could not be made and why.
  using Step = sys::Status<std::string>;
  Step setup();
  Step prepare_sockets() const;
  Step create_shared_memory();  // the fabric and the stats (the daemon's object, a slice per endpoint)
  Step create_doorbells();
  Step open_taps();
  Step listen_sockets();
  // One endpoint's TAP or listening socket (nothing for a generator), as at start; a
  // failure leaves nothing made. release_frontend gives it up again (a port turned off).
  Step open_frontend(std::size_t i, const EndpointConfig& e);
  void release_frontend(std::size_t i);
  // Writes the disabled ports' mask into every slice and rings every endpoint.
  void publish_disabled(std::uint64_t mask);
  // Writes every port's VLANs and address (topo_'s) into every slice, then bumps each
  // slice's fence_seq, which has its endpoint read them ([R-FENCE]); rings every endpoint.
  void publish_ports();
  void write_port_table();  // the table alone (at start, before any endpoint reads it)
  Step take_signals();
  Step hand_over_topology();  // the sealed topology and the executable the endpoints run
  // topo_.source as vswitchctl reads it (running_topology.hpp), replacing what it read before.
  Step publish_topology();
  // A sealed memfd holding `text`, which every endpoint program reads its topology from.
  static sys::Result<sys::Fd, std::string> sealed_topology(const std::string& text);
  // A reload's changes applied: TAP MTUs set, the TAPs and sockets of ports turned on
  // made, the new topology in force, the endpoints whose settings changed stopped (reap()
  // starts them again at once on it), ports turned off stopped and ports turned on
  // started. When it fails (the error says why) the topology in force is unchanged, the
  // MTUs are put back and what it made is removed; a TAP it found keeps the offloads and
  // MTU TapDevice::open gave it.
  Step apply(Topology next, const std::vector<TopologyChange>& changes, std::uint64_t& restarted);
  void spawn(std::size_t i);
  // In the new process fork() made: keeps only what endpoint i is handed, then execs the
  // endpoint program (vswitch/control/endpoint_process.hpp). Never returns.
  [[noreturn]] void exec_endpoint(std::size_t i, int ready_fd);
  void say_endpoint_limits() const;
  void reap(bool shutting_down);
  // The watchdog's round: returns when it wants the next one (monotonic ms), or 0 if off.
  std::uint64_t watch(std::uint64_t now_ms);
  [[nodiscard]] std::uint64_t heartbeat(std::size_t i) const;
  void endpoint_ready(std::size_t i);
  // Every enabled endpoint up: READY=1 the first time (so also when every port is
  // disabled, right at start), STATUS= after; otherwise nothing (false).
  bool notify_if_all_up();
  void reload();
  [[nodiscard]] std::string status_line() const;
  void publish_state(std::size_t i, EndpointState s);
  // Spare ports whose last endpoint's process has not exited yet (bit i: port i).
  [[nodiscard]] std::uint64_t stopping_ports() const;
  // For the log: the endpoint's name; a spare port's number (and the endpoint that last held it).
  [[nodiscard]] std::string name_of(std::size_t i) const;
  // The Prometheus text of this moment (vswitch/observability/metrics.hpp).
  [[nodiscard]] std::string metrics_text() const;
  // Binds the metrics address; on failure says why (the first time) and schedules a retry.
  void try_metrics(std::uint64_t now_ms);
  void shutdown();

  Topology topo_;
  TopologyLock lock_;
  std::optional<shm::Fabric> fabric_;
  std::optional<StatsRegion> stats_;
  std::vector<shm::Region> captures_;  // one per endpoint, unless [capture] ring_bytes = 0
  std::optional<shm::Region> running_topology_;  // topo_.source, for vswitchctl (running_topology.hpp)
  std::uint64_t generation_ = 0;  // the shared objects' generation (endpoints attach with it)
  // The topology text, sealed (F_SEAL_WRITE and the rest), which every endpoint program
  // reads: the daemon's copy is the one in force even if the file has changed since.
  sys::Fd topology_fd_;
  // This program's executable, opened at start: an endpoint is always the same build as
  // the daemon (the shared-memory layouts must match), even after the file was replaced.
  sys::Fd exe_fd_;
  std::vector<shm::PipeDoorbell> doorbells_;
  std::vector<shm::Doorbell*> doorbell_ptrs_;
  std::vector<sys::Fd> wake_ends_;  // the daemon's private write end of each doorbell pipe
  // Rings every endpoint's doorbell (SIGUSR1: `vswitchctl link` changed a link word).
  void wake_endpoints();
  std::vector<std::unique_ptr<endpoints::tap::TapDevice>> taps_;
  std::vector<sys::Fd> listeners_;  // per endpoint: a vhost-user endpoint's listening socket
  // What bind() made at each socket path (device, inode; 0, 0: nothing), so that only
  // that file is ever unlinked, whoever it was given to (socket_owner) and whatever lies
  // at the path later.
  struct BoundSocket {
    std::string path;  // "" : nothing bound
    dev_t dev = 0;
    ino_t ino = 0;
  };
  std::vector<BoundSocket> bound_;
  void unlink_bound_sockets();
  void unlink_bound_socket(std::size_t i);
  std::vector<Child> children_;
  sys::Fd signals_;
  sigset_t blocked_{};
  pid_t daemon_pid_ = 0;
  Notifier notifier_;
  bool ready_sent_ = false;
  std::optional<MetricsServer> metrics_;  // [metrics] listen, once bound
  std::uint64_t metrics_retry_ms_ = 0;     // when to try binding again (0: not waiting)
  std::uint64_t metrics_failures_ = 0;
  std::uint64_t reloads_ = 0;
  std::array<std::uint64_t, 8> reload_outcomes_{};  // reloads ended, by ReloadOutcome
  // What every slice's peers_disabled says: a port turned off gets its bit before its
  // process is stopped, and loses it only once its new process is up (endpoint_ready),
  // so its peers send it nothing that its start (which drops what waits in its channels)
  // could take for stale.
  std::uint64_t disabled_ = 0;
};

constexpr std::uint64_t kMetricsRetryMs = 5000;

void Daemon::try_metrics(std::uint64_t now_ms) {
  auto m = MetricsServer::listen(topo_.metrics);
  if (!m) {
    if (metrics_failures_++ == 0)
      say("warning: %s:%u: %s; forwarding goes on without metrics, binding again every %llu s", topo_.file.c_str(),
          topo_.metrics.line, m.error().c_str(), static_cast<unsigned long long>(kMetricsRetryMs / 1000));
    metrics_retry_ms_ = now_ms + kMetricsRetryMs;
    return;
  }
  metrics_.emplace(std::move(m.value()));
  metrics_retry_ms_ = 0;
  say("metrics: Prometheus text at http://%s/metrics%s", topo_.metrics.listen.c_str(),
      metrics_failures_ != 0 ? (" (bound after " + std::to_string(metrics_failures_) + " failed tries)").c_str() : "");
}

Daemon::Step Daemon::setup() {
  daemon_pid_ = ::getpid();
  const std::size_t n = topo_.endpoints.size();
  if (n < 2) return sys::Unexpected(std::string("the topology needs at least two endpoints"));
  if (n > kMaxEndpoints)
    return sys::Unexpected("at most " + std::to_string(kMaxEndpoints) + " ports (endpoints and spare ports) are supported");
  // Before anything is made: a socket directory another user could write stops here.
  if (auto st = prepare_sockets(); !st) return st;
  remove_stale_objects(topo_.switch_config.name);
  // Before the stats object names this process: from then on vswitchctl may signal it
  // (SIGUSR1, SIGHUP), whose default actions would end it.
  if (auto st = take_signals(); !st) return st;
  if (auto st = create_shared_memory(); !st) return st;
  if (auto st = create_doorbells(); !st) return st;
  // Ports declared off: every slice says so before any endpoint reads it.
  std::uint64_t off = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (!topo_.endpoints[i].enabled) off |= std::uint64_t{1} << i;
  publish_disabled(off);
  // Metrics are not worth the data plane: an address that cannot be bound now (another
  // process holds the port, the address is not up yet) is a warning, and the loop tries
  // again every kMetricsRetryMs.
  if (topo_.metrics.enabled()) try_metrics(sys::monotonic_ms());
  // Sockets before TAPs: a refused socket path then leaves no persistent TAP behind.
  if (auto st = listen_sockets(); !st) return st;
  // A failure from here on gives up every TAP and socket made so far (a TAP vswitchd
  // created leaves its namespace).
  const auto give_up = [&] {
    for (std::size_t i = 0; i < n; ++i)
      if (i < taps_.size()) release_frontend(i);
    unlink_bound_sockets();
  };
  if (auto st = open_taps(); !st) {
    give_up();
    return st;
  }
  if (auto st = hand_over_topology(); !st) {
    give_up();
    return st;
  }
  children_.resize(n);
  return {};
}

std::string Daemon::metrics_text() const {
  std::vector<EndpointMetrics> eps;
  eps.reserve(topo_.endpoints.size());
  for (std::size_t i = 0; i < topo_.endpoints.size(); ++i) {
    if (topo_.endpoints[i].spare) continue;  // no endpoint: nothing to show
    EndpointMetrics m;
    m.name = topo_.endpoints[i].name;
    m.port = i;
    m.frontend = topo_.endpoints[i].frontend;
    m.state = stats_->read_daemon(i);
    if (stats_->slice(i) != nullptr) m.counters = stats_->read_counters(i);
    if (children_[i].pid > 0) m.cpu_seconds = process_cpu_seconds(static_cast<std::uint64_t>(children_[i].pid));
    eps.push_back(std::move(m));
  }
  std::vector<ChannelMetrics> chans;
  const std::size_t n = topo_.endpoints.size();
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = 0; b < n; ++b) {
      const shm::Channel* ch = a == b ? nullptr : fabric_->channel(a, b);
      if (ch == nullptr || topo_.endpoints[a].spare || topo_.endpoints[b].spare) continue;
      // Each index read once; the endpoints write them, so a scribbled pair is clamped.
      const shm::RingSnapshot snap = ch->area().snapshot();
      const std::uint64_t cap = ch->area().capacity();
      const std::uint64_t used = snap.head - snap.tail;
      chans.push_back(ChannelMetrics{topo_.endpoints[a].name, topo_.endpoints[b].name, used > cap ? cap : used, cap});
    }
  ServerMetrics server;
  if (metrics_) {
    server.scrapes = metrics_->scrapes();
    for (std::size_t k = 0; k < static_cast<std::size_t>(MetricsServer::Closed::kCount); ++k) {
      const auto c = static_cast<MetricsServer::Closed>(k);
      server.closed.emplace_back(std::string(MetricsServer::to_string(c)), metrics_->closed(c));
    }
  }
  DaemonMetrics daemon;
  for (const auto& [outcome, name] : {std::pair{ReloadOutcome::kUnchanged, "unchanged"}, std::pair{ReloadOutcome::kApplied, "applied"},
                                      std::pair{ReloadOutcome::kInvalid, "invalid"}, std::pair{ReloadOutcome::kRefused, "refused"},
                                      std::pair{ReloadOutcome::kFailed, "failed"}})
    daemon.reloads.emplace_back(name, reload_outcomes_[static_cast<std::size_t>(outcome)]);
  return render_metrics(eps, chans, metrics_ ? &server : nullptr, &daemon);
}

Daemon::Step Daemon::prepare_sockets() const {
  for (const auto& e : topo_.endpoints)
    if (const auto* o = std::get_if<VhostUserOptions>(&e.options))
      if (auto st = prepare_socket_dir(e.name, o->socket); !st) return st;
  return {};
}

Daemon::Step Daemon::create_shared_memory() {
  std::random_device rd;
  const std::uint64_t generation = (std::uint64_t{rd()} << 32 | rd()) | 1;
  generation_ = generation;
  const shm::FabricSpec spec = topo_.fabric_spec(generation);
  auto fabric = shm::Fabric::create(spec);
  if (!fabric) return sys::Unexpected(fabric.error());
  fabric_.emplace(std::move(fabric.value()));
  std::vector<std::string> names;
  for (const auto& e : topo_.endpoints) names.push_back(e.key);
  // Before the stats: a reader that finds the daemon's object finds every capture object.
  if (topo_.capture.enabled())
    for (const auto& n : names) {
      auto c = create_capture_object(spec.name, n, CaptureGeometry::of(topo_), generation);
      if (!c) return sys::Unexpected(c.error());
      captures_.push_back(std::move(c.value()));
    }
  auto stats = StatsRegion::create(spec.name, names, topo_.switch_config.mac_table_size, generation);
  if (!stats) return sys::Unexpected(stats.error());
  stats_.emplace(std::move(stats.value()));
  stats_->set_daemon_pid(static_cast<std::uint64_t>(daemon_pid_));
  // What each endpoint also finds in its topology; written so that a reload that changes
  // a port's VLANs or address has a table to rewrite (an endpoint ignores one never written).
  write_port_table();
  return {};
}

sys::Result<sys::Fd, std::string> Daemon::sealed_topology(const std::string& text) {
  if (text.size() > kMaxTopologyBytes)
    return sys::Unexpected(std::to_string(text.size()) + " bytes; a topology may have at most " +
                           std::to_string(kMaxTopologyBytes >> 20) + " MiB");
  sys::Fd fd(::memfd_create("vswitch-topology", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return sys::Unexpected(sys::SysError{"memfd_create", errno}.message());
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys::Unexpected(sys::SysError{"write (topology memfd)", errno}.message());
    done += static_cast<std::size_t>(n);
  }
  // Sealed: no endpoint (they all share this open file) can change what the others read.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return sys::Unexpected(sys::SysError{"fcntl(F_ADD_SEALS) (topology memfd)", errno}.message());
  return fd;
}

Daemon::Step Daemon::publish_topology() {
  auto r = publish_running_topology(topo_.switch_config.name, topo_.source, generation_);
  if (!r) return sys::Unexpected(r.error());
  // The new object has the name now: the old one must not remove it as it goes.
  if (running_topology_) running_topology_->disown();
  running_topology_.emplace(std::move(r.value()));
  return {};
}

Daemon::Step Daemon::hand_over_topology() {
  auto fd = sealed_topology(topo_.source);
  if (!fd) return sys::Unexpected(topo_.file + ": " + fd.error());
  topology_fd_ = std::move(fd.value());
  if (auto st = publish_topology(); !st) return st;
  // O_PATH: an executable this user may run but not read is still run.
  exe_fd_ = sys::Fd(::open("/proc/self/exe", O_PATH | O_CLOEXEC));
  if (!exe_fd_.valid()) return sys::Unexpected(sys::SysError{"open /proc/self/exe", errno}.message());
  return {};
}

Daemon::Step Daemon::create_doorbells() {
  for (std::size_t i = 0; i < topo_.endpoints.size(); ++i) {
    auto bell = shm::PipeDoorbell::create();
    if (!bell) return sys::Unexpected("doorbell: " + bell.error().message());
    doorbells_.push_back(std::move(bell.value()));
  }
  for (auto& b : doorbells_) doorbell_ptrs_.push_back(&b);
  // The daemon's own way to ring (wake_endpoints): a second open of each pipe's write
  // end. The endpoints hold the first open file, whose flags (O_NONBLOCK) any of them
  // could change without a system call filter; this one is the daemon's alone, so a
  // write into it never blocks.
  for (const auto& b : doorbells_) {
    sys::Fd w(::open(("/proc/self/fd/" + std::to_string(b.write_fd())).c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (!w.valid()) return sys::Unexpected("doorbell: " + sys::SysError{"open (its private write end)", errno}.message());
    wake_ends_.push_back(std::move(w));
  }
  return {};
}

void Daemon::wake_endpoints() {
  const char b = 1;
  // A full pipe already has a wake-up pending (EAGAIN); any other failure only delays
  // the change to the endpoint's next heartbeat.
  for (const auto& w : wake_ends_) (void)!::write(w.get(), &b, 1);
}

// TAP devices are opened here and held by the daemon, so an endpoint that restarts
// inherits the same device (frames queued in it wait; its addresses stay).
Daemon::Step Daemon::open_taps() {
  taps_.resize(topo_.endpoints.size());
  for (std::size_t i = 0; i < topo_.endpoints.size(); ++i)
    if (topo_.endpoints[i].frontend == FrontendKind::kTap && topo_.endpoints[i].enabled)
      if (auto st = open_frontend(i, topo_.endpoints[i]); !st) return st;
  return {};
}

// vhost-user listening sockets are bound here, not in the endpoints: giving one to
// socket_owner / socket_group takes CAP_CHOWN, which no endpoint process keeps, and a
// restarted endpoint serves the same socket (QEMU reconnects to it; a connection made
// while the endpoint is down waits in the backlog). The daemon holds them all open and
// removes the files at shutdown.
Daemon::Step Daemon::listen_sockets() {
  listeners_.resize(topo_.endpoints.size());
  bound_.assign(topo_.endpoints.size(), {});
  for (std::size_t i = 0; i < topo_.endpoints.size(); ++i)
    if (topo_.endpoints[i].frontend == FrontendKind::kVhostUser && topo_.endpoints[i].enabled)
      if (auto st = open_frontend(i, topo_.endpoints[i]); !st) {
        unlink_bound_sockets();  // the ones bound for earlier endpoints
        return st;
      }
  return {};
}

Daemon::Step Daemon::open_frontend(std::size_t i, const EndpointConfig& e) {
  if (const auto* o = std::get_if<TapOptions>(&e.options)) {
    endpoints::tap::TapSpec ts;
    ts.ifname = o->ifname;
    ts.netns = o->netns;
    if (e.mac) ts.mac = e.mac->bytes;
    ts.max_frame = topo_.fabric.max_frame;
    ts.mtu = e.mtu;
    auto tap = endpoints::tap::TapDevice::open(ts);
    if (!tap) return sys::Unexpected("endpoint " + e.name + ": " + tap.error());
    taps_[i] = std::make_unique<endpoints::tap::TapDevice>(std::move(tap.value()));
    const std::string mtu = e.mtu ? ", mtu " + std::to_string(*e.mtu) : "";
    say("endpoint %s: tap %s%s%s %s%s%s", e.name.c_str(), o->ifname.c_str(), o->netns.empty() ? "" : " in netns ",
        o->netns.c_str(), taps_[i]->created() ? "created" : "attached", mtu.c_str(),
        taps_[i]->tso() ? "" : " (no TSO: fabric.max_frame is below a 64 KiB segment)");
  } else if (const auto* v = std::get_if<VhostUserOptions>(&e.options)) {
    if (auto st = prepare_socket_dir(e.name, v->socket); !st) return st;
    // Never another port's socket under another spelling of its path (the loader compares
    // the strings): binding would remove it from under that port's VMM.
    if (struct stat there {}; ::lstat(v->socket.c_str(), &there) == 0)
      for (std::size_t j = 0; j < bound_.size(); ++j)
        if (j != i && !bound_[j].path.empty() && bound_[j].dev == there.st_dev && bound_[j].ino == there.st_ino)
          return sys::Unexpected("endpoint " + e.name + ": vhost-user socket " + v->socket + " is endpoint " +
                                 topo_.endpoints[j].name + "'s (" + bound_[j].path + ")");
    auto l = endpoints::vhost_user::listen_unix(
        v->socket, endpoints::vhost_user::SocketAccess{v->socket_owner, v->socket_group, v->socket_mode});
    if (!l) return sys::Unexpected("endpoint " + e.name + ": vhost-user socket: " + l.error());
    listeners_[i] = std::move(l.value());
    struct stat st {};
    if (::lstat(v->socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) bound_[i] = {v->socket, st.st_dev, st.st_ino};
  }
  return {};
}

void Daemon::release_frontend(std::size_t i) {
  if (auto& t = taps_[i]) {
    // A device this switch created goes (its namespace loses the interface); one it found
    // stays, without this switch behind it.
    if (t->created())
      if (auto st = t->remove_persistent(); !st) say("tap %s: %s", t->spec().ifname.c_str(), st.error().message().c_str());
    t.reset();
  }
  if (listeners_[i].valid()) {
    unlink_bound_socket(i);
    listeners_[i].reset();  // a VMM connected or connecting is cut off; QEMU tries again
  }
}

void Daemon::publish_disabled(std::uint64_t mask) {
  // The slices of the ports this turns on come last: such a port takes frames from its
  // frontend only once its own slice shows it on (EndpointLoop::poll_once), and by then
  // every other slice does too (these stores, each a release ([R-OFF] in stats.cpp), in
  // this order, each followed by its fence_seq bump; the port's acquire load of its own
  // word, its head store and a peer's head load carry that order to the peer, whose
  // second look at its fence_seq before it drops a frame from a port it had seen off
  // then finds the count moved: EndpointLoop::drain_from_disabled; checked with its
  // mutants under IMM and RC11 in tests/model/genmc/port_turn_on.c).
  const std::uint64_t turned_on = disabled_ & ~mask;
  disabled_ = mask;
  for (const bool last : {false, true})
    for (std::size_t i = 0; i < topo_.endpoints.size(); ++i)
      if (((turned_on >> i) & 1) == static_cast<std::uint64_t>(last))
        if (StatsSlice* s = stats_->slice(i)) s->set_peers_disabled(mask);
  wake_endpoints();  // a sleeping endpoint takes it now (it would at its next pass anyway)
}

void Daemon::write_port_table() {
  std::vector<PortInfo> ports;
  for (const auto& e : topo_.endpoints) ports.push_back(port_info(e));
  for (std::size_t i = 0; i < topo_.endpoints.size(); ++i)
    if (StatsSlice* s = stats_->slice(i)) s->write_port_table(ports);
}

void Daemon::publish_ports() {
  write_port_table();
  for (std::size_t i = 0; i < topo_.endpoints.size(); ++i)
    if (StatsSlice* s = stats_->slice(i)) s->bump_fence_seq();  // [R-FENCE] (stats.cpp): after the table's seqlock has closed
  wake_endpoints();  // a sleeping endpoint takes it now (it would at its next pass anyway)
}

std::uint64_t Daemon::stopping_ports() const {
  std::uint64_t busy = 0;
  for (std::size_t i = 0; i < children_.size() && i < 64; ++i)
    if (topo_.endpoints[i].spare && children_[i].pid > 0) busy |= std::uint64_t{1} << i;
  return busy;
}

std::string Daemon::name_of(std::size_t i) const {
  const EndpointConfig& e = topo_.endpoints[i];
  if (!e.spare) return e.name;
  std::string out = "port ";
  out += std::to_string(i);
  if (i < children_.size() && !children_[i].name.empty()) {
    out += " (was ";
    out += children_[i].name;
    out += ')';
  }
  return out;
}

void Daemon::unlink_bound_sockets() {
  for (std::size_t i = 0; i < bound_.size(); ++i) unlink_bound_socket(i);
}

void Daemon::unlink_bound_socket(std::size_t i) {
  if (i >= bound_.size() || bound_[i].path.empty()) return;
  const BoundSocket made = bound_[i];
  bound_[i] = {};
  struct stat st {};
  if (::lstat(made.path.c_str(), &st) != 0) return;  // already gone
  if (S_ISSOCK(st.st_mode) && st.st_dev == made.dev && st.st_ino == made.ino)
    ::unlink(made.path.c_str());
  else
    say("endpoint %s: left %s in place: not the socket this switch made", name_of(i).c_str(),
        made.path.c_str());
}

// Signals arrive through a descriptor; the endpoints inherit the mask and make their own.
Daemon::Step Daemon::take_signals() {
  sigemptyset(&blocked_);
  // SIGUSR1: `vswitchctl link` changed an endpoint's link word; every endpoint's doorbell
  // is rung so that one asleep takes it now, not at its next heartbeat.
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGUSR1}) {
    // A shell without job control starts background commands with SIGINT ignored; an
    // ignored signal never reaches a signalfd, and Ctrl-C / kill -INT would do nothing.
    if (::signal(s, SIG_DFL) == SIG_ERR) return sys::Unexpected(sys::SysError{"signal", errno}.message());
    sigaddset(&blocked_, s);
  }
  if (::sigprocmask(SIG_BLOCK, &blocked_, nullptr) != 0)
    return sys::Unexpected(sys::SysError{"sigprocmask", errno}.message());
  signals_ = sys::Fd(::signalfd(-1, &blocked_, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals_.valid()) return sys::Unexpected(sys::SysError{"signalfd", errno}.message());
  return {};
}

void Daemon::publish_state(std::size_t i, EndpointState s) {
  const auto& e = topo_.endpoints[i];
  DaemonState d{};
  d.state = static_cast<std::uint64_t>(s);
  d.pid = static_cast<std::uint64_t>(children_[i].pid);
  d.restarts = children_[i].restarts;
  d.core = e.core ? *e.core : ~std::uint64_t{0};
  d.last_exit = static_cast<std::uint64_t>(static_cast<std::uint32_t>(children_[i].last_exit));
  d.started_unix_ms = sys::unix_ms();
  d.hung = children_[i].hung;
  d.holder = children_[i].holder;
  stats_->write_daemon(i, d);
}

// Once, at start: what the endpoints will run as, so the log says it before any runs.
void Daemon::say_endpoint_limits() const {
  const std::uint32_t base = topo_.switch_config.endpoint_uid_base;
  std::string ids;
  if (base == 0)
    ids = "keep uid " + std::to_string(::geteuid()) + " (switch.endpoint_uid_base = 0)";
  else if (::geteuid() != 0)
    ids = "keep vswitchd's uid " + std::to_string(::geteuid()) + " (only root can give them their own)";
  else
    ids = "run as uids " + std::to_string(base) + "-" + std::to_string(base + topo_.endpoints.size() - 1);
  std::string filter = std::string(to_string(syscall_filter_for(topo_.switch_config.seccomp)));
  if (topo_.switch_config.seccomp != "off" && !syscall_filter_supported())  // run_daemon refused the rest
    filter += " (switch.seccomp = \"" + topo_.switch_config.seccomp + "\", but a sanitizer build has no filter)";
  say("endpoints %s, no capabilities, system call filter %s", ids.c_str(), filter.c_str());
}

namespace {
// An endpoint process that cannot start: says why and exits (the daemon restarts it).
[[noreturn]] void endpoint_fails(const EndpointConfig& e, const std::string& why) {
  std::fprintf(stderr, "vswitch[%s]: %s\n", e.name.c_str(), why.c_str());
  std::fflush(stderr);
  ::_exit(1);  // never run the daemon's destructors here: they own the shared memory
}
}  // namespace

// fork() gave this process everything the daemon holds; exec drops all of its memory
// (channels, stats objects, heap) and every close-on-exec descriptor. What crosses exec
// is only what endpoint i is handed: its TAP or listening socket (the daemon holds every
// one open, so a restarted endpoint gets the same), the read end of its own doorbell and
// the write ends of its peers' (it can ring them, never drain them), the sealed topology,
// its ready pipe, and 0-2 (standard input /dev/null). Anything else, the topology lock
// and whatever the daemon itself inherited included, is closed first.
void Daemon::exec_endpoint(std::size_t i, int ready_fd) {
  const auto& e = topo_.endpoints[i];
  // A session of its own, without the daemon's controlling terminal (an endpoint must not
  // be able to type into the administrator's shell with TIOCSTI, whatever its filter).
  if (::setsid() < 0) endpoint_fails(e, sys::SysError{"setsid", errno}.message());
  // Die with the daemon (exec keeps this); the endpoint program sets it again and checks.
  if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) endpoint_fails(e, sys::SysError{"prctl(PR_SET_PDEATHSIG)", errno}.message());
  if (::getppid() != daemon_pid_) ::_exit(1);
  // Standard input: nothing (a vswitchd run in the foreground would otherwise hand every
  // endpoint the administrator's terminal). Standard output and error stay: the log.
  if (sys::Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC)); !null.valid() || ::dup2(null.get(), STDIN_FILENO) < 0)
    endpoint_fails(e, sys::SysError{"/dev/null as standard input", errno}.message());
  EndpointProcessArgs a;
  a.index = i;
  a.config_path = topo_.file;
  a.topology_fd = topology_fd_.get();
  a.ready_fd = ready_fd;
  for (std::size_t j = 0; j < doorbells_.size(); ++j)
    a.doorbells.push_back(j == i ? doorbells_[j].read_fd() : doorbells_[j].write_fd());
  if (taps_[i]) a.frontend_fd = taps_[i]->fd();
  if (listeners_[i].valid()) a.frontend_fd = listeners_[i].get();
  a.generation = generation_;
  a.restarts = children_[i].incarnations;
  a.fresh = children_[i].fresh;
  a.daemon_pid = daemon_pid_;
  std::vector<int> keep{STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, a.topology_fd, a.ready_fd};
  keep.insert(keep.end(), a.doorbells.begin(), a.doorbells.end());
  if (a.frontend_fd >= 0) keep.push_back(a.frontend_fd);
  keep.push_back(exe_fd_.get());  // close-on-exec: it goes with the exec
  if (auto st = close_descriptors_except(keep); !st) endpoint_fails(e, st.error());
  for (const int fd : keep) {
    if (fd <= STDERR_FILENO || fd == exe_fd_.get()) continue;
    if (::fcntl(fd, F_SETFD, 0) != 0) endpoint_fails(e, sys::SysError{"fcntl(F_SETFD)", errno}.message());
  }
  const std::vector<std::string> args = endpoint_process_argv(a);
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast): execve's signature
  argv.push_back(nullptr);
  // Only the sanitizer runtimes' options cross (test builds): nothing of the
  // administrator's environment (LD_PRELOAD, LD_LIBRARY_PATH, GLIBC_TUNABLES would load or
  // tune code in a root process at every restart; credentials and sockets have no business
  // there).
  std::vector<char*> envp;
  for (char** v = environ; *v != nullptr; ++v) {
    const std::string_view var(*v);
    for (const std::string_view allowed : {"ASAN_OPTIONS=", "TSAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS="})
      if (var.substr(0, allowed.size()) == allowed) envp.push_back(*v);
  }
  envp.push_back(nullptr);
  ::fexecve(exe_fd_.get(), argv.data(), envp.data());
  endpoint_fails(e, sys::SysError{"exec of the endpoint program (fexecve)", errno}.message());
}

void Daemon::spawn(std::size_t i) {
  Child& c = children_[i];
  // Before the fork: the new process is told its incarnation (a failed try below skips one).
  if (c.started_ms != 0) ++c.incarnations;
  std::fflush(stderr);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    say("endpoint %s: pipe: %s; retrying in 1 s", name_of(i).c_str(), std::strerror(errno));
    c.restart_at_ms = sys::monotonic_ms() + 1000;
    return;
  }
  sys::Fd read_end(p[0]);
  sys::Fd write_end(p[1]);
  const pid_t pid = ::fork();
  if (pid < 0) {
    say("endpoint %s: fork: %s; retrying in 1 s", name_of(i).c_str(), std::strerror(errno));
    c.restart_at_ms = sys::monotonic_ms() + 1000;
    return;
  }
  if (pid == 0) {
    read_end.reset();
    exec_endpoint(i, write_end.release());
  }
  c.pid = pid;
  c.name = topo_.endpoints[i].name;
  c.started_ms = sys::monotonic_ms();
  c.restart_at_ms = 0;
  c.ready = std::move(read_end);
  c.up = false;
  publish_state(i, EndpointState::kStarting);
}

void Daemon::endpoint_ready(std::size_t i) {
  Child& c = children_[i];
  char b = 0;
  const ssize_t n = ::read(c.ready.get(), &b, 1);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  c.ready.reset();
  if (n != 1 || c.pid == 0) return;  // died before it was up: reap() reports it
  // Turned off meanwhile: it is stopping, and reap() says so; it is never shown up.
  if (!topo_.endpoints[i].enabled || c.disabling) return;
  c.up = true;
  c.heartbeat = heartbeat(i);
  c.moved_ms = sys::monotonic_ms();
  // A new process: the last one's ring (always set when the watchdog killed it) is not
  // this one's, which would otherwise never be rung while idle and so be killed as hung
  // at its first idle timeout, and again at every later one.
  c.rung = false;
  // A port just turned on: up, and what waited in its channels dropped as stale; from now
  // on its peers send to it (before the state says up, which vswitchctl reload waits for).
  if (((disabled_ >> i) & 1) != 0 && topo_.endpoints[i].enabled) {
    publish_disabled(disabled_ & ~(std::uint64_t{1} << i));
    c.fresh = false;
    say("endpoint %s enabled: up, and its peers forward to it", name_of(i).c_str());
  }
  publish_state(i, EndpointState::kUp);
  (void)notify_if_all_up();
}

bool Daemon::notify_if_all_up() {
  std::size_t enabled = 0;
  std::size_t declared = 0;
  for (std::size_t k = 0; k < children_.size(); ++k) {
    if (!topo_.endpoints[k].spare) ++declared;
    if (!topo_.endpoints[k].enabled) continue;
    if (!children_[k].up) return false;
    ++enabled;
  }
  if (!ready_sent_) {
    ready_sent_ = true;
    if (enabled == declared) say("ready: all %zu endpoints up", enabled);
    else say("ready: all %zu enabled endpoints up (%zu disabled)", enabled, declared - enabled);
    notifier_.send("READY=1\nSTATUS=" + status_line());
  } else {
    notifier_.send("STATUS=" + status_line());
  }
  return true;
}

std::string Daemon::status_line() const {
  std::size_t up = 0;
  std::size_t enabled = 0;
  std::string down;
  std::string off;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    const std::string& name = topo_.endpoints[i].name;
    if (topo_.endpoints[i].spare) continue;
    if (!topo_.endpoints[i].enabled) {
      off += (off.empty() ? "" : ", ") + name;
      continue;
    }
    ++enabled;
    if (children_[i].up) ++up;
    else down += (down.empty() ? "" : ", ") + name;
  }
  std::string s = "topology \"" + topo_.switch_config.name + "\": " + std::to_string(up) + " of " +
                  std::to_string(enabled) + " endpoints up";
  if (!down.empty()) s += "; not up: " + down;
  if (!off.empty()) s += "; disabled: " + off;
  return s;
}

// SIGHUP (and `vswitchctl reload`, which sends it). The file is read again and compared
// with the topology in force (vswitch/config/topology_diff.hpp). All or nothing: an
// invalid file, or one change that needs a restart of vswitchd, and nothing is applied,
// each change said with its file and line. Otherwise every endpoint whose own settings
// changed is restarted on the new topology (its TAP's MTU set first), and the others
// never stop forwarding. The outcome goes to the log, to systemd (STATUS=) and to the
// stats object (StatsRegion::publish_reload), where vswitchctl reload reads it.
void Daemon::reload() {
  // Before the first READY=1 the service is still starting: a reload then says nothing to
  // the service manager but its STATUS (READY=1 stays for when every port is up).
  const std::string reloading = ready_sent_ ? "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(sys::monotonic_ns() / 1000) + "\n"
                                            : std::string();
  notifier_.send(reloading + "STATUS=reloading " + topo_.file);
  say("reload: re-reading %s", topo_.file.c_str());
  ReloadReport report;
  report.reloads = ++reloads_;
  // Begun, before the file is read: a vswitchctl reload that reads the count from now on
  // waits for the next one (its own SIGHUP's), not this one, which may read the file
  // before its edit.
  stats_->publish_reload(ReloadReport{report.reloads, ReloadOutcome::kRunning, 0, 0});
  auto file = load_topology_file(topo_.file);
  TopologyErrors errors;
  TopologyErrors no_port;  // endpoints added with no spare port left
  std::optional<Topology> t;
  if (!file) {
    errors = file.error();
  } else if (auto placed = place_in_slots(&topo_, file.value(), stopping_ports()); !placed) {
    no_port = placed.error();
  } else {
    t.emplace(std::move(placed.value()));
    errors = check_cores(*t, machine_cpus());
    if (::geteuid() == 0)  // as at start: only root gives endpoints their ids
      for (auto& err : check_endpoint_ids(*t)) errors.push_back(std::move(err));
  }
  std::string outcome;
  if (!no_port.empty()) {
    say("reload refused: %s", format_errors(no_port).c_str());
    report.outcome = ReloadOutcome::kRefused;
    report.changes = no_port.size();
    outcome = "reload refused (no spare port for ";
    outcome += std::to_string(no_port.size());
    outcome += " endpoint(s) added)";
  } else if (!errors.empty()) {
    say("reload: %s is invalid; nothing applied, still running the topology loaded before:", topo_.file.c_str());
    std::fprintf(stderr, "%s\n", format_errors(errors).c_str());
    report.outcome = ReloadOutcome::kInvalid;
    report.changes = errors.size();
    outcome = "reload failed (invalid topology, " + std::to_string(errors.size()) + " error(s))";
  } else if (const auto changes = topology_changes(topo_, *t); changes.empty()) {
    say("reload: %s unchanged", topo_.file.c_str());
    report.outcome = ReloadOutcome::kUnchanged;
    outcome = "reload: unchanged";
  } else {
    report.changes = changes.size();
    std::vector<bool> was_on;
    std::vector<bool> was_spare;
    std::vector<std::string> was_name;
    for (const auto& e : topo_.endpoints) {
      was_on.push_back(e.enabled);
      was_spare.push_back(e.spare);
      was_name.push_back(e.name);
    }
    std::size_t needs_restart = 0;
    for (const auto& c : changes) {
      if (!c.applicable()) ++needs_restart;
      say("reload: %s%s", c.describe(topo_.file).c_str(), c.applicable() ? "" : " (needs a restart of vswitchd)");
    }
    if (needs_restart != 0) {
      say("reload refused: %zu of %zu change(s) need a restart of vswitchd (endpoints added or removed, or a "
          "setting every endpoint reads or the shared memory is sized by); nothing applied, still running the "
          "topology loaded before",
          needs_restart, changes.size());
      report.outcome = ReloadOutcome::kRefused;
      outcome = "reload refused (" + std::to_string(needs_restart) + " change(s) need a restart)";
    } else if (auto st = apply(std::move(*t), changes, report.restarted); !st) {
      say("reload failed: %s; nothing applied, still running the topology loaded before", st.error().c_str());
      report.outcome = ReloadOutcome::kFailed;
      outcome = "reload failed (" + st.error() + ")";
    } else {
      std::string names, on, off, added, removed;
      for (std::size_t i = 0; i < topo_.endpoints.size(); ++i) {
        const EndpointConfig& e = topo_.endpoints[i];
        std::string* list = nullptr;
        const std::uint64_t bit = std::uint64_t{1} << i;
        if (e.spare && !was_spare[i]) {
          list = &removed;
          if (was_on[i]) report.turned_off |= bit;
        } else if (!e.spare && was_spare[i]) {
          list = &added;
          if ((report.restarted & bit) != 0) report.turned_on |= bit;
        } else if (was_on[i] && !e.enabled) {
          list = &off;
          report.turned_off |= bit;
        } else if ((report.restarted & bit) != 0) {
          list = was_on[i] ? &names : &on;
          if (!was_on[i]) report.turned_on |= bit;
        }
        if (list != nullptr) *list += (list->empty() ? "" : ", ") + (e.spare ? was_name[i] : e.name);
      }
      // Worded as before ports could be turned on and off, when none is.
      std::string more;
      if (!on.empty()) more += "; turning on: " + on;
      if (!off.empty()) more += "; turning off: " + off;
      if (!added.empty()) more += "; adding: " + added;
      if (!removed.empty()) more += "; removing: " + removed;
      say("reload: applied %zu change(s); restarting on the new settings: %s%s", changes.size(),
          names.empty() ? "none" : names.c_str(), more.c_str());
      report.outcome = ReloadOutcome::kApplied;
      outcome = names.empty() ? std::string("reload: applied") : "reload: applied, restarted " + names;
      if (!on.empty()) outcome += ", turned on " + on;
      if (!off.empty()) outcome += ", turned off " + off;
      if (!added.empty()) outcome += ", added " + added;
      if (!removed.empty()) outcome += ", removed " + removed;
    }
  }
  stats_->publish_reload(report);
  ++reload_outcomes_[static_cast<std::size_t>(report.outcome)];
  notifier_.send(std::string(ready_sent_ ? "READY=1\n" : "") + "STATUS=" + status_line() + "; " + outcome);
  // A reload that turned off the last port that was not up makes the rest ready.
  if (!ready_sent_) (void)notify_if_all_up();
}

Daemon::Step Daemon::apply(Topology next, const std::vector<TopologyChange>& changes, std::uint64_t& restarted) {
  auto fd = sealed_topology(next.source);
  if (!fd) return sys::Unexpected(topo_.file + ": " + fd.error());
  const std::size_t n = topo_.endpoints.size();
  std::vector<bool> changed(n, false);
  for (const auto& c : changes)
    if (c.endpoint && *c.endpoint < changed.size()) changed[*c.endpoint] = true;
  std::vector<bool> turn_on(n, false);
  std::vector<bool> turn_off(n, false);
  // A port an endpoint added takes: what the port's last endpoint left in its counters
  // and its process's history is not the new one's.
  std::vector<bool> new_holder(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    turn_on[i] = next.endpoints[i].enabled && !topo_.endpoints[i].enabled;
    turn_off[i] = !next.endpoints[i].enabled && topo_.endpoints[i].enabled;
    new_holder[i] = topo_.endpoints[i].spare && !next.endpoints[i].spare;
    // Its process, turned off (or removed) by an earlier reload, has not exited yet: it
    // still holds its TAP or its VMM's connection (and writes its slice), and a new one
    // cannot take them over yet.
    if ((turn_on[i] || new_holder[i]) && children_[i].pid > 0)
      return sys::Unexpected((topo_.endpoints[i].spare ? "the spare port endpoint " + next.endpoints[i].name + " takes"
                                                       : "endpoint " + topo_.endpoints[i].name) +
                             " is still stopping since an earlier reload turned it off or removed its endpoint; "
                             "reload again once `vswitchctl ports` shows it gone");
  }
  // TAP MTUs first, then the TAPs and sockets of ports turned on: the only steps that can
  // fail; one that does undoes those before it (the MTUs the devices had, read before each
  // is set; what was opened, closed and removed; a TAP found, not made, keeps the offloads
  // and MTU its open set), so the running topology is left as it was. An mtu taken
  // out of the file leaves the device's as it is (unset: the namespace's own).
  std::vector<std::pair<std::size_t, std::uint32_t>> mtu_was;
  std::vector<std::size_t> opened;
  const auto undo = [&] {
    for (const auto& [k, was] : mtu_was) (void)taps_[k]->set_mtu(was);
    for (const std::size_t k : opened) release_frontend(k);
  };
  for (std::size_t i = 0; i < n; ++i) {
    const auto& now = next.endpoints[i].mtu;
    if (!changed[i] || turn_on[i] || turn_off[i] || !taps_[i] || !now || now == topo_.endpoints[i].mtu) continue;
    auto was = taps_[i]->mtu();
    if (!was) {
      undo();
      return sys::Unexpected("endpoint " + topo_.endpoints[i].name + ": " + was.error());
    }
    if (auto st = taps_[i]->set_mtu(*now); !st) {
      undo();
      return sys::Unexpected("endpoint " + topo_.endpoints[i].name + ": " + st.error());
    }
    mtu_was.emplace_back(i, was.value());
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!turn_on[i]) continue;
    if (auto st = open_frontend(i, next.endpoints[i]); !st) {
      undo();
      return st;
    }
    opened.push_back(i);
  }
  const bool metrics_moved = topo_.metrics.listen != next.metrics.listen;
  bool ports_moved = false;
  for (std::size_t i = 0; i < n; ++i) ports_moved |= port_info(topo_.endpoints[i]) != port_info(next.endpoints[i]);
  topo_ = std::move(next);
  topology_fd_ = std::move(fd.value());
  // A port given to an endpoint added: what its last endpoint left in the port's slice and
  // its process history is not the new one's (before vswitchctl sees the new name on it).
  for (std::size_t i = 0; i < n; ++i) {
    if (!new_holder[i]) continue;
    // Its process is gone (checked above): nothing else writes the slice. Its bit is set
    // in `disabled_` (a spare port is off) until the new endpoint is up.
    if (StatsSlice* s = stats_->slice(i)) s->reset_for_new_endpoint(disabled_);
    if (i < captures_.size()) captures_[i].restamp(shm::RegionKind::kCapture);
    Child& c = children_[i];
    ++c.holder;
    c.restarts = 0;
    c.hung = 0;
    c.last_exit = 0;
    // `incarnations` goes on: a generator's stream id stays unique on the port (and the
    // new one's peers join its stream midway, as after any earlier run there).
    c.name = topo_.endpoints[i].name;
    publish_state(i, EndpointState::kDisabled);  // until it starts below (if enabled)
  }
  // What vswitchctl shows from now on. Applied either way: a failure only leaves it the
  // text from before (said here; vswitchctl's figures are still the running ones).
  if (auto st = publish_topology(); !st)
    say("reload: vswitchctl will still see the topology from before this reload: %s", st.error().c_str());
  if (metrics_moved) {
    // The old listener closes (a scrape in progress on it is cut, as at shutdown); the
    // new address is bound as at start: one that cannot be bound now is said, and tried
    // again every kMetricsRetryMs while forwarding goes on.
    metrics_.reset();
    metrics_failures_ = 0;
    metrics_retry_ms_ = 0;
    if (topo_.metrics.enabled()) try_metrics(sys::monotonic_ms());
    else say("metrics: off (no [metrics] listen)");
  }
  // Ports turned off: every peer is told first (it sends nothing more to the port, drops
  // what it still gets from it, forgets the addresses behind it), then the port's TAP or
  // socket goes (a namespace loses its interface, a VMM its back-end) and its process is
  // stopped, not to be started again.
  std::uint64_t off = disabled_;
  for (std::size_t i = 0; i < n; ++i)
    if (turn_off[i]) off |= std::uint64_t{1} << i;
  if (off != disabled_) publish_disabled(off);
  // A port's VLANs and address (and a port an endpoint added takes or a removed one gives
  // back, which joins or leaves every VLAN; after the mask, so that what a removed port
  // still sends is dropped as port_disabled): the port itself is restarted on them below
  // (its own settings); every other endpoint takes them from its slice now, without a
  // restart: a removed endpoint's static address goes from every MAC table before the
  // port can be given to another.
  if (ports_moved) publish_ports();
  const std::uint64_t now_ms = sys::monotonic_ms();
  for (std::size_t i = 0; i < n; ++i) {
    if (!turn_off[i]) continue;
    release_frontend(i);
    Child& c = children_[i];
    c.restart_at_ms = 0;
    c.reconfigure = false;
    c.turning_on = false;
    if (c.pid > 0) {
      c.disabling = true;
      // As for a reload's restart: SIGKILL after 3 s (run() watches the deadline).
      if (c.reconfigure_kill_ms == 0) c.reconfigure_kill_ms = now_ms + 3000;
      ::kill(c.pid, SIGTERM);
    } else {
      publish_state(i, EndpointState::kDisabled);  // between restarts: nothing to stop
    }
  }
  restarted = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (turn_on[i]) {
      // Its earlier run is over (its process gone: checked above), so each of its channels
      // ends where that run left it: a peer drops what it finds before that position
      // (StatsSlice::stale_to), once the mask that turns the port on tells it ([R-OFF]).
      // The position is where the new run's producer will start: the head word as it
      // reads it, an invalid one (scribbled by either side) replaced by the tail
      // (FrameProducer's constructor does the same).
      for (std::size_t x = 0; x < n; ++x) {
        const shm::Channel* ch = x == i ? nullptr : fabric_->channel(i, x);
        StatsSlice* slice = stats_->slice(x);
        if (ch == nullptr || slice == nullptr) continue;
        const shm::RingSnapshot snap = ch->area().snapshot();
        const bool valid = snap.head - snap.tail <= ch->area().capacity() && (snap.head & 7) == 0;
        slice->set_stale_to(i, valid ? snap.head : shm::align8(snap.tail));
        // [R-FENCE] (stats.cpp): after the stale_to word; [R-OFF] publishes it again later.
        slice->bump_fence_seq();
      }
      // Started now; its peers are told once it is up (endpoint_ready).
      Child& c = children_[i];
      c.fresh = true;
      c.turning_on = true;
      c.backoff_ms = 0;
      c.restart_at_ms = now_ms;  // run() starts it on its next round
      restarted |= std::uint64_t{1} << i;
      continue;
    }
    if (!changed[i] || turn_off[i] || !topo_.endpoints[i].enabled) continue;  // a port off starts on the new file
    restarted |= std::uint64_t{1} << i;
    Child& c = children_[i];
    if (c.pid > 0) {
      c.reconfigure = true;
      // reap() starts it again at once; one that does not stop is killed after 3 s, as at
      // shutdown (run() watches the deadline). A reload that finds it stopping already
      // keeps the first deadline.
      if (c.reconfigure_kill_ms == 0) c.reconfigure_kill_ms = now_ms + 3000;
      ::kill(c.pid, SIGTERM);
    }
    // Not running (between restarts): its next start reads the new topology.
  }
  return {};
}

std::uint64_t Daemon::heartbeat(std::size_t i) const {
  const EndpointCounters c = stats_->read_counters(i);
  return c.loop.loops + c.loop.sleeps;
}

// A hung endpoint is as bad as a crashed one (a peer's frames to it wait for the stall
// timeout, its VM or namespace is cut off), and nothing else would notice it: its process
// is alive. Its heartbeat moves with every pass that did work and every sleep, and the
// watchdog rings an idle endpoint's doorbell after half the timeout without a move, so a
// heartbeat silent for the whole timeout, and for half of it since the ring, means a
// hung endpoint: it is killed (SIGKILL: a hung process may not act on SIGTERM) and
// restarted like any endpoint that died. The watchdog writes only into vswitchd's own
// non-blocking write end of the doorbell, which no endpoint can make block.
std::uint64_t Daemon::watch(std::uint64_t now) {
  const std::uint64_t timeout = topo_.switch_config.watchdog_ms;
  if (timeout == 0) return 0;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    Child& c = children_[i];
    if (!c.up || c.pid <= 0 || c.killed_hung) continue;
    const std::uint64_t beat = heartbeat(i);
    if (beat != c.heartbeat) {
      c.heartbeat = beat;
      c.moved_ms = now;
      c.rung = false;
    } else if (!c.rung) {
      if (now - c.moved_ms >= timeout / 2) {
        // Idle for half the timeout: an idle endpoint sleeps until something wakes it, so
        // the watchdog does, once, through vswitchd's own non-blocking write end of its
        // doorbell (a full pipe already holds a wake-up); a live endpoint's pass and sleep
        // then move the heartbeat well before the timeout. Idle endpoints so wake once
        // per half timeout at most, not on a timer of their own. Rung late (vswitchd
        // itself did not run for half the timeout: a starved or stopped daemon), it is
        // still rung first: silence it was never asked to break is not a hang.
        const char b = 1;
        (void)!::write(wake_ends_[i].get(), &b, 1);
        c.rung = true;
        c.rung_ms = now;
      }
    } else if (now - c.moved_ms >= timeout && now - c.rung_ms >= timeout / 2) {
      // Silent for the whole timeout, and for half of it since it was rung.
      say("endpoint %s (pid %d) is hung: no progress in %llu ms; killing it",
          name_of(i).c_str(), c.pid, static_cast<unsigned long long>(now - c.moved_ms));
      c.killed_hung = true;
      ++c.hung;
      ::kill(c.pid, SIGKILL);
    }
  }
  return now + std::max<std::uint64_t>(timeout / 8, 10);
}

void Daemon::reap(bool shutting_down) {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (std::size_t i = 0; i < children_.size(); ++i) {
      Child& c = children_[i];
      if (c.pid != pid) continue;
      c.pid = 0;
      c.last_exit = status;
      c.up = false;
      c.ready.reset();
      const bool hung = c.killed_hung;
      c.killed_hung = false;
      // A death the watchdog caused is said as such, whatever a reload asked meanwhile.
      const bool reconfigure = c.reconfigure && !hung;
      const bool disabled = c.disabling;
      c.reconfigure = false;
      c.disabling = false;
      c.reconfigure_kill_ms = 0;
      if (shutting_down) {
        publish_state(i, EndpointState::kStopped);
        break;
      }
      if (disabled || !topo_.endpoints[i].enabled) {
        c.restart_at_ms = 0;
        publish_state(i, EndpointState::kDisabled);
        if (topo_.endpoints[i].spare)
          say("endpoint %s (pid %d) stopped: removed by the reload (%s); its port is spare", name_of(i).c_str(), pid,
              describe_exit(status).c_str());
        else
          say("endpoint %s (pid %d) stopped: turned off by the reload (%s); not started again until enabled",
              name_of(i).c_str(), pid, describe_exit(status).c_str());
        // The ports still on may all be up now (READY=1 if it was never sent).
        if (!notify_if_all_up()) notifier_.send("STATUS=" + status_line());
        break;
      }
      if (reconfigure) {
        c.restart_at_ms = sys::monotonic_ms();
        publish_state(i, EndpointState::kDown);
        say("endpoint %s (pid %d) stopped for the reload (%s); starting it on the new settings",
            name_of(i).c_str(), pid, describe_exit(status).c_str());
        notifier_.send("STATUS=" + status_line());
        break;
      }
      // Quick deaths back off (100 ms doubling to 5 s); one that ran 10 s starts fresh.
      const std::uint64_t now = sys::monotonic_ms();
      c.backoff_ms = (now - c.started_ms >= 10'000 || c.backoff_ms == 0) ? 100 : std::min<std::uint64_t>(c.backoff_ms * 2, 5000);
      c.restart_at_ms = now + c.backoff_ms;
      ++c.restarts;
      publish_state(i, EndpointState::kDown);
      say("endpoint %s (pid %d) %s%s; restarting in %llu ms", name_of(i).c_str(), pid,
          describe_exit(status).c_str(), hung ? " by the watchdog (hung)" : "",
          static_cast<unsigned long long>(c.backoff_ms));
      notifier_.send("STATUS=" + status_line());
    }
  }
}

void Daemon::shutdown() {
  notifier_.send("STOPPING=1\nSTATUS=stopping: endpoints, shared memory, TAP devices");
  for (auto& c : children_)
    if (c.pid > 0) ::kill(c.pid, SIGTERM);
  const std::uint64_t deadline = sys::monotonic_ms() + 3000;
  for (;;) {
    reap(true);
    bool any = false;
    for (auto& c : children_) any |= c.pid > 0;
    if (!any) break;
    const std::uint64_t now = sys::monotonic_ms();
    if (now >= deadline) {
      for (std::size_t i = 0; i < children_.size(); ++i)
        if (children_[i].pid > 0) {
          say("endpoint %s (pid %d) did not stop in 3 s: killing it", name_of(i).c_str(), children_[i].pid);
          ::kill(children_[i].pid, SIGKILL);
        }
      while (::waitpid(-1, nullptr, 0) > 0) {
      }
      break;
    }
    pollfd p{signals_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::uint64_t>(deadline - now, 100))) > 0) {
      signalfd_siginfo si;
      while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
      }
    }
  }
  // The endpoints' listening sockets, and nothing else: a configured path where something
  // else lies now (a file, a link, another socket) was not made by this switch.
  unlink_bound_sockets();
  for (auto& t : taps_)
    if (t && t->created()) {
      if (auto s = t->remove_persistent(); !s) say("tap %s: %s", t->spec().ifname.c_str(), s.error().message().c_str());
    }
  taps_.clear();
  say("stopped; shared memory removed");
}

int Daemon::run() {
  if (auto st = setup(); !st) {
    say("%s", st.error().c_str());
    notifier_.send("STATUS=failed: " + st.error());
    return 1;
  }
  std::vector<std::string> seen_cores(machine_cpus() + 1);
  for (const auto& e : topo_.endpoints)
    if (e.core && *e.core < seen_cores.size()) {
      if (!seen_cores[*e.core].empty())
        say("warning: endpoints %s and %s share core %u (they will take turns)", seen_cores[*e.core].c_str(),
            e.name.c_str(), *e.core);
      else
        seen_cores[*e.core] = e.name;
    }
  say_endpoint_limits();
  std::size_t starting = 0;
  std::size_t spare = 0;
  std::string off;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    if (!topo_.endpoints[i].enabled) {
      publish_state(i, EndpointState::kDisabled);
      if (topo_.endpoints[i].spare) ++spare;
      else off += (off.empty() ? "" : ", ") + topo_.endpoints[i].name;
      continue;
    }
    spawn(i);
    ++starting;
  }
  std::string spares;
  if (spare != 0) {
    spares = ", ";
    spares += std::to_string(spare);
    spares += " spare port(s)";
  }
  say("running topology \"%s\" (%s): %zu endpoints%s%s%s%s, %s", topo_.switch_config.name.c_str(), topo_.file.c_str(),
      topo_.endpoints.size() - spare, off.empty() ? "" : " (disabled: ", off.c_str(), off.empty() ? "" : ")", spares.c_str(),
      "Ctrl-C or SIGTERM stops, SIGHUP re-reads the file");
  notifier_.send("STATUS=starting " + std::to_string(starting) + " endpoints");
  if (starting == 0) (void)notify_if_all_up();  // every port disabled: nothing will report up
  std::uint64_t next_watch_ms = 0;
  for (;;) {
    int timeout = -1;
    const std::uint64_t now = sys::monotonic_ms();
    if (now >= next_watch_ms) next_watch_ms = watch(now);
    if (next_watch_ms != 0) timeout = static_cast<int>(next_watch_ms > now ? next_watch_ms - now : 0);
    for (std::size_t i = 0; i < children_.size(); ++i) {
      Child& c = children_[i];
      if (c.pid > 0 && (c.reconfigure || c.disabling) && c.reconfigure_kill_ms != 0) {
        if (c.reconfigure_kill_ms <= now) {
          say("endpoint %s (pid %d) did not stop for the reload in 3 s: killing it", name_of(i).c_str(),
              c.pid);
          ::kill(c.pid, SIGKILL);
          c.reconfigure_kill_ms = 0;
        } else {
          const int left = static_cast<int>(c.reconfigure_kill_ms - now);
          if (timeout < 0 || left < timeout) timeout = left;
        }
      }
      if (c.pid == 0 && c.restart_at_ms != 0) {
        if (c.restart_at_ms <= now) {
          const bool first = c.started_ms == 0;
          const bool turning_on = c.turning_on;
          c.turning_on = false;
          spawn(i);
          if (turning_on)
            say("endpoint %s turned on: started (pid %d)", name_of(i).c_str(), c.pid);
          else if (!first)
            say("endpoint %s restarted (restart %llu, pid %d)", name_of(i).c_str(),
                static_cast<unsigned long long>(c.restarts), c.pid);
        } else {
          const int left = static_cast<int>(c.restart_at_ms - now);
          if (timeout < 0 || left < timeout) timeout = left;
        }
      }
    }
    // The signals, then each endpoint's "up" pipe.
    std::vector<pollfd> fds{{signals_.get(), POLLIN, 0}};
    std::vector<std::size_t> owner{children_.size()};
    for (std::size_t i = 0; i < children_.size(); ++i)
      if (children_[i].ready.valid()) {
        fds.push_back({children_[i].ready.get(), POLLIN, 0});
        owner.push_back(i);
      }
    if (metrics_retry_ms_ != 0) {
      if (now >= metrics_retry_ms_) try_metrics(now);
      if (metrics_retry_ms_ != 0) {
        const int left = static_cast<int>(metrics_retry_ms_ > now ? metrics_retry_ms_ - now : 0);
        if (timeout < 0 || left < timeout) timeout = left;
      }
    }
    const std::size_t metrics_at = fds.size();
    if (metrics_) {
      metrics_->add_pollfds(fds, now);
      const int left = metrics_->timeout_ms(now);
      if (left >= 0 && (timeout < 0 || left < timeout)) timeout = left;
    }
    const int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno != EINTR) {
      say("poll: %s", std::strerror(errno));
      break;
    }
    if (metrics_)  // also on a timeout: a connection past its deadline is closed
      metrics_->handle(std::span<const pollfd>(fds).subspan(metrics_at), sys::monotonic_ms(),
                       [this] { return metrics_text(); });
    if (n <= 0) continue;
    for (std::size_t k = 1; k < metrics_at; ++k)
      if (fds[k].revents != 0) endpoint_ready(owner[k]);
    if (fds[0].revents == 0) continue;
    signalfd_siginfo si;
    bool stop = false;
    bool hup = false;
    bool wake = false;
    while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) stop = true;
      if (si.ssi_signo == SIGHUP) hup = true;
      if (si.ssi_signo == SIGUSR1) wake = true;
    }
    // A spurious ring costs an endpoint one pass: all of them, the signal names none.
    if (wake) wake_endpoints();
    reap(stop);  // children stopped by the same Ctrl-C are not restarted
    if (stop) {
      say("signal received: stopping");
      break;
    }
    if (hup) reload();
  }
  shutdown();
  return 0;
}

}  // namespace

std::string lock_dir() {
  if (::geteuid() == 0) return "/run/vswitch/lock";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && x[0] == '/') return std::string(x) + "/vswitch";
  // Never a predictable name in a world-writable directory such as /tmp: another user
  // could make it first, and this one could not remove it.
  if (const char* h = std::getenv("HOME"); h != nullptr && h[0] == '/' && h[1] != '\0') return std::string(h) + "/.vswitch";
  return "";
}

std::string lock_path(const std::string& switch_name) { return lock_dir() + "/" + switch_name + ".lock"; }

int run_daemon(const DaemonOptions& options) {
  // Standard input, output and error open (on /dev/null if one was closed): otherwise a
  // descriptor opened later lands on 0-2, where an endpoint's log or a dup2 would take it.
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF && ::open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY) < 0)
      return 1;
  auto file = load_topology_file(options.config_path);
  if (!file) {
    std::fprintf(stderr, "%s\n", format_errors(file.error()).c_str());
    return 2;
  }
  // With spare ports, the layout it runs (the file's order) joins the text it hands on.
  auto topo = place_in_slots(nullptr, file.value());
  if (!topo) {
    std::fprintf(stderr, "%s\n", format_errors(topo.error()).c_str());
    return 2;
  }
  auto errs = check_cores(topo.value(), machine_cpus());
  if (::geteuid() == 0)  // only root gives endpoints their ids
    for (auto& err : check_endpoint_ids(topo.value())) errs.push_back(std::move(err));
  if (!errs.empty()) {
    std::fprintf(stderr, "%s\n", format_errors(errs).c_str());
    return 2;
  }
  const SwitchConfig& sc = topo.value().switch_config;
  // An architecture without an allow-list must not quietly run endpoints without one; a
  // sanitizer build (tests) runs without and says so.
  if (sc.seccomp != "off" && !syscall_filter_supported() && !syscall_filter_missing_for_sanitizer()) {
    std::fprintf(stderr, "%s: switch.seccomp: \"%s\": this architecture has no system call allow-list (x86_64 and "
                 "aarch64 have one); seccomp = \"off\" runs the endpoints without\n",
                 topo.value().file.c_str(), sc.seccomp.c_str());
    return 2;
  }
  const bool own_ids = sc.endpoint_uid_base != 0 && ::geteuid() == 0;
  if (own_ids) {
    // A root without these (a container, systemd's CapabilityBoundingSet=) could not give
    // the endpoints their ids: say so now rather than restart failing endpoints forever.
    auto caps = effective_capabilities();
    const std::uint64_t need = capability_bit(CAP_SETUID) | capability_bit(CAP_SETGID) | capability_bit(CAP_SETPCAP);
    if (!caps || (caps.value() & need) != need) {
      say("switch.endpoint_uid_base = %u needs CAP_SETUID, CAP_SETGID and CAP_SETPCAP, which vswitchd lacks%s; "
          "grant them, or set endpoint_uid_base = 0 (endpoints then keep uid 0 without capabilities)",
          sc.endpoint_uid_base, caps ? "" : (" (" + caps.error() + ")").c_str());
      return 1;
    }
  }
  auto lock = TopologyLock::take(sc.name);
  if (!lock) {
    say("%s", lock.error().c_str());
    return 1;
  }
  if (own_ids)
    if (auto st = lock.value().take_ids(sc.name, sc.endpoint_uid_base, topo.value().endpoints.size()); !st) {
      say("%s", st.error().c_str());
      return 1;
    }
  Daemon d(std::move(topo.value()), std::move(lock.value()));
  return d.run();
}

}  // namespace vswitch
