// vswitch-dpdk-pace: a DPDK "guest" (any ethdev, in the benchmarks a virtio-user port on a
// vhost-user socket) that sends at a fixed offered rate or receives while sleeping when
// idle, for scripts/bench-vhost.sh --rate: both switches are then compared at a rate
// each can carry, by the CPU each spends per frame, without guests that busy-poll the
// machine's cores away from the switch (dpdk-testpmd's txonly has no rate setting).
//
//   vswitch-dpdk-pace EAL-ARGS -- tx --rate FPS --size BYTES --seconds S --src MAC --dst MAC
//   vswitch-dpdk-pace EAL-ARGS -- rx --seconds S [--idle-us U]
//
// tx: frames of BYTES (Ethernet header included, no FCS; ethertype 0x88b5, the IEEE local
// experimental one) from --src to --dst, due at FPS from the start, handed to the port in
// bursts of at most 32; between bursts the sender sleeps until the next frame is due. A
// frame the port's queue does not take is counted as refused and freed (never retried,
// so the offered rate stays the rate). Prints "pace tx: offered N sent S refused R".
// rx: polls the port, and after an empty poll sleeps U microseconds (default 20). Prints
// "pace rx: received N" every second and at the end. Both stop after S seconds or at
// SIGINT / SIGTERM.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "vswitch-dpdk-pace: %s\n", what.c_str());
  std::exit(1);
}

bool parse_mac(const char* s, rte_ether_addr& out) { return rte_ether_unformat_addr(s, &out) == 0; }

void sleep_ns(std::uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000U), static_cast<long>(ns % 1'000'000'000U)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop.load(std::memory_order_relaxed)) {
  }
}

struct Options {
  bool tx = false;
  std::uint64_t rate = 0;
  std::uint32_t size = 64;
  double seconds = 5;
  std::uint64_t idle_us = 20;
  rte_ether_addr src{};
  rte_ether_addr dst{};
  bool have_src = false;
  bool have_dst = false;
};

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) die("usage: EAL-ARGS -- tx|rx [options] (see the head of tests/bench/dpdk_pace.cpp)");
  const std::string mode = argv[1];
  if (mode != "tx" && mode != "rx") die("mode must be tx or rx, not '" + mode + "'");
  o.tx = mode == "tx";
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--rate") o.rate = std::strtoull(v, nullptr, 10);
    else if (a == "--size") o.size = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (a == "--seconds") o.seconds = std::atof(v);
    else if (a == "--idle-us") o.idle_us = std::strtoull(v, nullptr, 10);
    else if (a == "--src") o.have_src = parse_mac(v, o.src);
    else if (a == "--dst") o.have_dst = parse_mac(v, o.dst);
    else die("unknown option " + a);
  }
  if (o.seconds <= 0) die("--seconds must be positive");
  if (o.tx) {
    if (o.rate == 0 || o.rate > 100'000'000) die("tx needs --rate FPS (1..100000000)");
    if (o.size < 60 || o.size > 1514) die("--size must be 60..1514");
    if (!o.have_src || !o.have_dst) die("tx needs --src MAC and --dst MAC");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const int used = rte_eal_init(argc, argv);
  if (used < 0) die(std::string("rte_eal_init: ") + rte_strerror(rte_errno));
  const Options o = parse(argc - used, argv + used);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // nanosleep's default timer slack (50 us) would bunch the sender's bursts.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

  const std::uint16_t port = rte_eth_find_next(0);
  if (port >= RTE_MAX_ETHPORTS) die("no ethdev port (give one with --vdev)");
  rte_mempool* pool = rte_pktmbuf_pool_create("pace", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
  if (pool == nullptr) die(std::string("mbuf pool: ") + rte_strerror(rte_errno));
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0) die("rte_eth_dev_configure failed");
  const int socket = rte_eth_dev_socket_id(port);
  const unsigned qsocket = socket < 0 ? 0U : static_cast<unsigned>(socket);
  if (rte_eth_rx_queue_setup(port, 0, 1024, qsocket, nullptr, pool) != 0) die("rx queue setup failed");
  if (rte_eth_tx_queue_setup(port, 0, 1024, qsocket, nullptr) != 0) die("tx queue setup failed");
  if (rte_eth_dev_start(port) != 0) die("rte_eth_dev_start failed");

  const std::uint64_t hz = rte_get_tsc_hz();
  const std::uint64_t start = rte_rdtsc();
  const auto end = start + static_cast<std::uint64_t>(o.seconds * static_cast<double>(hz));
  const double rate_per_tick = static_cast<double>(o.rate) / static_cast<double>(hz);
  constexpr std::uint16_t kBurst = 32;
  rte_mbuf* bufs[kBurst];
  std::uint64_t received = 0;
  std::uint64_t offered = 0;
  std::uint64_t sent = 0;
  std::uint64_t refused = 0;
  std::uint64_t next_print = start + hz;

  while (!g_stop.load(std::memory_order_relaxed)) {
    const std::uint64_t now = rte_rdtsc();
    if (now >= end) break;
    // Whatever arrives is counted and freed (a sender's port is drained too).
    const std::uint16_t got = rte_eth_rx_burst(port, 0, bufs, kBurst);
    received += got;
    rte_pktmbuf_free_bulk(bufs, got);
    if (!o.tx) {
      if (now >= next_print) {
        std::printf("pace rx: received %llu\n", static_cast<unsigned long long>(received));
        std::fflush(stdout);
        next_print += hz;
      }
      if (got == 0) sleep_ns(o.idle_us * 1000);
      continue;
    }
    // Frames due by now at the offered rate (doubles: exact to the frame for days).
    const auto due = static_cast<std::uint64_t>(static_cast<double>(now - start) * rate_per_tick);
    if (due <= offered) {
      const std::uint64_t next_at = start + static_cast<std::uint64_t>(static_cast<double>(offered + 1) / rate_per_tick);
      if (next_at > now) sleep_ns((next_at - now) * 1'000'000'000U / hz);
      continue;
    }
    const auto n = static_cast<std::uint16_t>(std::min<std::uint64_t>(due - offered, kBurst));
    if (rte_pktmbuf_alloc_bulk(pool, bufs, n) != 0) {  // all in flight: count them refused
      offered += n;
      refused += n;
      continue;
    }
    for (std::uint16_t i = 0; i < n; ++i) {
      char* d = rte_pktmbuf_append(bufs[i], static_cast<std::uint16_t>(o.size));
      if (d == nullptr) die("frame larger than an mbuf");
      std::memset(d, 0, o.size);
      auto* eth = reinterpret_cast<rte_ether_hdr*>(d);
      rte_ether_addr_copy(&o.dst, &eth->dst_addr);
      rte_ether_addr_copy(&o.src, &eth->src_addr);
      eth->ether_type = rte_cpu_to_be_16(0x88b5);
    }
    const std::uint16_t taken = rte_eth_tx_burst(port, 0, bufs, n);
    if (taken < n) rte_pktmbuf_free_bulk(bufs + taken, static_cast<unsigned>(n - taken));
    offered += n;
    sent += taken;
    refused += n - taken;
  }
  if (o.tx)
    std::printf("pace tx: offered %llu sent %llu refused %llu\n", static_cast<unsigned long long>(offered),
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(refused));
  else
    std::printf("pace rx: received %llu\n", static_cast<unsigned long long>(received));
  std::fflush(stdout);
  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  rte_eal_cleanup();
  return 0;
}
