#include "vswitch/daemon.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "endpoints/tap/tap_device.hpp"
#include "shm/doorbell.hpp"
#include "shm/sys/clock.hpp"
#include "shm/fabric.hpp"
#include "vswitch/endpoint.hpp"
#include "vswitch/frontends.hpp"
#include "vswitch/stats.hpp"
#include "vswitch/topology.hpp"

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



std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "stopped (status " + std::to_string(status) + ")";
}

unsigned machine_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<unsigned>(CPU_COUNT(&set));
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

// Holds the topology's lock file for the daemon's lifetime.
class TopologyLock {
 public:
  static std::optional<TopologyLock> take(const std::string& name, std::string& error) {
    const std::string path = lock_path(name);
    sys::Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      error = "cannot open lock " + path + ": " + std::strerror(errno);
      return std::nullopt;
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {};
      const ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
      std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      error = "topology \"" + name + "\" is already run by another vswitchd (pid " + pid + ", lock " + path +
              "); stop it first";
      return std::nullopt;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
      error = "cannot write lock " + path + ": " + std::strerror(errno);
      return std::nullopt;
    }
    return TopologyLock(std::move(fd), path);
  }
  TopologyLock(TopologyLock&&) = default;
  ~TopologyLock() {
    if (fd_.valid()) ::unlink(path_.c_str());  // still locked: nobody else can own it now
  }

 private:
  TopologyLock(sys::Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  sys::Fd fd_;
  std::string path_;
};

// Shared-memory objects of this switch name that a daemon which did not shut down left.
// Only called with the lock held, so none of them can belong to a live daemon.
void remove_stale_objects(const std::string& name) {
  const std::string prefix = "vswitch." + name + ".";
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.rfind(prefix, 0) == 0 && n != prefix + "lock") stale.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : stale) {
    if (::unlink(("/dev/shm/" + n).c_str()) == 0)
      say("removed stale shared memory /dev/shm/%s (left by a vswitchd that did not shut down)", n.c_str());
  }
}

// The directory a vhost-user endpoint's listening socket goes in. The endpoint binds the
// socket itself (a restarted endpoint binds it again); the daemon makes sure, before
// forking anything, that the directory exists and that nobody but its owner can replace
// what is in it: QEMU connects to whatever socket is at that path, so a directory another
// local user can write would let that user put a socket of their own in the switch's place.
//
// A missing directory is created (with any missing parents) with mode 0755: QEMU may run
// as another user and must be able to reach the socket, which itself stays 0600
// (connecting needs write permission on the socket, so only its owner can connect).
std::optional<std::string> prepare_socket_dir(const std::string& endpoint, const std::string& socket) {
  const auto slash = socket.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : socket.substr(0, slash);
  const uid_t me = ::geteuid();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return "endpoint " + endpoint + ": socket directory " + dir + ": " + std::strerror(errno);
    // mkdir -p, each component created 0755 whatever the umask.
    for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
      if (pos != dir.size() && dir[pos] != '/') continue;
      const std::string part = dir.substr(0, pos);
      if (::mkdir(part.c_str(), 0755) == 0) {
        if (::chmod(part.c_str(), 0755) != 0)
          return "endpoint " + endpoint + ": chmod 0755 " + part + ": " + std::strerror(errno);
        say("endpoint %s: created socket directory %s (mode 0755)", endpoint.c_str(), part.c_str());
      } else if (errno != EEXIST) {
        return "endpoint " + endpoint + ": cannot create socket directory " + part + ": " + std::strerror(errno);
      }
    }
    if (::stat(dir.c_str(), &st) != 0)
      return "endpoint " + endpoint + ": socket directory " + dir + ": " + std::strerror(errno);
  }
  if (!S_ISDIR(st.st_mode)) return "endpoint " + endpoint + ": socket directory " + dir + " is not a directory";
  if (st.st_uid != me && st.st_uid != 0)
    return "endpoint " + endpoint + ": socket directory " + dir + " is owned by uid " + std::to_string(st.st_uid) +
           ", not by " + (me == 0 ? std::string("root") : "uid " + std::to_string(me) + " or root") +
           ": its owner could replace the socket; use a directory of your own";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return "endpoint " + endpoint + ": socket directory " + dir + " (mode " + mode +
           ") is writable by group or others: another user could replace the socket; use a directory only its "
           "owner can write (e.g. chmod go-w " + dir + ")";
  }
  return std::nullopt;
}

struct Child {
  pid_t pid = 0;
  std::uint64_t started_ms = 0;
  std::uint64_t restarts = 0;
  std::uint64_t restart_at_ms = 0;  // 0: none scheduled
  std::uint64_t backoff_ms = 0;
  int last_exit = 0;
};

class Daemon {
 public:
  Daemon(Topology topology, TopologyLock lock) : topo_(std::move(topology)), lock_(std::move(lock)) {}

  int run();

 private:
  std::optional<std::string> setup();
  void spawn(std::size_t i);
  [[noreturn]] void endpoint_main(std::size_t i);
  void reap(bool shutting_down);
  void publish_state(std::size_t i, EndpointState s);
  void shutdown();

  Topology topo_;
  TopologyLock lock_;
  std::optional<shm::Fabric> fabric_;
  std::optional<StatsRegion> stats_;
  std::vector<shm::EventFdDoorbell> doorbells_;
  std::vector<shm::Doorbell*> doorbell_ptrs_;
  std::vector<std::unique_ptr<endpoints::tap::TapDevice>> taps_;
  std::vector<Child> children_;
  sys::Fd signals_;
  sigset_t blocked_{};
  pid_t daemon_pid_ = 0;
};

std::optional<std::string> Daemon::setup() {
  daemon_pid_ = ::getpid();
  const std::size_t n = topo_.endpoints.size();
  if (n < 2) return "the topology needs at least two endpoints";
  if (n > kMaxEndpoints) return "at most " + std::to_string(kMaxEndpoints) + " endpoints are supported";
  for (const auto& e : topo_.endpoints)
    if (const auto* o = std::get_if<VhostUserOptions>(&e.options))
      if (auto err = prepare_socket_dir(e.name, o->socket)) return err;
  remove_stale_objects(topo_.switch_config.name);

  std::random_device rd;
  const std::uint64_t generation = (std::uint64_t{rd()} << 32 | rd()) | 1;
  shm::FabricSpec spec;
  spec.name = topo_.switch_config.name;
  for (const auto& e : topo_.endpoints) spec.endpoints.push_back(e.name);
  spec.ring_bytes = topo_.fabric.ring_bytes;
  spec.max_payload = topo_.fabric.max_frame + shm::kVirtioNetHeaderBytes;
  spec.generation = generation;
  auto fabric = shm::Fabric::create(spec);
  if (!fabric) return fabric.error();
  fabric_.emplace(std::move(fabric.value()));
  auto stats = StatsRegion::create(spec.name, n, topo_.switch_config.mac_table_size, generation);
  if (!stats) return stats.error();
  stats_.emplace(std::move(stats.value()));
  stats_->set_daemon_pid(static_cast<std::uint64_t>(daemon_pid_));

  for (std::size_t i = 0; i < n; ++i) {
    auto bell = shm::EventFdDoorbell::create();
    if (!bell) return "doorbell: " + bell.error().message();
    doorbells_.push_back(std::move(bell.value()));
  }
  for (auto& b : doorbells_) doorbell_ptrs_.push_back(&b);

  // TAP devices are opened here and held by the daemon, so an endpoint that restarts
  // inherits the same device (frames queued in it wait; its addresses stay).
  taps_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& e = topo_.endpoints[i];
    if (e.frontend != FrontendKind::kTap) continue;
    const auto& o = std::get<TapOptions>(e.options);
    endpoints::tap::TapSpec ts{o.ifname, o.netns, std::nullopt};
    if (e.mac) ts.mac = e.mac->bytes;
    auto tap = endpoints::tap::TapDevice::open(ts);
    if (!tap) return "endpoint " + e.name + ": " + tap.error();
    taps_[i] = std::make_unique<endpoints::tap::TapDevice>(std::move(tap.value()));
    say("endpoint %s: tap %s%s%s %s", e.name.c_str(), o.ifname.c_str(), o.netns.empty() ? "" : " in netns ",
        o.netns.c_str(), taps_[i]->created() ? "created" : "attached");
  }

  // Signals arrive through a descriptor; the endpoints inherit the mask and make their own.
  sigemptyset(&blocked_);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) {
    // A shell without job control starts background commands with SIGINT ignored; an
    // ignored signal never reaches a signalfd, and Ctrl-C / kill -INT would do nothing.
    ::signal(s, SIG_DFL);
    sigaddset(&blocked_, s);
  }
  ::sigprocmask(SIG_BLOCK, &blocked_, nullptr);
  signals_ = sys::Fd(::signalfd(-1, &blocked_, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals_.valid()) return std::string("signalfd: ") + std::strerror(errno);
  children_.resize(n);
  return std::nullopt;
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
  stats_->write_daemon(i, d);
}

void Daemon::endpoint_main(std::size_t i) {
  const auto& e = topo_.endpoints[i];
  // Die with the daemon, never outlive it holding channels.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != daemon_pid_) ::_exit(1);
  ::prctl(PR_SET_NAME, ("vsw-" + e.name).substr(0, 15).c_str());
  signals_.reset();
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGCHLD);
  sigaddset(&unblock, SIGHUP);
  ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  sys::Fd stop_fd(::signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  if (e.core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(*e.core, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0)
      std::fprintf(stderr, "vswitch[%s]: cannot pin to core %u: %s\n", e.name.c_str(), *e.core, std::strerror(errno));
  }
  EndpointResources res;
  res.topology = &topo_;
  res.self = i;
  res.fabric = &*fabric_;
  res.doorbells = doorbell_ptrs_;
  res.doorbell_fd = doorbells_[i].fd();
  res.stats = &*stats_;
  res.stop_fd = stop_fd.get();
  const Counters initial = stats_->read_counters(i);
  const bool restarted = children_[i].restarts != 0;

  std::unique_ptr<Frontend> frontend;
  GeneratorFrontend* generator = nullptr;
  VhostUserFrontend* vhost = nullptr;
  Counters scratch{};
  if (e.frontend == FrontendKind::kTap) {
    frontend = std::make_unique<TapFrontend>(*taps_[i]);
  } else if (e.frontend == FrontendKind::kVhostUser) {
    const auto& o = std::get<VhostUserOptions>(e.options);
    auto v = VhostUserFrontend::create(o.socket, static_cast<std::uint16_t>(o.queue_size), scratch);
    if (!v) {
      std::fprintf(stderr, "vswitch[%s]: vhost-user socket %s: %s\n", e.name.c_str(), o.socket.c_str(),
                   v.error().c_str());
      std::fflush(stderr);
      ::_exit(1);
    }
    vhost = v.value().get();
    frontend = std::move(v.value());
  } else {
    const auto& o = std::get<GeneratorOptions>(e.options);
    GeneratorFrontend::Config c;
    c.stream = static_cast<std::uint32_t>(i) | static_cast<std::uint32_t>(children_[i].restarts << 8);
    c.source = e.mac ? *e.mac : MacAddress{{0x02, 0x76, 0x73, 0x77, 0x00, static_cast<std::uint8_t>(i)}};
    c.destination = MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    for (const auto& p : topo_.endpoints)
      if (!o.peer.empty() && p.name == o.peer && p.mac) c.destination = *p.mac;
    c.sizes = o.sizes;
    c.rate_fps = o.rate_fps;
    c.join_streams_midway = restarted;
    auto g = std::make_unique<GeneratorFrontend>(c, scratch);
    generator = g.get();
    frontend = std::move(g);
  }
  int status = 0;
  {
    // Scoped: the loop (and its event log's writer thread, which flushes pending messages)
    // ends here, before _exit.
    EndpointLoop loop(res, *frontend, initial);
    if (generator != nullptr) generator->use_counters(loop.counters());
    if (vhost != nullptr) {
      vhost->use_counters(loop.counters());
      vhost->use_log(loop.events());
    }
    std::fprintf(stderr, "vswitch[%s]: up (pid %d, core %s, %s)\n", e.name.c_str(), ::getpid(),
                 e.core ? std::to_string(*e.core).c_str() : "any", std::string(to_string(e.frontend)).c_str());
    auto st = loop.run();
    if (!st) {
      std::fprintf(stderr, "vswitch[%s]: %s\n", e.name.c_str(), st.error().c_str());
      status = 1;
    }
  }
  std::fflush(stderr);
  ::_exit(status);  // never run the daemon's destructors here: they own the shared memory
}

void Daemon::spawn(std::size_t i) {
  Child& c = children_[i];
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    say("endpoint %s: fork: %s; retrying in 1 s", topo_.endpoints[i].name.c_str(), std::strerror(errno));
    c.restart_at_ms = sys::monotonic_ms() + 1000;
    return;
  }
  if (pid == 0) endpoint_main(i);
  c.pid = pid;
  c.started_ms = sys::monotonic_ms();
  c.restart_at_ms = 0;
  publish_state(i, EndpointState::kUp);
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
      if (shutting_down) {
        publish_state(i, EndpointState::kStopped);
        break;
      }
      // Quick deaths back off (100 ms doubling to 5 s); one that ran 10 s starts fresh.
      const std::uint64_t now = sys::monotonic_ms();
      c.backoff_ms = (now - c.started_ms >= 10'000 || c.backoff_ms == 0) ? 100 : std::min<std::uint64_t>(c.backoff_ms * 2, 5000);
      c.restart_at_ms = now + c.backoff_ms;
      ++c.restarts;
      publish_state(i, EndpointState::kDown);
      say("endpoint %s (pid %d) %s; restarting in %llu ms", topo_.endpoints[i].name.c_str(), pid,
          describe_exit(status).c_str(), static_cast<unsigned long long>(c.backoff_ms));
    }
  }
}

void Daemon::shutdown() {
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
          say("endpoint %s (pid %d) did not stop in 3 s: killing it", topo_.endpoints[i].name.c_str(), children_[i].pid);
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
  for (const auto& e : topo_.endpoints)  // the endpoints' listening sockets
    if (const auto* o = std::get_if<VhostUserOptions>(&e.options)) ::unlink(o->socket.c_str());
  for (auto& t : taps_)
    if (t && t->created()) {
      if (auto s = t->remove_persistent(); !s) say("tap %s: %s", t->spec().ifname.c_str(), s.error().message().c_str());
    }
  taps_.clear();
  say("stopped; shared memory removed");
}

int Daemon::run() {
  if (auto err = setup()) {
    say("%s", err->c_str());
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
  for (std::size_t i = 0; i < children_.size(); ++i) spawn(i);
  say("running topology \"%s\" (%s): %zu endpoints, %s", topo_.switch_config.name.c_str(), topo_.file.c_str(),
      topo_.endpoints.size(), "Ctrl-C or SIGTERM stops");
  for (;;) {
    int timeout = -1;
    const std::uint64_t now = sys::monotonic_ms();
    for (std::size_t i = 0; i < children_.size(); ++i) {
      Child& c = children_[i];
      if (c.pid == 0 && c.restart_at_ms != 0) {
        if (c.restart_at_ms <= now) {
          spawn(i);
          say("endpoint %s restarted (restart %llu, pid %d)", topo_.endpoints[i].name.c_str(),
              static_cast<unsigned long long>(c.restarts), c.pid);
        } else {
          const int left = static_cast<int>(c.restart_at_ms - now);
          if (timeout < 0 || left < timeout) timeout = left;
        }
      }
    }
    pollfd p{signals_.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, timeout);
    if (n <= 0) continue;
    signalfd_siginfo si;
    bool stop = false;
    while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP) stop = true;
    }
    reap(stop);  // children stopped by the same Ctrl-C are not restarted
    if (stop) {
      say("signal received: stopping");
      break;
    }
  }
  shutdown();
  return 0;
}

}  // namespace

std::string lock_path(const std::string& switch_name) { return "/dev/shm/vswitch." + switch_name + ".lock"; }

int run_daemon(const DaemonOptions& options) {
  auto topo = load_topology_file(options.config_path);
  if (!topo) {
    std::fprintf(stderr, "%s\n", format_errors(topo.error()).c_str());
    return 2;
  }
  if (auto errs = check_cores(topo.value(), machine_cpus()); !errs.empty()) {
    std::fprintf(stderr, "%s\n", format_errors(errs).c_str());
    return 2;
  }
  std::string error;
  auto lock = TopologyLock::take(topo.value().switch_config.name, error);
  if (!lock) {
    say("%s", error.c_str());
    return 1;
  }
  Daemon d(std::move(topo.value()), std::move(*lock));
  return d.run();
}

}  // namespace vswitch
