// vswitch-bench ring: the frame ring between two pinned processes, against
// boost::lockfree::spsc_queue doing the same work between two threads, in one run.
// Boost gets its fastest API: bulk push on the producer, consume_all on the consumer, a
// fixed slot of the frame size, and the same bytes of queue memory as our ring.
//
// Work per frame (both implementations): the producer copies a frame of N bytes (with
// its sequence number in the first 8 bytes) into the queue; the consumer copies it out
// into a private buffer and checks the sequence number. Ours crosses a process boundary
// through a named shared-memory region, carries variable-length records, and in "sleep"
// mode both sides sleep through the handshake (eventfd doorbells) when they must.
//
// Runs are interleaved (boost, ours-poll, ours-sleep for each size, repeated) and every
// ratio is a median of per-repetition ratios, because this machine's cross-core latency
// changes under us (the host moves the VM between placements). A cache-line ping-pong probe before
// and after tells which placement state the run saw.
//
//   vswitch-bench ring [--json] [--seconds S] [--reps R] [--idle-seconds S]
#include <sched.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shm/channel.hpp"
#include "shm/doorbell.hpp"
#include "shm/sys/clock.hpp"
#include "vswitch/dataplane/endpoint.hpp"  // kCoalesceTimerSlackNs
#include "vswitch/dataplane/wake_coalescing.hpp"

namespace {

using namespace vswitch::shm;
using Clock = std::chrono::steady_clock;

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

void pin(int cpu) {
  const unsigned n = std::thread::hardware_concurrency();
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(n > 1 ? static_cast<unsigned>(cpu) % n : 0u, &set);
  sched_setaffinity(0, sizeof set, &set);
}

double cpu_seconds_self() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double cpu_seconds_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> f;
  std::string cur;
  for (char c : s.substr(close + 2)) {
    if (c == ' ') { f.push_back(cur); cur.clear(); } else { cur += c; }
  }
  if (f.size() < 13) return 0;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::stod(f[11]) + std::stod(f[12])) / ticks;  // utime, stime (fields 14, 15)
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Cache-line ping-pong between cpu 0 and cpu 1: ~110 ns "near", ~530 ns "far" here.
double probe_rtt_ns() {
  alignas(64) static std::atomic<std::uint64_t> ping{0};
  alignas(64) static std::atomic<std::uint64_t> pong{0};
  ping = 0;
  pong = 0;
  constexpr std::uint64_t kRounds = 50000;
  std::thread t([] {
    pin(1);
    for (std::uint64_t i = 1; i <= kRounds; ++i) {
      while (ping.load(std::memory_order_acquire) != i) cpu_relax();
      pong.store(i, std::memory_order_release);
    }
  });
  pin(0);
  const double t0 = now_s();
  for (std::uint64_t i = 1; i <= kRounds; ++i) {
    ping.store(i, std::memory_order_release);
    while (pong.load(std::memory_order_acquire) != i) cpu_relax();
  }
  const double t1 = now_s();
  t.join();
  return (t1 - t0) / kRounds * 1e9;
}

struct Result {
  std::uint64_t frames = 0;
  double seconds = 0;
  double consumer_cpu = 0;  // fraction of one core
  std::uint64_t consumer_sleeps = 0;
  std::uint64_t producer_sleeps = 0;
  std::uint64_t errors = 0;
  std::uint64_t consumer_timed_sleeps = 0;
  double latency_p50_us = 0, latency_p99_us = 0, latency_max_us = 0;  // paced runs
  double fps() const { return seconds > 0 ? static_cast<double>(frames) / seconds : 0; }
};

// What the consumer process reports back (anonymous shared mapping made before fork).
struct Report {
  std::atomic<std::uint64_t> frames{0};
  std::atomic<std::uint64_t> sleeps{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<double> end_time{0};
  std::atomic<double> cpu{0};
  std::atomic<int> ready{0};
  std::atomic<std::uint64_t> timed_sleeps{0};
  std::atomic<double> latency_p50_us{0}, latency_p99_us{0}, latency_max_us{0};
};

std::uint64_t ring_bytes_for(std::uint32_t size) {
  if (size <= 64) return 64 * 1024;
  if (size <= 9000) return 1 << 20;
  return 2 << 20;
}

enum class Mode { kPoll, kSleep, kPaced, kIdle };
constexpr std::uint32_t kStopLength = 8;  // a record of 8 bytes with seq ~0 ends the run
constexpr std::uint64_t kStopSeq = ~0ULL;
constexpr int kBatch = 32;

// Frame copies use a compile-time size N in both implementations, so the copy is the same
// code for boost (whose slots are fixed-size) and for us: the comparison is of the queues.
// The frame copy, shared by both implementations so it is the same code: small frames in
// 16-byte moves (a plain memcpy of 64 bytes into a vector compiled to a slow `rep movs`
// here), large ones through libc's memcpy.
template <std::uint32_t N>
inline void copy_frame(std::byte* dst, const std::byte* src) noexcept {
  if constexpr (N <= 256) {
    std::uint32_t i = 0;
    for (; i + 16 <= N; i += 16) std::memcpy(dst + i, src + i, 16);
    if constexpr (N % 16 != 0) std::memcpy(dst + i, src + i, N % 16);
  } else {
    std::memcpy(dst, src, N);
  }
}

// A paced frame carries its sequence number, then the CLOCK_MONOTONIC time it was written.
constexpr std::uint32_t kStampOffset = 8;

double percentile_us(std::vector<std::uint64_t>& ns, double q) {
  if (ns.empty()) return 0;
  const std::size_t k = std::min(ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ns.size())));
  std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
  return static_cast<double>(ns[k]) / 1e3;
}

// `coalesce_ns` > 0: the consumer sleeps as an endpoint with coalesce_us does
// (vswitch/dataplane/wake_coalescing.hpp): while frames come within that period of each
// other, it sleeps the period on a timer without arming its wake request.
template <std::uint32_t N>
void consumer_main(const std::string& name, Mode mode, EventFdDoorbell& my_bell,
                   EventFdDoorbell& producer_bell, Report* rep, std::uint64_t coalesce_ns) {
  constexpr std::uint32_t size = N;
  pin(1);
  auto ch = Channel::attach(name);
  if (!ch) { std::fprintf(stderr, "consumer: %s\n", ch.error().c_str()); _exit(2); }
  const bool sleeping = mode != Mode::kPoll;
  // Polling sides declare it (no doorbell): the ring then skips the sleep handshake.
  FrameConsumer c = ch->consumer(sleeping ? &producer_bell : nullptr);
  std::vector<std::byte> out(size > kStopLength ? size : kStopLength);
  std::uint64_t expect = 0, errors = 0, sleeps = 0, timed_sleeps = 0;
  bool stop = false;
  const bool paced = mode == Mode::kPaced;
  std::vector<std::uint64_t> latency_ns;
  if (paced) latency_ns.reserve(1 << 20);
  vswitch::WakeCoalescing coalescing(coalesce_ns);
  if (coalesce_ns != 0) (void)::prctl(PR_SET_TIMERSLACK, vswitch::kCoalesceTimerSlackNs, 0, 0, 0);
  std::uint64_t ran_out = 0;
  // Bursts of up to 48 KiB (and at most a quarter of the ring): big enough to keep index
  // traffic low, small enough that the producer gets space back while the data is still
  // in the consumer's L1/L2.
  const std::uint64_t burst_bytes = std::min<std::uint64_t>(ring_bytes_for(N) / 4, 48 * 1024);
  const std::size_t burst = std::max<std::uint64_t>(1, burst_bytes / record_bytes(N));
  rep->ready.store(1);
  const double cpu0 = cpu_seconds_self();
  auto handle = [&](std::span<const std::byte> payload) {
    std::uint64_t seq = 0;
    if (payload.size() == N) {
      copy_frame<N>(out.data(), payload.data());  // copy out once
      std::memcpy(&seq, out.data(), 8);
      if (paced) {
        std::uint64_t stamp = 0;
        std::memcpy(&stamp, out.data() + kStampOffset, 8);
        latency_ns.push_back(vswitch::sys::monotonic_ns() - stamp);
      }
      if (seq != expect) ++errors;
      expect = seq + 1;
      return;
    }
    if (payload.size() == kStopLength) std::memcpy(&seq, payload.data(), 8);
    if (seq == kStopSeq) stop = true; else ++errors;
  };
  while (!stop) {
    // Like boost's consume_all: everything published, one release at the end.
    if (c.consume_burst(burst, handle) > 0) {
      if (coalesce_ns != 0 && ran_out != 0) {
        coalescing.worked(vswitch::sys::monotonic_ns() - ran_out);
        ran_out = 0;
      }
      continue;
    }
    if (!sleeping) {
      cpu_relax();
      continue;
    }
    if (coalesce_ns != 0) {
      if (ran_out == 0) ran_out = vswitch::sys::monotonic_ns();
      if (coalescing.timed()) {
        coalescing.slept_timed();
        (void)my_bell.wait(std::chrono::nanoseconds(coalesce_ns));  // nothing armed: the timer ends it
        ++sleeps;
        ++timed_sleeps;
        rep->sleeps.store(sleeps, std::memory_order_relaxed);
        continue;
      }
    }
    PopResult r = c.peek_or_arm();
    if (r.status == Pop::kEmpty) {
      my_bell.wait();
      ++sleeps;
      rep->sleeps.store(sleeps, std::memory_order_relaxed);
    }
    // A record (or a counted corruption): the next consume_burst takes it from here.
  }
  errors += c.counters().resyncs;
  c.release();
  rep->end_time.store(now_s());
  rep->cpu.store(cpu_seconds_self() - cpu0);
  rep->frames.store(expect);
  rep->errors.store(errors);
  rep->sleeps.store(sleeps);
  rep->timed_sleeps.store(timed_sleeps);
  if (paced) {
    rep->latency_p50_us.store(percentile_us(latency_ns, 0.50));
    rep->latency_p99_us.store(percentile_us(latency_ns, 0.99));
    rep->latency_max_us.store(percentile_us(latency_ns, 1.0));
  }
  _exit(0);
}

template <std::uint32_t N>
Result run_ours(Mode mode, double seconds, double paced_fps = 0, std::uint64_t coalesce_ns = 0) {
  constexpr std::uint32_t size = N;
  static int counter = 0;
  const std::string name = "/vswitch-bench." + std::to_string(getpid()) + "." + std::to_string(counter++);
  auto ch = Channel::create(ChannelSpec{name, ring_bytes_for(size), std::max<std::uint32_t>(size, kStopLength), 1});
  if (!ch) { std::fprintf(stderr, "%s\n", ch.error().c_str()); std::exit(1); }
  auto consumer_bell = EventFdDoorbell::create();
  auto producer_bell = EventFdDoorbell::create();
  void* mem = mmap(nullptr, sizeof(Report), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* rep = new (mem) Report();
  const pid_t child = fork();
  if (child == 0) consumer_main<N>(name, mode, *consumer_bell, *producer_bell, rep, coalesce_ns);
  pin(0);
  while (rep->ready.load() == 0) std::this_thread::yield();

  const bool sleeping = mode != Mode::kPoll;
  FrameProducer p = ch->producer(sleeping ? &*consumer_bell : nullptr);
  std::vector<std::byte> frame(size, std::byte{0x5a});
  Result res;
  auto push = [&](std::span<const std::byte> bytes) {
    for (;;) {
      Reservation r = sleeping ? p.reserve_or_arm(static_cast<std::uint32_t>(bytes.size()))
                               : p.try_reserve(static_cast<std::uint32_t>(bytes.size()));
      if (r.status == Reserve::kReserved) {
        if (bytes.size() == N)
          copy_frame<N>(r.payload.data(), bytes.data());  // copy in once
        else
          std::memcpy(r.payload.data(), bytes.data(), bytes.size());  // the stop record
        p.commit(static_cast<std::uint32_t>(bytes.size()));
        return;
      }
      if (sleeping) {
        producer_bell->wait();
        ++res.producer_sleeps;
      } else {
        cpu_relax();
      }
    }
  };

  double idle_cpu = 0;
  std::uint64_t idle_wakeups = 0;
  const double t0 = now_s();
  std::uint64_t seq = 0;
  if (mode == Mode::kIdle) {
    const double c0 = cpu_seconds_of(child);
    const std::uint64_t w0 = rep->sleeps.load();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));  // the measured idle period
    idle_wakeups = rep->sleeps.load() - w0;
    idle_cpu = (cpu_seconds_of(child) - c0) / seconds;
  } else if (mode == Mode::kPaced) {
    const double interval = 1.0 / paced_fps;
    double next = t0;
    while (next - t0 < seconds) {
      while (now_s() < next) cpu_relax();
      std::memcpy(frame.data(), &seq, 8);
      const std::uint64_t stamp = vswitch::sys::monotonic_ns();
      std::memcpy(frame.data() + kStampOffset, &stamp, 8);
      push(frame);
      p.publish();  // each frame alone: the worst case for wakeups
      ++seq;
      next += interval;
    }
  } else {
    // Bursts like boost's bulk push: frames staged with their sequence numbers, then
    // written and published together.
    const double deadline = t0 + seconds;
    const std::size_t burst = std::max<std::size_t>(1, std::min<std::size_t>(kBatch, 65536 / N));
    // Contiguous, like boost's staging array of slots.
    std::vector<std::byte> staging(burst * N, std::byte{0x5a});
    auto staged = [&](std::size_t i) { return staging.data() + i * N; };
    const std::vector<std::uint32_t> lengths(burst, N);
    while (true) {
      for (std::size_t i = 0; i < burst; ++i) {
        const std::uint64_t s = seq + i;
        std::memcpy(staged(i), &s, 8);
      }
      std::size_t done = 0;
      while (done < burst) {
        done += p.try_push_burst(std::span(lengths).subspan(done), [&](std::size_t i, std::span<std::byte> d) {
          copy_frame<N>(d.data(), staged(done + i));  // copy in once
        });
        if (done == burst) break;
        if (!sleeping) {
          cpu_relax();
          continue;
        }
        Reservation r = p.reserve_or_arm(N);
        if (r.status == Reserve::kReserved) {
          copy_frame<N>(r.payload.data(), staged(done));
          p.commit(N);
          ++done;
        } else {
          producer_bell->wait();
          ++res.producer_sleeps;
        }
      }
      p.publish();
      seq += burst;
      if ((seq & 1023) < burst && now_s() >= deadline) break;
    }
  }
  std::byte stop[kStopLength];
  std::memcpy(stop, &kStopSeq, 8);
  push(stop);
  p.publish();
  int status = 0;
  waitpid(child, &status, 0);
  res.frames = rep->frames.load();
  res.seconds = rep->end_time.load() - t0;
  res.consumer_cpu = mode == Mode::kIdle ? idle_cpu : rep->cpu.load() / res.seconds;
  res.consumer_sleeps = mode == Mode::kIdle ? idle_wakeups : rep->sleeps.load();
  res.consumer_timed_sleeps = rep->timed_sleeps.load();
  res.latency_p50_us = rep->latency_p50_us.load();
  res.latency_p99_us = rep->latency_p99_us.load();
  res.latency_max_us = rep->latency_max_us.load();
  res.errors = rep->errors.load() + (res.frames != seq ? 1 : 0) + (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1);
  munmap(mem, sizeof(Report));
  return res;
}

template <std::uint32_t N>
struct Slot {
  std::byte bytes[N];
};

template <std::uint32_t N>
Result run_boost(double seconds) {
  const std::size_t slots = std::max<std::size_t>(2, ring_bytes_for(N) / N);
  auto q = std::make_unique<boost::lockfree::spsc_queue<Slot<N>>>(slots);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> sent_total{0};
  Result res;
  double end_time = 0, cpu = 0;
  std::uint64_t errors = 0, got = 0;
  std::thread consumer([&] {
    pin(1);
    auto out = std::make_unique<Slot<N>>();
    std::uint64_t expect = 0;
    rusage r0{};
    getrusage(RUSAGE_THREAD, &r0);
    for (;;) {
      const std::size_t n = q->consume_all([&](const Slot<N>& s) {
        copy_frame<N>(out->bytes, s.bytes);  // copy out
        std::uint64_t seq;
        std::memcpy(&seq, out->bytes, 8);
        if (seq != expect) ++errors;
        expect = seq + 1;
      });
      if (n == 0) {
        if (stop.load(std::memory_order_acquire) && expect == sent_total.load()) break;
        cpu_relax();
      }
    }
    rusage r1{};
    getrusage(RUSAGE_THREAD, &r1);
    cpu = static_cast<double>(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
          static_cast<double>(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    end_time = now_s();
    got = expect;
  });
  pin(0);
  // Boost's fastest producer API: bulk push (one write-index store per burst) from a
  // staging burst whose frames differ only in their sequence number. The burst is bounded
  // to 64 KiB so the source stays cache-resident like ours (one 64 KiB frame at most).
  const std::size_t burst = std::max<std::size_t>(1, std::min<std::size_t>(kBatch, 65536 / N));
  std::vector<Slot<N>> frames(burst);
  for (auto& f : frames) std::memset(f.bytes, 0x5a, N);
  const double t0 = now_s();
  const double deadline = t0 + seconds;
  std::uint64_t seq = 0;
  while (true) {
    for (std::size_t i = 0; i < burst; ++i) {
      const std::uint64_t s = seq + i;
      std::memcpy(frames[i].bytes, &s, 8);
    }
    std::size_t done = 0;
    while (done < burst) {
      done += q->push(frames.data() + done, burst - done);  // copy in
      if (done < burst) cpu_relax();
    }
    seq += burst;
    if ((seq & 1023) < burst && now_s() >= deadline) break;
  }
  sent_total.store(seq);
  stop.store(true, std::memory_order_release);
  consumer.join();
  res.frames = got;
  res.seconds = end_time - t0;
  res.consumer_cpu = cpu / res.seconds;
  res.errors = errors + (got != seq ? 1 : 0);
  return res;
}

Result run_boost_size(std::uint32_t size, double seconds) {
  switch (size) {
    case 64: return run_boost<64>(seconds);
    case 1500: return run_boost<1500>(seconds);
    case 9000: return run_boost<9000>(seconds);
    default: return run_boost<65536>(seconds);
  }
}

Result run_ours_size(std::uint32_t size, Mode mode, double seconds, double paced_fps = 0) {
  switch (size) {
    case 64: return run_ours<64>(mode, seconds, paced_fps);
    case 1500: return run_ours<1500>(mode, seconds, paced_fps);
    case 9000: return run_ours<9000>(mode, seconds, paced_fps);
    default: return run_ours<65536>(mode, seconds, paced_fps);
  }
}

// Single-core memcpy of `size`-byte chunks over a working set the size of the ring.
double memcpy_gbytes_per_s(std::uint32_t size, double seconds) {
  pin(0);
  const std::size_t ws = ring_bytes_for(size);
  std::vector<std::byte> src(ws), dst(ws);
  std::memset(src.data(), 1, ws);
  std::memset(dst.data(), 2, ws);
  const std::size_t chunks = ws / size;
  std::uint64_t bytes = 0;
  const double t0 = now_s();
  double t1 = t0;
  while (t1 - t0 < seconds) {
    for (std::size_t i = 0; i < chunks; ++i) {
      std::memcpy(dst.data() + i * size, src.data() + ((i + 1) % chunks) * size, size);
      asm volatile("" ::: "memory");
    }
    bytes += chunks * size;
    t1 = now_s();
  }
  return static_cast<double>(bytes) / (t1 - t0) / 1e9;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Options {
  bool json = false;
  double seconds = 0.4;
  int reps = 3;
  double idle_seconds = 10;
  double paced_seconds = 2;
  int paced_rounds = 3;
  double coalesce_us = 200;
  std::vector<std::uint32_t> sizes{64, 1500, 9000, 65536};
};

void usage() {
  std::fprintf(stderr,
               "usage: vswitch-bench ring [--json] [--seconds S per case, default 0.4] [--reps R, default 3]\n"
               "                          [--idle-seconds S, default 10] [--paced-seconds S, default 2]\n"
               "                          [--paced-rounds R, default 3] [--coalesce-us U, default 200]\n"
               "                          [--sizes 64,1500,9000,65536 (any of these)]\n");
}

int bench_ring(const Options& o) {
  const std::vector<std::uint32_t> sizes = o.sizes;
  struct Series {
    std::vector<double> boost_fps, poll_fps, sleep_fps, poll_ratio, sleep_ratio, memcpy_gbs, poll_vs_memcpy;
    std::vector<double> poll_cpu, sleep_cpu, sleep_sleeps;
    std::uint64_t errors = 0;
  };
  std::vector<Series> series(sizes.size());
  const double probe_before = probe_rtt_ns();
  for (int rep = 0; rep < o.reps; ++rep) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::uint32_t size = sizes[i];
      Series& s = series[i];
      const Result b = run_boost_size(size, o.seconds);
      const Result p = run_ours_size(size, Mode::kPoll, o.seconds);
      const Result z = run_ours_size(size, Mode::kSleep, o.seconds);
      s.errors += b.errors + p.errors + z.errors;
      s.boost_fps.push_back(b.fps());
      s.poll_fps.push_back(p.fps());
      s.sleep_fps.push_back(z.fps());
      s.poll_ratio.push_back(p.fps() / b.fps());
      s.sleep_ratio.push_back(z.fps() / b.fps());
      s.poll_cpu.push_back(p.consumer_cpu);
      s.sleep_cpu.push_back(z.consumer_cpu);
      s.sleep_sleeps.push_back(static_cast<double>(z.consumer_sleeps));
      if (size == 65536) {
        const double m = memcpy_gbytes_per_s(size, o.seconds / 2);
        s.memcpy_gbs.push_back(m);
        s.poll_vs_memcpy.push_back(p.fps() * size / 1e9 / m);
      }
    }
  }
  // Paced 100k frames/s: woken for each frame, against coalescing, interleaved.
  struct PacedSeries {
    std::vector<double> cpu, sleeps, timed, p50, p99, max, fps;
    void add(const Result& r) {
      cpu.push_back(r.consumer_cpu);
      sleeps.push_back(static_cast<double>(r.consumer_sleeps));
      timed.push_back(static_cast<double>(r.consumer_timed_sleeps));
      p50.push_back(r.latency_p50_us);
      p99.push_back(r.latency_p99_us);
      max.push_back(r.latency_max_us);
      fps.push_back(r.fps());
    }
  } woken, coalesced;
  std::vector<double> paced_cpu_ratio;
  std::uint64_t paced_errors = 0;
  const auto coalesce_ns = static_cast<std::uint64_t>(o.coalesce_us * 1000);
  for (int r = 0; r < o.paced_rounds; ++r) {
    const Result a = run_ours<1500>(Mode::kPaced, o.paced_seconds, 100000);
    const Result b = run_ours<1500>(Mode::kPaced, o.paced_seconds, 100000, coalesce_ns);
    woken.add(a);
    coalesced.add(b);
    paced_errors += a.errors + b.errors;
    if (a.consumer_cpu > 0) paced_cpu_ratio.push_back(b.consumer_cpu / a.consumer_cpu);
  }
  const Result idle = run_ours<64>(Mode::kIdle, o.idle_seconds);
  const double probe_after = probe_rtt_ns();

  std::uint64_t total_errors = paced_errors + idle.errors;
  for (auto& s : series) total_errors += s.errors;
  if (o.json) {
    auto line = [](const char* impl, std::uint32_t size, const char* mode, double fps, double ratio, double cpu,
                   double sleeps, double probe) {
      std::printf("{\"bench\":\"ring\",\"impl\":\"%s\",\"frame_size\":%u,\"mode\":\"%s\",\"frames_per_s\":%.0f,"
                  "\"gbytes_per_s\":%.3f",
                  impl, size, mode, fps, fps * size / 1e9);
      if (ratio > 0) std::printf(",\"ratio_vs_boost\":%.3f", ratio);
      std::printf(",\"consumer_cpu\":%.3f,\"consumer_sleeps\":%.0f,\"probe_rtt_ns\":%.0f}\n", cpu, sleeps, probe);
    };
    const double probe = std::max(probe_before, probe_after);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const Series& s = series[i];
      line("boost_spsc_queue", sizes[i], "poll", median(s.boost_fps), 0, 1.0, 0, probe);
      line("vswitch", sizes[i], "poll", median(s.poll_fps), median(s.poll_ratio), median(s.poll_cpu), 0, probe);
      line("vswitch", sizes[i], "sleep", median(s.sleep_fps), median(s.sleep_ratio), median(s.sleep_cpu),
           median(s.sleep_sleeps), probe);
      if (!s.memcpy_gbs.empty())
        std::printf("{\"bench\":\"ring\",\"impl\":\"memcpy_single_core\",\"frame_size\":%u,\"mode\":\"copy\","
                    "\"frames_per_s\":%.0f,\"gbytes_per_s\":%.3f,\"vswitch_poll_fraction\":%.3f}\n",
                    sizes[i], median(s.memcpy_gbs) * 1e9 / sizes[i], median(s.memcpy_gbs), median(s.poll_vs_memcpy));
    }
    auto paced_line = [&](const char* mode, const PacedSeries& p, double coalesce) {
      std::printf("{\"bench\":\"ring\",\"impl\":\"vswitch\",\"frame_size\":1500,\"mode\":\"%s\",\"frames_per_s\":%.0f,"
                  "\"gbytes_per_s\":%.3f,\"consumer_cpu\":%.3f,\"consumer_sleeps\":%.0f,\"timed_sleeps\":%.0f,"
                  "\"coalesce_us\":%.0f,\"latency_p50_us\":%.1f,\"latency_p99_us\":%.1f,\"latency_max_us\":%.1f,"
                  "\"rounds\":%d}\n",
                  mode, median(p.fps), median(p.fps) * 1500 / 1e9, median(p.cpu), median(p.sleeps), median(p.timed),
                  coalesce, median(p.p50), median(p.p99), median(p.max), o.paced_rounds);
    };
    paced_line("paced", woken, 0);
    paced_line("paced_coalesced", coalesced, o.coalesce_us);
    std::printf("{\"bench\":\"ring\",\"impl\":\"vswitch\",\"frame_size\":1500,\"mode\":\"paced_ratio\","
                "\"cpu_coalesced_over_woken\":%.3f}\n",
                median(paced_cpu_ratio));
    std::printf("{\"bench\":\"ring\",\"impl\":\"vswitch\",\"frame_size\":64,\"mode\":\"idle\",\"frames_per_s\":0,"
                "\"gbytes_per_s\":0,\"seconds\":%.1f,\"consumer_cpu\":%.4f,\"wakeups\":%llu}\n",
                o.idle_seconds, idle.consumer_cpu, static_cast<unsigned long long>(idle.consumer_sleeps));
    std::printf("{\"bench\":\"ring\",\"summary\":true,\"errors\":%llu,\"reps\":%d,\"seconds_per_case\":%.2f,"
                "\"probe_rtt_ns_before\":%.0f,\"probe_rtt_ns_after\":%.0f}\n",
                static_cast<unsigned long long>(total_errors), o.reps, o.seconds, probe_before, probe_after);
  } else {
    std::printf("ring bench: %d interleaved reps x %.2f s per case; cache-line round trip %.0f ns before, %.0f ns after\n"
                "(~110 ns: near placement, ~530 ns: far; compare only runs in the same state)\n\n",
                o.reps, o.seconds, probe_before, probe_after);
    std::printf("%-6s %-6s %14s %9s %12s %9s %10s\n", "size", "mode", "Mframes/s", "GB/s", "ours/boost", "cons.CPU",
                "sleeps");
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const Series& s = series[i];
      const double bf = median(s.boost_fps), pf = median(s.poll_fps), sf = median(s.sleep_fps);
      std::printf("%-6u %-6s %14.2f %9.2f %12s %8.0f%% %10s\n", sizes[i], "boost", bf / 1e6, bf * sizes[i] / 1e9, "",
                  100.0, "");
      std::printf("%-6u %-6s %14.2f %9.2f %12.2f %8.0f%% %10s\n", sizes[i], "poll", pf / 1e6, pf * sizes[i] / 1e9,
                  median(s.poll_ratio), 100 * median(s.poll_cpu), "");
      std::printf("%-6u %-6s %14.2f %9.2f %12.2f %8.0f%% %10.0f\n", sizes[i], "sleep", sf / 1e6, sf * sizes[i] / 1e9,
                  median(s.sleep_ratio), 100 * median(s.sleep_cpu), median(s.sleep_sleeps));
      if (!s.memcpy_gbs.empty())
        std::printf("%-6u %-6s %14s %9.2f   poll = %.0f%% of single-core memcpy\n", sizes[i], "memcpy", "",
                    median(s.memcpy_gbs), 100 * median(s.poll_vs_memcpy));
    }
    std::printf("\npaced 100k frames/s of 1500 B, sleeping, %d interleaved rounds of %.1f s (medians; latency: written to read)\n",
                o.paced_rounds, o.paced_seconds);
    std::printf("%-22s %10s %9s %9s %9s %9s %9s %9s\n", "consumer", "frames/s", "cons.CPU", "sleeps", "timed",
                "p50 us", "p99 us", "max us");
    auto paced_row = [&](const std::string& label, const PacedSeries& p) {
      std::printf("%-22s %10.0f %8.1f%% %9.0f %9.0f %9.1f %9.1f %9.1f\n", label.c_str(), median(p.fps),
                  100 * median(p.cpu), median(p.sleeps), median(p.timed), median(p.p50), median(p.p99), median(p.max));
    };
    paced_row("woken for each frame", woken);
    paced_row("coalesce_us = " + std::to_string(static_cast<int>(o.coalesce_us)), coalesced);
    std::printf("consumer CPU, coalesced / woken: %.2f (median of per-round ratios)\n", median(paced_cpu_ratio));
    std::printf("idle %.0f s, sleeping: consumer CPU %.2f%%, %llu wakeups\n", o.idle_seconds, 100 * idle.consumer_cpu,
                static_cast<unsigned long long>(idle.consumer_sleeps));
    std::printf("errors (lost, reordered or corrupt frames): %llu\n", static_cast<unsigned long long>(total_errors));
  }
  return total_errors == 0 ? 0 : 1;
}

}  // namespace

namespace vswitch::bench {
int bench_hol(int argc, char** argv);  // hol_bench.cpp
int bench_arm(int argc, char** argv);  // arm_bench.cpp
int bench_tap_io(int argc, char** argv);  // tap_io_bench.cpp (with liburing)
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "hol") return vswitch::bench::bench_hol(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "arm") return vswitch::bench::bench_arm(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "tap-io") {
#ifdef VSWITCH_BENCH_TAP_IO
    return vswitch::bench::bench_tap_io(argc, argv);
#else
    std::fprintf(stderr, "vswitch-bench tap-io: built without liburing (scripts/setup.sh installs liburing-dev)\n");
    return 2;
#endif
  }
  if (argc < 2 || std::string(argv[1]) != "ring") {
    usage();
    std::fprintf(stderr, "       vswitch-bench hol [--json] [--seconds S] [--rounds R]\n");
    std::fprintf(stderr, "       vswitch-bench arm [--json] [--rounds R] [--sleeps N] [--channels 1,7,31,61]\n");
    std::fprintf(stderr, "       vswitch-bench tap-io [--json] [--rounds R] [--burst N] [--batch K] [--sizes 64,1400]\n");
    return 2;
  }
  Options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> double {
      if (i + 1 >= argc) { usage(); std::exit(2); }
      return std::atof(argv[++i]);
    };
    if (a == "--json") o.json = true;
    else if (a == "--seconds") o.seconds = value();
    else if (a == "--reps") o.reps = static_cast<int>(value());
    else if (a == "--idle-seconds") o.idle_seconds = value();
    else if (a == "--paced-seconds") o.paced_seconds = value();
    else if (a == "--paced-rounds") o.paced_rounds = std::max(1, static_cast<int>(value()));
    else if (a == "--coalesce-us") o.coalesce_us = std::max(0.0, value());
    else if (a == "--sizes") {
      if (i + 1 >= argc) { usage(); return 2; }
      o.sizes.clear();
      std::string list = argv[++i];
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        const unsigned long v = std::stoul(list.substr(at, comma - at));
        if (v != 64 && v != 1500 && v != 9000 && v != 65536) { usage(); return 2; }
        o.sizes.push_back(static_cast<std::uint32_t>(v));
        at = comma + 1;
      }
    }
    else { usage(); return 2; }
  }
  return bench_ring(o);
}
