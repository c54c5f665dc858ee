#include "vswitch/control/capture_command.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <vector>

#include "shm/sys/clock.hpp"
#include "vswitch/observability/capture.hpp"
#include "vswitch/observability/pcapng.hpp"
#include "vswitch/observability/running_topology.hpp"

namespace vswitch {
namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

bool parse_u64(const std::string& s, std::uint64_t max, std::uint64_t& out) {
  if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno != 0 || v > max) return false;
  out = v;
  return true;
}

// All of `bytes`, or false (EPIPE: the reader of a pipe went away; EINTR: a stop signal
// came while the output would not take more; anything else: a failed output).
bool write_all(int fd, const std::vector<std::byte>& bytes, int& error) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR && g_stop == 0) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string directions_text(std::uint32_t d) {
  return d == kCaptureBoth ? "rx+tx" : d == kCaptureRx ? "rx" : "tx";
}

}  // namespace

bool parse_capture_args(const std::vector<std::string>& args, CaptureOptions& out, std::string& error) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& v) {
      if (i + 1 >= args.size()) {
        error = a + " needs a value";
        return false;
      }
      v = args[++i];
      return true;
    };
    std::string v;
    if (a == "--direction" || a == "-d") {
      if (!value(v)) return false;
      if (v == "rx") out.directions = kCaptureRx;
      else if (v == "tx") out.directions = kCaptureTx;
      else if (v == "both") out.directions = kCaptureBoth;
      else return error = "--direction must be rx, tx or both, not \"" + v + "\"", false;
    } else if (a == "--count" || a == "-n") {
      if (!value(v)) return false;
      if (!parse_u64(v, std::uint64_t{1} << 48, out.count) || out.count == 0)
        return error = "--count must be a number of frames, 1 or more, not \"" + v + "\"", false;
    } else if (a == "--snaplen" || a == "-s") {
      if (!value(v)) return false;
      std::uint64_t s = 0;
      if (!parse_u64(v, shm::kMaxFrameBytes, s))
        return error = "--snaplen must be 0..65536 bytes (0: whole frames), not \"" + v + "\"", false;
      out.snaplen = static_cast<std::uint32_t>(s);
    } else if (a == "-w" || a == "--write") {
      if (!value(out.output)) return false;
      if (out.output.empty()) return error = "-w needs a file name, or - for standard output", false;
    } else if (!a.empty() && a[0] == '-') {
      return error = "unknown capture option \"" + a + "\"", false;
    } else if (out.endpoint.empty()) {
      out.endpoint = a;
    } else {
      return error = "one endpoint per capture (\"" + out.endpoint + "\" and \"" + a + "\")", false;
    }
  }
  if (out.endpoint.empty()) return error = "capture needs an ENDPOINT", false;
  if (out.output.empty()) return error = "capture needs -w FILE (or -w - for standard output)", false;
  return true;
}

int run_capture(const Topology& t, const StatsRegion& stats, const CaptureOptions& o) {
  const std::uint64_t generation = stats.region().generation();
  const EndpointConfig* ep = nullptr;
  for (const auto& e : t.endpoints)
    if (!e.spare && e.name == o.endpoint) ep = &e;
  if (ep == nullptr) {
    std::fprintf(stderr, "vswitchctl: capture: %s has no endpoint \"%s\"\n", t.file.c_str(), o.endpoint.c_str());
    return 2;
  }
  const bool to_stdout = o.output == "-";
  if (to_stdout && ::isatty(STDOUT_FILENO)) {
    std::fprintf(stderr, "vswitchctl: capture: standard output is a terminal; pipe it (| tshark -r -) or use -w FILE\n");
    return 2;
  }
  // Its ring is named by its port's key (its name, unless it took a spare port).
  auto reader = CaptureReader::attach(t.switch_config.name, ep->key, CaptureGeometry::of(t), generation);
  if (!reader) {
    std::fprintf(stderr, "vswitchctl: capture: %s\n", reader.error().c_str());
    return 1;
  }
  CaptureReader& r = *reader.value();
  int fd = STDOUT_FILENO;
  if (!to_stdout) {
    // 0600: the frames are other tenants' traffic. O_NOFOLLOW: root must not truncate
    // whatever a symbolic link planted in a shared directory points at.
    fd = ::open(o.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      std::fprintf(stderr, "vswitchctl: capture: cannot write %s: %s\n", o.output.c_str(), std::strerror(errno));
      return 1;
    }
  }
  // SIGINT and SIGTERM end the capture cleanly (the request withdrawn, the summary
  // printed); without SA_RESTART they also cut a wait short. A closed pipe is EPIPE.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const std::uint32_t snaplen = o.snaplen == 0 || o.snaplen > t.fabric.max_frame ? t.fabric.max_frame : o.snaplen;
  std::vector<std::byte> out;
  pcapng::append_section_header(out, "vswitchctl capture");
  const std::string description = "vswitch " + t.switch_config.name + " endpoint " + o.endpoint + " (" +
                                  std::string(to_string(ep->frontend)) + "); " + directions_text(o.directions);
  pcapng::append_interface(out, snaplen, o.endpoint, description);
  int error = 0;
  bool ok = write_all(fd, out, error);
  // Monotonic stamps to wall-clock time, by the offset between the two clocks now.
  const std::uint64_t offset = sys::clock_ns(CLOCK_REALTIME) - sys::monotonic_ns();
  if (ok) {
    if (auto st = r.start(o.directions, snaplen); !st) {
      std::fprintf(stderr, "vswitchctl: capture: %s\n", st.error().c_str());
      if (!to_stdout) ::close(fd);
      return 1;
    }
    std::fprintf(stderr, "vswitchctl: capturing on %s (%s), %u bytes per frame, to %s\n", o.endpoint.c_str(),
                 directions_text(o.directions).c_str(), snaplen, to_stdout ? "standard output" : o.output.c_str());
    std::fflush(stderr);
  }
  std::uint64_t written = 0;
  auto idle_wait = std::chrono::milliseconds(kCaptureWaitMs);
  // Whether a reload has taken the port from the endpoint (removed; its port may be given
  // to another, whose frames this must not write under this endpoint's name): the running
  // topology, read again once a second.
  const auto port = static_cast<std::size_t>(ep - t.endpoints.data());
  // A port given to another endpoint: the count moves before that endpoint starts, so a
  // frame it copied (taken through the capture ring's acquire load of its head, which its
  // release store of the head pairs with, after its start) is never written here under
  // this endpoint's name: the count is looked at after every drain, before the write.
  const std::uint64_t holder = stats.read_daemon(port).holder;
  std::uint64_t next_look_ms = sys::monotonic_ms() + 1000;
  bool removed = false;
  const auto still_here = [&] {
    auto text = read_running_topology(t.switch_config.name);
    if (!text) return true;  // gone (vswitchd stopped: r.gone() says so) or unreadable now: looked at again
    auto now = load_topology_string(text.value().text, t.file, true);
    return !now || (port < now.value().endpoints.size() && !now.value().endpoints[port].spare &&
                    now.value().endpoints[port].name == o.endpoint);
  };
  while (ok && g_stop == 0 && !r.gone() && (o.count == 0 || written < o.count)) {
    if (t.slotted && sys::monotonic_ms() >= next_look_ms) {
      next_look_ms = sys::monotonic_ms() + 1000;
      if (!still_here()) {
        removed = true;
        break;
      }
    }
    out.clear();
    const std::size_t batch = 256;
    const std::uint64_t left = o.count == 0 ? batch : std::min<std::uint64_t>(batch, o.count - written);
    std::size_t got = 0;
    // drain() hands at most `left` frames: never past the count.
    r.drain(static_cast<std::size_t>(left), [&](const CapturedFrame& f) {
      pcapng::append_packet(out, f.timestamp_ns + offset, f.bytes, f.original_bytes,
                            f.direction == kCaptureRx ? pcapng::Direction::kInbound : pcapng::Direction::kOutbound);
      ++got;
    });
    if (got == 0) {
      // 5 ms after frames, longer while none come: an idle capture wakes rarely, and a
      // burst wakes it at once through the endpoint once a quarter of the ring waits.
      r.wait(idle_wait);
      idle_wait = std::min(idle_wait * 2, std::chrono::milliseconds(kCaptureIdleWaitMs));
      continue;
    }
    idle_wait = std::chrono::milliseconds(kCaptureWaitMs);
    if (stats.read_daemon(port).holder != holder) {
      removed = true;  // these frames may be the port's next endpoint's: not written
      break;
    }
    ok = write_all(fd, out, error);
    if (ok) written += got;
  }
  const CaptureEndpointReport rep = r.report();
  r.stop();
  if (!to_stdout) ::close(fd);
  // Ends that are not failures: the reader of the pipe went away, or a stop signal came
  // while the output would take nothing more.
  const bool pipe_closed = !ok && error == EPIPE;
  const bool interrupted = !ok && error == EINTR;
  const bool gone = r.gone() && (o.count == 0 || written < o.count);
  if (!ok && !pipe_closed && !interrupted)
    std::fprintf(stderr, "vswitchctl: capture: writing %s failed: %s\n", to_stdout ? "standard output" : o.output.c_str(),
                 std::strerror(error));
  if (gone) std::fprintf(stderr, "vswitchctl: capture: vswitchd stopped (it removed the capture object)\n");
  if (removed) std::fprintf(stderr, "vswitchctl: capture: a reload removed endpoint %s\n", o.endpoint.c_str());
  std::fprintf(stderr, "vswitchctl: %" PRIu64 " frames written%s", written,
               pipe_closed ? " (the reader closed the pipe)" : interrupted ? " (stopped while the output was full)" : "");
  if (rep.seen)
    std::fprintf(stderr, "; endpoint %s copied %" PRIu64 ", missed %" PRIu64 " for lack of room in its capture ring, %" PRIu64
                 " while this capture's heartbeat had lapsed",
                 o.endpoint.c_str(), rep.captured, rep.dropped, rep.expired);
  else
    std::fprintf(stderr, "; endpoint %s copied nothing (no frame in the directions asked for, or it is not up: "
                 "vswitchctl ports)", o.endpoint.c_str());
  if (r.invalid_records() != 0 || r.ring_resyncs() != 0 || r.stale_records() != 0)
    std::fprintf(stderr,
                 "; %" PRIu64 " malformed records skipped, %" PRIu64 " copied for an earlier capture skipped, %" PRIu64
                 " ring resynchronisations",
                 r.invalid_records(), r.stale_records(), r.ring_resyncs());
  std::fprintf(stderr, "\n");
  return (ok || pipe_closed || interrupted) && !gone && !removed ? 0 : 1;
}

}  // namespace vswitch
