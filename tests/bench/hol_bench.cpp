// vswitch-bench hol: what a receiver that withholds its buffers costs the traffic of the
// others. Three endpoint loops on real channels in shared memory (the same EndpointLoop
// vswitchd runs, each on its own thread, sleeping on its own eventfd): e0 sends as fast
// as it can, alternately to e1 and e2; e2 takes everything; e1 is in one of three modes:
//   taking       its guest takes every frame (the baseline)
//   withholding  its guest posts no receive buffer (every delivery waits: kRetryLater)
//   absent       its loop does not run (its channel from e0 fills and is never drained)
// The figure is e2's rate of frames received in each mode; the ratio to the baseline of
// the same round is what withholding (or absence) costs a destination that keeps up.
// Rounds interleave the modes (taking, withholding, absent, taking, ...) and the summary
// gives the median of the per-round ratios.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shm/sys/eventfd.hpp"
#include "tests/support/test_frontends.hpp"
#include "vswitch/config/topology.hpp"
#include "vswitch/dataplane/endpoint.hpp"
#include "vswitch/frontends/generator.hpp"

namespace vswitch::bench {
namespace {

using test_support::AlternatingFrontend;
using test_support::WithholdingFrontend;

enum class Mode { kTaking, kWithholding, kAbsent };
const char* name(Mode m) {
  switch (m) {
    case Mode::kTaking: return "taking";
    case Mode::kWithholding: return "withholding";
    case Mode::kAbsent: return "absent";
  }
  return "?";
}

struct Round {
  double e2_fps = 0;       // frames e2 received per second
  double e1_fps = 0;       // frames e1 took per second (0 unless taking)
  double sender_fps = 0;   // frames e0 read from its frontend per second
};

class Loop {
 public:
  Loop(const EndpointResources& res, Frontend& f) : stop_(std::move(sys::EventFd::create().value())) {
    EndpointResources r = res;
    r.stop_fd = stop_.fd();
    thread_ = std::thread([r, &f] {
      EndpointLoop loop(r, f);
      auto st = loop.run();
      if (!st) std::fprintf(stderr, "vswitch-bench hol: loop: %s\n", st.error().c_str());
    });
  }
  ~Loop() {
    stop_.signal();
    thread_.join();
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

 private:
  sys::EventFd stop_;
  std::thread thread_;
};

Round run_round(Mode mode, double seconds, std::uint64_t round) {
  const std::string sw = "holbench" + std::to_string(::getpid()) + "r" + std::to_string(round);
  std::string text = "[switch]\nname = \"" + sw + "\"\n[fabric]\nring_bytes = 1048576\nmax_frame = 1500\n";
  for (int i = 0; i < 3; ++i)
    text += "[[endpoint]]\nname = \"e" + std::to_string(i) + "\"\nfrontend = \"generator\"\nmac = \"02:00:00:00:00:0" +
            std::to_string(i + 1) + "\"\n";
  auto topo = load_topology_string(text, "hol-bench.toml");
  if (!topo) {
    std::fprintf(stderr, "%s\n", format_errors(topo.error()).c_str());
    std::exit(1);
  }
  auto fabric = shm::Fabric::create(topo->fabric_spec(round | 1));
  if (!fabric) {
    std::fprintf(stderr, "vswitch-bench hol: %s\n", fabric.error().c_str());
    std::exit(1);
  }
  std::vector<shm::EventFdDoorbell> bells;
  for (int i = 0; i < 3; ++i) bells.push_back(std::move(shm::EventFdDoorbell::create().value()));
  std::vector<shm::Doorbell*> bell_ptrs;
  for (auto& b : bells) bell_ptrs.push_back(&b);
  auto resources = [&](std::size_t i) {
    EndpointResources r;
    r.topology = &*topo;
    r.self = i;
    r.fabric = &*fabric;
    r.doorbells = bell_ptrs;
    r.doorbell_fd = bells[i].fd();
    return r;
  };
  GeneratorFrontend::Config to_e1, to_e2;
  to_e1.stream = 0;
  to_e2.stream = 1;
  to_e1.source = to_e2.source = *topo->endpoints[0].mac;
  to_e1.destination = *topo->endpoints[1].mac;
  to_e2.destination = *topo->endpoints[2].mac;
  to_e1.sizes = to_e2.sizes = {1500 - 14 - 4};  // full-size Ethernet frames
  AlternatingFrontend sender(to_e1, to_e2);
  WithholdingFrontend e1, e2;
  e1.take = mode == Mode::kTaking;
  e2.take = true;
  std::optional<Loop> l1, l2, l0;
  if (mode != Mode::kAbsent) l1.emplace(resources(1), e1);
  l2.emplace(resources(2), e2);
  l0.emplace(resources(0), sender);
  // Warm up past the learning of the MAC addresses (the first frames flood) and, for the
  // modes that hold e1's frames, past e1's channel filling; then measure.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t e2_0 = e2.delivered.load(), e1_0 = e1.delivered.load(), s_0 = sender.sent.load();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const std::uint64_t e2_1 = e2.delivered.load(), e1_1 = e1.delivered.load(), s_1 = sender.sent.load();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  l0.reset();
  l1.reset();
  l2.reset();
  return Round{static_cast<double>(e2_1 - e2_0) / dt, static_cast<double>(e1_1 - e1_0) / dt,
               static_cast<double>(s_1 - s_0) / dt};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 != 0 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void usage() {
  std::fprintf(stderr, "usage: vswitch-bench hol [--json] [--seconds S per mode and round, default 2] [--rounds R, default 5]\n");
}

}  // namespace

int bench_hol(int argc, char** argv) {
  bool json = false;
  double seconds = 2;
  int rounds = 5;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if ((a == "--seconds" || a == "--rounds") && i + 1 < argc) {
      const double v = std::atof(argv[++i]);
      if (v <= 0) {
        usage();
        return 2;
      }
      if (a == "--seconds") seconds = v;
      else rounds = static_cast<int>(v);
    } else {
      usage();
      return 2;
    }
  }
  std::vector<double> withholding_ratio, absent_ratio, taking_fps, withholding_fps, absent_fps;
  std::uint64_t n = 0;
  for (int r = 0; r < rounds; ++r) {
    const Round base = run_round(Mode::kTaking, seconds, ++n);
    const Round held = run_round(Mode::kWithholding, seconds, ++n);
    const Round gone = run_round(Mode::kAbsent, seconds, ++n);
    taking_fps.push_back(base.e2_fps);
    withholding_fps.push_back(held.e2_fps);
    absent_fps.push_back(gone.e2_fps);
    withholding_ratio.push_back(base.e2_fps > 0 ? held.e2_fps / base.e2_fps : 0);
    absent_ratio.push_back(base.e2_fps > 0 ? gone.e2_fps / base.e2_fps : 0);
    for (const auto& [m, x] : {std::pair{Mode::kTaking, base}, std::pair{Mode::kWithholding, held},
                               std::pair{Mode::kAbsent, gone}}) {
      if (json)
        std::printf("{\"bench\":\"hol\",\"round\":%d,\"e1\":\"%s\",\"e2_frames_per_s\":%.0f,\"e1_frames_per_s\":%.0f,"
                    "\"sender_frames_per_s\":%.0f}\n",
                    r, name(m), x.e2_fps, x.e1_fps, x.sender_fps);
      else
        std::printf("round %d  e1 %-11s  e2 %9.0f frames/s  e1 %9.0f frames/s  e0 read %9.0f frames/s\n", r, name(m),
                    x.e2_fps, x.e1_fps, x.sender_fps);
    }
    std::fflush(stdout);
  }
  if (json)
    std::printf("{\"bench\":\"hol\",\"summary\":true,\"rounds\":%d,\"e2_taking_fps\":%.0f,\"e2_withholding_fps\":%.0f,"
                "\"e2_absent_fps\":%.0f,\"withholding_over_taking\":%.3f,\"absent_over_taking\":%.3f}\n",
                rounds, median(taking_fps), median(withholding_fps), median(absent_fps), median(withholding_ratio),
                median(absent_ratio));
  else
    std::printf("e2's rate, median over %d rounds: e1 taking %.0f, withholding %.0f (ratio %.3f), absent %.0f (ratio %.3f)\n",
                rounds, median(taking_fps), median(withholding_fps), median(withholding_ratio), median(absent_fps),
                median(absent_ratio));
  return 0;
}

}  // namespace vswitch::bench
