// vswitch-bench tap-io: what a frame costs between a TAP and the switch's memory, done the
// way the TAP frontend does it (one readv or writev per frame) against io_uring batches
// (one submission of `batch` reads or writes; what a batched TAP frontend would do).
//
//   rx  the kernel has queued `burst` frames on the TAP (UDP datagrams sent to a
//       neighbour behind it); draining them: readv straight into the destination buffer,
//       against io_uring reads (RWF_NOWAIT) into buffers of the ring's own, each then
//       copied to the destination (an io_uring read cannot target a channel record: the
//       destination is known only once the frame's address has been read).
//   tx  writing `burst` frames (virtio-net header + frame, gathered) to the TAP: writev
//       against io_uring writev batches, each batch submitted and reaped in one call.
// The figure is the draining or writing thread's CPU time per frame
// (CLOCK_THREAD_CPUTIME_ID). Methods alternate within each round (A B, then B A) and the
// summary is the median over rounds of io_uring / syscall per round.
//
// Runs in a network namespace of its own (unshare(CLONE_NEWNET): its TAP and its traffic
// disappear with the process). Needs root.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "endpoints/tap/tap_device.hpp"

namespace vswitch::bench {
namespace {

namespace tap = endpoints::tap;

double thread_cpu_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 != 0 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Options {
  unsigned burst = 512;
  unsigned batch = 32;
  unsigned rounds = 20;
  std::vector<unsigned> sizes{64, 1400};
  bool json = false;
};

class Bench {
 public:
  Bench(tap::TapDevice& dev, int sock, const Options& o) : dev_(dev), sock_(sock), o_(o) {
    if (::io_uring_queue_init(256, &ring_, 0) != 0) {
      std::fprintf(stderr, "tap-io: io_uring_queue_init failed (io_uring disabled?)\n");
      std::exit(1);
    }
    bufs_.assign(o.batch, std::vector<std::byte>(tap::kTsoFrameBytes + 64));
    dest_.resize(tap::kTsoFrameBytes + 64);
  }
  ~Bench() { ::io_uring_queue_exit(&ring_); }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  // Queues `burst` datagrams of `size` bytes on the TAP; returns how many the socket took.
  unsigned fill(unsigned size) {
    std::vector<char> payload(size, 'x');
    unsigned sent = 0;
    for (unsigned i = 0; i < o_.burst; ++i)
      if (::send(sock_, payload.data(), payload.size(), 0) == static_cast<ssize_t>(payload.size())) ++sent;
    return sent;
  }

  // ns per frame drained, or a negative value when nothing came.
  double rx_readv() {
    std::size_t n = 0;
    const double t0 = thread_cpu_ns();
    for (;;) {
      auto r = dev_.read(dest_);
      if (!r || r.value().status == tap::TapRead::Status::kNone) break;
      ++n;
    }
    const double t = thread_cpu_ns() - t0;
    return n != 0 ? t / static_cast<double>(n) : -1;
  }

  double rx_uring() {
    std::size_t n = 0;
    const double t0 = thread_cpu_ns();
    for (bool more = true; more;) {
      for (unsigned i = 0; i < o_.batch; ++i) {
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        ::io_uring_prep_read(sqe, dev_.fd(), bufs_[i].data(), static_cast<unsigned>(bufs_[i].size()), 0);
        sqe->rw_flags = RWF_NOWAIT;  // an empty queue answers -EAGAIN instead of waiting
        ::io_uring_sqe_set_data64(sqe, i);
      }
      ::io_uring_submit_and_wait(&ring_, o_.batch);
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (cqe->res <= 0) {
          more = false;
          continue;
        }
        std::memcpy(dest_.data(), bufs_[cqe->user_data].data(), static_cast<std::size_t>(cqe->res));
        ++n;
      }
      ::io_uring_cq_advance(&ring_, seen);
    }
    const double t = thread_cpu_ns() - t0;
    return n != 0 ? t / static_cast<double>(n) : -1;
  }

  // A frame for a station that is not the TAP's: the stack drops it at once.
  void make_frame(unsigned size) {
    frame_.assign(tap::kTapVnetHeaderBytes + 14 + 20 + 8 + size, std::byte{0});
    std::byte* eth = frame_.data() + tap::kTapVnetHeaderBytes;
    const unsigned char dst[6] = {0x02, 0, 0, 0, 0x77, 0x01};
    const unsigned char src[6] = {0x02, 0, 0, 0, 0x77, 0x02};
    std::memcpy(eth, dst, 6);
    std::memcpy(eth + 6, src, 6);
    eth[12] = std::byte{0x08};
  }

  double tx_writev() {
    const double t0 = thread_cpu_ns();
    std::size_t n = 0;
    for (unsigned i = 0; i < o_.burst; ++i) {
      const iovec parts[2] = {{frame_.data(), tap::kTapVnetHeaderBytes},
                              {frame_.data() + tap::kTapVnetHeaderBytes, frame_.size() - tap::kTapVnetHeaderBytes}};
      if (dev_.write(parts)) ++n;
    }
    const double t = thread_cpu_ns() - t0;
    return n != 0 ? t / static_cast<double>(n) : -1;
  }

  double tx_uring() {
    std::vector<iovec> parts(2 * std::size_t{o_.batch});
    const double t0 = thread_cpu_ns();
    std::size_t n = 0;
    for (unsigned done = 0; done < o_.burst;) {
      const unsigned k = std::min(o_.batch, o_.burst - done);
      for (std::size_t i = 0; i < k; ++i) {
        parts[2 * i] = {frame_.data(), tap::kTapVnetHeaderBytes};
        parts[2 * i + 1] = {frame_.data() + tap::kTapVnetHeaderBytes, frame_.size() - tap::kTapVnetHeaderBytes};
        ::io_uring_prep_writev(::io_uring_get_sqe(&ring_), dev_.fd(), &parts[2 * i], 2, 0);
      }
      ::io_uring_submit_and_wait(&ring_, k);
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (cqe->res > 0) ++n;
      }
      ::io_uring_cq_advance(&ring_, seen);
      done += k;
    }
    const double t = thread_cpu_ns() - t0;
    return n != 0 ? t / static_cast<double>(n) : -1;
  }

 private:
  tap::TapDevice& dev_;
  int sock_;
  const Options& o_;
  io_uring ring_{};
  std::vector<std::vector<std::byte>> bufs_;
  std::vector<std::byte> dest_;
  std::vector<std::byte> frame_;
};

void usage() {
  std::fprintf(stderr, "usage: vswitch-bench tap-io [--json] [--rounds R] [--burst N] [--batch K] [--sizes 64,1400]\n");
}

}  // namespace

int bench_tap_io(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> unsigned long {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return std::strtoul(argv[++i], nullptr, 10);
    };
    if (a == "--json") {
      o.json = true;
    } else if (a == "--rounds") {
      o.rounds = static_cast<unsigned>(value());
    } else if (a == "--burst") {
      o.burst = static_cast<unsigned>(value());
    } else if (a == "--batch") {
      o.batch = static_cast<unsigned>(value());
    } else if (a == "--sizes") {
      if (i + 1 >= argc) {
        usage();
        return 2;
      }
      o.sizes.clear();
      const std::string list = argv[++i];
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        o.sizes.push_back(static_cast<unsigned>(std::stoul(list.substr(at, comma - at))));
        at = comma + 1;
      }
    } else {
      usage();
      return 2;
    }
  }
  if (o.rounds == 0 || o.burst == 0 || o.batch == 0 || o.batch > 128 ||
      std::any_of(o.sizes.begin(), o.sizes.end(), [](unsigned s) { return s < 1 || s > 1472; })) {
    std::fprintf(stderr, "tap-io: rounds, burst > 0; batch 1-128; sizes 1-1472 (one datagram per frame)\n");
    return 2;
  }
  if (::unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "tap-io: unshare(CLONE_NEWNET): %s (needs root)\n", std::strerror(errno));
    return 1;
  }
  tap::TapSpec spec;
  spec.ifname = "tapio0";
  spec.mac = std::array<std::uint8_t, 6>{0x02, 0, 0, 0, 0x77, 0x02};
  auto dev = tap::TapDevice::open(spec);
  if (!dev) {
    std::fprintf(stderr, "tap-io: %s\n", dev.error().c_str());
    return 1;
  }
  // The queue must hold a whole burst, or the kernel drops what the bench would drain.
  const std::string setup = "ip link set lo up && ip link set tapio0 txqueuelen " + std::to_string(o.burst + 64) +
                            " && ip addr add 10.98.0.1/24 dev tapio0 && "
                            "ip neigh replace 10.98.0.2 lladdr 02:00:00:00:77:01 dev tapio0 nud permanent";
  if (std::system(setup.c_str()) != 0) {
    std::fprintf(stderr, "tap-io: could not address the TAP (ip from iproute2)\n");
    return 1;
  }
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  ::inet_pton(AF_INET, "10.98.0.2", &to.sin_addr);
  const int sndbuf = 64 << 20;
  ::setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
  if (sock < 0 || ::connect(sock, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    std::fprintf(stderr, "tap-io: socket: %s\n", std::strerror(errno));
    return 1;
  }
  Bench b(dev.value(), sock, o);
  if (!o.json)
    std::printf("tap-io: %u frames per burst, io_uring batches of %u, %u rounds; ns of CPU per frame, medians\n",
                o.burst, o.batch, o.rounds);
  int bad = 0;
  for (const unsigned size : o.sizes) {
    std::vector<double> rx_sys, rx_ur, rx_ratio, tx_sys, tx_ur, tx_ratio;
    b.make_frame(size);
    for (unsigned r = 0; r < o.rounds; ++r) {
      double s = -1;
      double u = -1;
      for (int k = 0; k < 2; ++k) {  // A B in even rounds, B A in odd ones
        const bool uring_first = (r % 2) != 0;
        const bool uring = (k == 0) == uring_first;
        b.fill(size);
        (uring ? u : s) = uring ? b.rx_uring() : b.rx_readv();
      }
      if (s > 0 && u > 0) {
        rx_sys.push_back(s);
        rx_ur.push_back(u);
        rx_ratio.push_back(u / s);
      }
      s = u = -1;
      for (int k = 0; k < 2; ++k) {
        const bool uring = (k == 0) == ((r % 2) != 0);
        (uring ? u : s) = uring ? b.tx_uring() : b.tx_writev();
      }
      if (s > 0 && u > 0) {
        tx_sys.push_back(s);
        tx_ur.push_back(u);
        tx_ratio.push_back(u / s);
      }
    }
    if (rx_ratio.empty() || tx_ratio.empty()) {
      std::fprintf(stderr, "tap-io: size %u: no frames %s\n", size, rx_ratio.empty() ? "drained" : "written");
      ++bad;
      continue;
    }
    if (o.json) {
      std::printf("{\"bench\":\"tap-io\",\"size\":%u,\"burst\":%u,\"batch\":%u,\"rounds\":%zu,"
                  "\"rx_readv_ns\":%.0f,\"rx_io_uring_ns\":%.0f,\"rx_ratio_io_uring_over_readv\":%.3f,"
                  "\"tx_writev_ns\":%.0f,\"tx_io_uring_ns\":%.0f,\"tx_ratio_io_uring_over_writev\":%.3f}\n",
                  size, o.burst, o.batch, rx_ratio.size(), median(rx_sys), median(rx_ur), median(rx_ratio),
                  median(tx_sys), median(tx_ur), median(tx_ratio));
    } else {
      std::printf("  %5u B  rx: readv %6.0f  io_uring %6.0f  ratio %.3f   tx: writev %6.0f  io_uring %6.0f  ratio %.3f\n",
                  size, median(rx_sys), median(rx_ur), median(rx_ratio), median(tx_sys), median(tx_ur),
                  median(tx_ratio));
    }
  }
  ::close(sock);
  return bad == 0 ? 0 : 1;
}

}  // namespace vswitch::bench
