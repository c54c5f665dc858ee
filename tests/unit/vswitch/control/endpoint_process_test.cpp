// The endpoint program's command line (what vswitchd execs for each endpoint), and the TAP
// descriptor it adopts.
#include "vswitch/control/endpoint_process.hpp"

#include <unistd.h>

#include <array>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "endpoints/tap/tap_device.hpp"

namespace vswitch {
namespace {

bool parse(std::vector<std::string> args, EndpointProcessArgs& out, std::string& error) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_endpoint_process_args(static_cast<int>(argv.size()), argv.data(), out, error);
}

EndpointProcessArgs sample() {
  EndpointProcessArgs a;
  a.index = 2;
  a.config_path = "/etc/vswitch/lab.toml";
  a.topology_fd = 5;
  a.ready_fd = 6;
  a.doorbells = {7, 8, 9};
  a.frontend_fd = 10;
  a.generation = 0x123456789abcdef1ULL;
  a.restarts = 4;
  a.daemon_pid = 4321;
  return a;
}

TEST(EndpointProcessArgs, WhatVswitchdWritesParsesBack) {
  const EndpointProcessArgs a = sample();
  std::vector<std::string> argv = endpoint_process_argv(a);
  ASSERT_GE(argv.size(), 2u);
  EXPECT_EQ(argv[1], "--endpoint-process");
  EndpointProcessArgs b;
  std::string error;
  ASSERT_TRUE(parse({argv.begin() + 2, argv.end()}, b, error)) << error;
  EXPECT_EQ(b.index, a.index);
  EXPECT_EQ(b.config_path, a.config_path);
  EXPECT_EQ(b.topology_fd, a.topology_fd);
  EXPECT_EQ(b.ready_fd, a.ready_fd);
  EXPECT_EQ(b.doorbells, a.doorbells);
  EXPECT_EQ(b.frontend_fd, a.frontend_fd);
  EXPECT_EQ(b.generation, a.generation);
  EXPECT_EQ(b.restarts, a.restarts);
  EXPECT_EQ(b.daemon_pid, a.daemon_pid);
}

TEST(EndpointProcessArgs, AGeneratorHasNoFrontendDescriptor) {
  EndpointProcessArgs a = sample();
  a.frontend_fd = -1;
  std::vector<std::string> argv = endpoint_process_argv(a);
  EndpointProcessArgs b;
  std::string error;
  ASSERT_TRUE(parse({argv.begin() + 2, argv.end()}, b, error)) << error;
  EXPECT_EQ(b.frontend_fd, -1);
}

// Anything else is refused, naming the argument: the program is only ever run by vswitchd,
// and a command line that does not say exactly what to hold must not start an endpoint.
TEST(EndpointProcessArgs, RefusesWhatIsMissingOrMalformed) {
  const std::vector<std::string> good = [] {
    auto v = endpoint_process_argv(sample());
    return std::vector<std::string>(v.begin() + 2, v.end());
  }();
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--index", "x"},         {"--index", "-1"},        {"--topology-fd", "-1"}, {"--ready-fd", "abc"},
      {"--doorbells", "7,,9"},  {"--doorbells", "7,-1"},  {"--generation", "1e3"}, {"--daemon-pid", "0"},
      {"--frontend-fd", "-2"},  {"--restarts", ""},
  };
  for (const auto& [key, value] : bad) {
    std::vector<std::string> v = good;
    for (std::size_t i = 0; i + 1 < v.size(); ++i)
      if (v[i] == key) v[i + 1] = value;
    EndpointProcessArgs out;
    std::string error;
    EXPECT_FALSE(parse(v, out, error)) << key << " " << value;
    EXPECT_NE(error.find(key), std::string::npos) << error;
  }
  EndpointProcessArgs out;
  std::string error;
  EXPECT_FALSE(parse({"--index", "0"}, out, error));
  EXPECT_NE(error.find("required"), std::string::npos) << error;
  EXPECT_FALSE(parse({"--bogus", "1"}, out, error));
  EXPECT_NE(error.find("--bogus"), std::string::npos) << error;
  EXPECT_FALSE(parse({"--index"}, out, error));
  EXPECT_NE(error.find("needs a value"), std::string::npos) << error;
  EXPECT_FALSE(parse({"--bogus"}, out, error));
  EXPECT_NE(error.find("unknown argument"), std::string::npos) << error;
  std::vector<std::string> twice = good;
  twice.insert(twice.end(), {"--doorbells", "11,12,13"});
  EXPECT_FALSE(parse(twice, out, error));
  EXPECT_NE(error.find("twice"), std::string::npos) << error;
}

// The descriptors it is told about must be distinct and above 0-2: one named twice, or
// standard input named as the topology, is a command line vswitchd never writes.
TEST(EndpointProcessArgs, RefusesSharedOrStandardDescriptors) {
  for (const auto& change : std::vector<std::pair<std::string, std::string>>{
           {"--topology-fd", "0"}, {"--ready-fd", "5"}, {"--frontend-fd", "7"}, {"--doorbells", "7,7,9"}}) {
    auto v = endpoint_process_argv(sample());
    for (std::size_t i = 0; i + 1 < v.size(); ++i)
      if (v[i] == change.first) v[i + 1] = change.second;
    EndpointProcessArgs out;
    std::string error;
    EXPECT_FALSE(parse({v.begin() + 2, v.end()}, out, error)) << change.first << " " << change.second;
    EXPECT_NE(error.find("distinct and above 2"), std::string::npos) << error;
  }
}

// vswitchd may be a container's init: pid 1 is a daemon pid like any other.
TEST(EndpointProcessArgs, AcceptsDaemonPidOne) {
  EndpointProcessArgs a = sample();
  a.daemon_pid = 1;
  auto v = endpoint_process_argv(a);
  EndpointProcessArgs out;
  std::string error;
  ASSERT_TRUE(parse({v.begin() + 2, v.end()}, out, error)) << error;
  EXPECT_EQ(out.daemon_pid, 1);
}

// A handed-over descriptor that is not the TAP it should be is refused, not used.
TEST(TapAdopt, RefusesADescriptorThatIsNotATap) {
  std::array<int, 2> p{-1, -1};
  ASSERT_EQ(::pipe(p.data()), 0);
  ::close(p[1]);
  endpoints::tap::TapSpec spec;
  spec.ifname = "vsw-none";
  auto t = endpoints::tap::TapDevice::adopt(sys::Fd(p[0]), spec);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().find("not a tap device"), std::string::npos) << t.error();
  auto none = endpoints::tap::TapDevice::adopt(sys::Fd(), spec);
  EXPECT_FALSE(none);
}

}  // namespace
}  // namespace vswitch
