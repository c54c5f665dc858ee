// The Prometheus text: escaping, one block per family, the switch's families and labels,
// and the /metrics server's answers over a real socket (slow and surplus clients too).
// The integration test (tests/integration/metrics_prometheus.sh) has a real Prometheus
// scrape a running vswitchd.
#include "vswitch/observability/metrics.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "vswitch/control/metrics_server.hpp"

namespace vswitch {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The format's grammar for what we write: comments, then samples "name{labels} value".
void expect_well_formed(const std::string& text) {
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find('\r'), std::string::npos);
  const std::regex help(R"(# HELP ([a-zA-Z_][a-zA-Z0-9_]*) .*)");
  const std::regex type(R"(# TYPE ([a-zA-Z_][a-zA-Z0-9_]*) (counter|gauge))");
  const std::regex sample(
      R"re(([a-zA-Z_][a-zA-Z0-9_]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? [0-9.e+-]+)re");
  std::map<std::string, int> seen_help;
  std::string current;  // the family whose block we are in
  std::map<std::string, bool> closed;
  for (const std::string& l : lines_of(text)) {
    std::smatch m;
    if (std::regex_match(l, m, help)) {
      EXPECT_EQ(++seen_help[m[1]], 1) << "a second HELP for " << m[1];
      if (!current.empty()) closed[current] = true;
      current = m[1];
      EXPECT_FALSE(closed[current]) << current << " appears in two blocks";
    } else if (std::regex_match(l, m, type)) {
      EXPECT_EQ(m[1], current);
    } else if (std::regex_match(l, m, sample)) {
      EXPECT_EQ(m[1], current) << "sample outside its family's block: " << l;
    } else {
      ADD_FAILURE() << "not a line of the text format: " << l;
    }
  }
}

TEST(PrometheusText, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(PrometheusText::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(PrometheusText::escape_help("x\\y\"z\nw"), "x\\\\y\"z\\nw");
  PrometheusText p;
  p.add("vswitch_x_total", PrometheusText::Type::kCounter, "help \\ with\nnewline", {{"endpoint", "q\"uote"}}, std::uint64_t{1});
  const std::string s = p.str();
  EXPECT_NE(s.find("# HELP vswitch_x_total help \\\\ with\\nnewline\n"), std::string::npos) << s;
  EXPECT_NE(s.find("vswitch_x_total{endpoint=\"q\\\"uote\"} 1\n"), std::string::npos) << s;
  expect_well_formed(s);
}

TEST(PrometheusText, EachFamilyIsOneBlockWhateverTheOrderOfAdding) {
  PrometheusText p;
  using T = PrometheusText::Type;
  p.add("a_total", T::kCounter, "a", {{"endpoint", "1"}}, std::uint64_t{1});
  p.add("b", T::kGauge, "b", {{"endpoint", "1"}}, std::uint64_t{2});
  p.add("a_total", T::kCounter, "a", {{"endpoint", "2"}}, std::uint64_t{3});
  p.add("b", T::kGauge, "b", {{"endpoint", "2"}}, std::uint64_t{4});
  EXPECT_EQ(p.str(),
            "# HELP a_total a\n# TYPE a_total counter\na_total{endpoint=\"1\"} 1\na_total{endpoint=\"2\"} 3\n"
            "# HELP b b\n# TYPE b gauge\nb{endpoint=\"1\"} 2\nb{endpoint=\"2\"} 4\n");
}

TEST(PrometheusText, LargeCountersAreExactAndFractionsReadBack) {
  PrometheusText p;
  p.add("big_total", PrometheusText::Type::kCounter, "h", {}, std::uint64_t{9007199254740993});  // 2^53 + 1
  p.add_real("cpu_seconds_total", PrometheusText::Type::kCounter, "h", {}, 12.34);
  const std::string s = p.str();
  EXPECT_NE(s.find("big_total 9007199254740993\n"), std::string::npos) << s;
  EXPECT_NE(s.find("cpu_seconds_total 12.34\n"), std::string::npos) << s;
}

std::vector<EndpointMetrics> two_endpoints() {
  std::vector<EndpointMetrics> eps(2);
  eps[0].name = "a";
  eps[0].frontend = FrontendKind::kTap;
  eps[0].state.state = static_cast<std::uint64_t>(EndpointState::kUp);
  eps[0].state.restarts = 2;
  eps[0].cpu_seconds = 1.5;
  EndpointCounters c{};
  c.traffic.rx_frames = 5;
  c.traffic.tx_bytes = 18446744073709551615ULL;  // the largest count: exact, not rounded
  c.drops.count(DropReason::kPeerFull, 2);
  c.mac.entries = 3;
  c.peers[1].out_frames = 7;
  c.peers[1].stalled = 1;
  eps[0].counters = c;
  eps[1].name = "b";
  eps[1].port = 1;
  eps[1].frontend = FrontendKind::kVhostUser;
  eps[1].state.state = static_cast<std::uint64_t>(EndpointState::kStarting);
  // b's slice could not be read: its state and restarts still show, no counters.
  return eps;
}

TEST(Metrics, TheSwitchsFamiliesAndLabels) {
  const std::string s = render_metrics(two_endpoints(), {ChannelMetrics{"a", "b", 4096, 1048576}});
  expect_well_formed(s);
  for (const char* want : {
           "vswitch_endpoint_up{endpoint=\"a\",frontend=\"tap\"} 1\n",
           "vswitch_endpoint_up{endpoint=\"b\",frontend=\"vhost-user\"} 0\n",
           "vswitch_endpoint_state{endpoint=\"b\",state=\"starting\"} 1\n",
           "vswitch_endpoint_state{endpoint=\"b\",state=\"up\"} 0\n",
           "vswitch_endpoint_restarts_total{endpoint=\"a\"} 2\n",
           "vswitch_endpoint_cpu_seconds_total{endpoint=\"a\"} 1.5\n",
           "vswitch_rx_frames_total{endpoint=\"a\"} 5\n",
           "vswitch_tx_bytes_total{endpoint=\"a\"} 18446744073709551615\n",
           "vswitch_drops_total{endpoint=\"a\",reason=\"peer_full\"} 2\n",
           "vswitch_drops_total{endpoint=\"a\",reason=\"spoofed_source\"} 0\n",
           "# TYPE vswitch_mac_entries gauge\nvswitch_mac_entries{endpoint=\"a\"} 3\n",
           "vswitch_peer_out_frames_total{endpoint=\"a\",peer=\"b\"} 7\n",
           "# TYPE vswitch_peer_stalled gauge\nvswitch_peer_stalled{endpoint=\"a\",peer=\"b\"} 1\n",
           "vswitch_channel_used_bytes{from=\"a\",to=\"b\"} 4096\n",
           "vswitch_channel_capacity_bytes{from=\"a\",to=\"b\"} 1048576\n",
       })
    EXPECT_NE(s.find(want), std::string::npos) << "missing: " << want;
  EXPECT_EQ(s.find("vswitch_rx_frames_total{endpoint=\"b\"}"), std::string::npos) << "b has no readable counters";
  EXPECT_EQ(s.find("peer=\"a\"}"), std::string::npos) << "b's peer counters are unreadable too";
  EXPECT_EQ(s.find("endpoint=\"a\",peer=\"a\""), std::string::npos) << "no endpoint is its own peer";
  EXPECT_EQ(s.find("vswitch_metrics_"), std::string::npos) << "no server figures unless given";
}

// The metrics endpoint's own figures: scrapes, and every connection it ended early by why.
// With a spare port between them (b's, removed), a's counters for c are those of c's port.
TEST(Metrics, PeerCountersAreTheirPortsWhateverIsLeftOut) {
  std::vector<EndpointMetrics> eps = two_endpoints();
  eps[1].name = "c";
  eps[1].port = 2;
  eps[0].counters->peers[1].out_frames = 4;  // b's, from before it was removed
  eps[0].counters->peers[2].out_frames = 9;
  const std::string s = render_metrics(eps, {});
  EXPECT_NE(s.find("vswitch_peer_out_frames_total{endpoint=\"a\",peer=\"c\"} 9\n"), std::string::npos) << s;
}

TEST(Metrics, TheServersOwnFigures) {
  ServerMetrics server;
  server.scrapes = 12;
  server.closed = {{"evicted", 3}, {"bad_request", 0}};
  const std::string s = render_metrics(two_endpoints(), {}, &server);
  expect_well_formed(s);
  EXPECT_NE(s.find("# TYPE vswitch_metrics_scrapes_total counter\nvswitch_metrics_scrapes_total 12\n"), std::string::npos);
  EXPECT_NE(s.find("vswitch_metrics_connections_closed_total{reason=\"evicted\"} 3\n"), std::string::npos) << s;
  EXPECT_NE(s.find("vswitch_metrics_connections_closed_total{reason=\"bad_request\"} 0\n"), std::string::npos);
}

// The daemon's reloads, one series per outcome, each a counter.
TEST(Metrics, ReloadsByOutcome) {
  DaemonMetrics daemon;
  daemon.reloads = {{"applied", 2}, {"refused", 1}};
  const std::string s = render_metrics(two_endpoints(), {}, nullptr, &daemon);
  expect_well_formed(s);
  EXPECT_NE(s.find("# TYPE vswitch_reloads_total counter\n"), std::string::npos) << s;
  EXPECT_NE(s.find("vswitch_reloads_total{outcome=\"applied\"} 2\nvswitch_reloads_total{outcome=\"refused\"} 1\n"),
            std::string::npos)
      << s;
}

TEST(Metrics, ProcessCpuSecondsReadsThisProcess) {
  const auto s = process_cpu_seconds(static_cast<std::uint64_t>(::getpid()));
  ASSERT_TRUE(s.has_value());
  EXPECT_GE(*s, 0.0);
  EXPECT_FALSE(process_cpu_seconds(0).has_value());
}

// ---- the server ----

std::string body_of(const std::string& r) { return r.substr(r.find("\r\n\r\n") + 4); }

TEST(MetricsServer, AnswersAScraperAndNothingElse) {
  auto render = [] { return std::string("x_total 1\n"); };
  const std::string ok = MetricsServer::respond("GET /metrics HTTP/1.1\r\nHost: h\r\n", render);
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(ok.find("Content-Length: 10\r\n"), std::string::npos) << ok;
  EXPECT_EQ(body_of(ok), "x_total 1\n");
  EXPECT_EQ(MetricsServer::respond("GET /metrics?x=1 HTTP/1.0\r\n", render).rfind("HTTP/1.1 200", 0), 0u);
  const std::string head = MetricsServer::respond("HEAD /metrics HTTP/1.1\r\n", render);
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(body_of(head), "") << "HEAD has no body";
  EXPECT_EQ(MetricsServer::respond("GET / HTTP/1.1\r\n", render).rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(MetricsServer::respond("POST /metrics HTTP/1.1\r\n", render).rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(MetricsServer::respond("GET /metrics\r\n", render).rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(MetricsServer::respond("hello", render).rfind("HTTP/1.1 400", 0), 0u);
}

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Runs the server's poll round once (as vswitchd's loop does), waiting at most 100 ms.
void serve_once(MetricsServer& s, std::uint64_t now_ms) {
  std::vector<pollfd> fds;
  s.add_pollfds(fds, now_ms);
  ::poll(fds.data(), fds.size(), 100);
  s.handle(fds, now_ms, [] { return std::string("x_total 1\n"); });
}

MetricsServer loopback_server() {
  MetricsConfig c;
  c.listen = "127.0.0.1:0";
  c.address = "127.0.0.1";
  c.port = 0;  // any free port (the topology never says 0; tests may)
  auto s = MetricsServer::listen(c);
  if (!s) ADD_FAILURE() << s.error();
  return std::move(s.value());
}

// Sends `request` on a new connection and serves until the server has said all (or 50
// rounds passed); returns what came back.
std::string exchange(MetricsServer& s, std::uint64_t now_ms, const std::string& request) {
  const int c = connect_to(s.port());
  if (c < 0) return "";
  if (::send(c, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(c);
    return "";
  }
  std::string got;
  for (int round = 0; round < 50; ++round) {
    serve_once(s, now_ms);
    char buf[4096];
    pollfd p{c, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) continue;
    const ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n <= 0) break;  // the server said all and shut its side
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(c);
  serve_once(s, now_ms);  // the server sees the close
  return got;
}

// Asks for /metrics, after `extra` bytes of a request body nobody asked for.
std::string scrape(MetricsServer& s, std::uint64_t now_ms, std::size_t extra = 0) {
  return exchange(s, now_ms, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(extra, 'z'));
}

TEST(MetricsServer, ServesOverASocketAndClosesSlowAndSurplusClients) {
  MetricsServer s = loopback_server();
  ASSERT_NE(s.port(), 0);
  // A scraper: request, answer, end of stream.
  const std::string got = exchange(s, 1000, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  EXPECT_EQ(body_of(got), "x_total 1\n");
  EXPECT_EQ(s.scrapes(), 1u);

  // Clients that send nothing: eight hold the slots; a ninth takes the oldest one's slot
  // (that one is closed); past the request deadline all are closed.
  std::vector<int> idle;
  for (std::size_t i = 0; i < MetricsServer::kMaxConnections + 1; ++i) {
    idle.push_back(connect_to(s.port()));
    serve_once(s, 2000 + i);  // accepted one by one: their ages differ
  }
  auto closed_by_server = [](int fd) {
    pollfd p{fd, POLLIN, 0};
    char b;
    return ::poll(&p, 1, 100) > 0 && ::recv(fd, &b, 1, MSG_DONTWAIT) == 0;
  };
  EXPECT_EQ(s.connections(), MetricsServer::kMaxConnections);
  EXPECT_TRUE(closed_by_server(idle[0])) << "the oldest silent client gives its slot to the newcomer";
  EXPECT_EQ(s.closed(MetricsServer::Closed::kEvicted), 1u);
  for (std::size_t i = 1; i < idle.size(); ++i) EXPECT_FALSE(closed_by_server(idle[i])) << i;
  serve_once(s, 2000 + idle.size() + MetricsServer::kRequestMs);
  std::size_t closed = 0;
  for (int fd : idle) closed += closed_by_server(fd) ? 1U : 0U;
  EXPECT_EQ(closed, idle.size()) << "a client that never sends its head is closed at its deadline";
  EXPECT_EQ(s.closed(MetricsServer::Closed::kRequestTimeout), MetricsServer::kMaxConnections);
  EXPECT_EQ(s.closed(MetricsServer::Closed::kAnswerTimeout), 0u) << "the scraper took its answer in time";
  for (int fd : idle) ::close(fd);
  EXPECT_EQ(s.connections(), 0u);
  EXPECT_EQ(s.timeout_ms(0), -1) << "no connection left to time";
}

TEST(MetricsServer, ScrapersGetInPastSilentClientsAndRenderingIsRateLimited) {
  MetricsServer s = loopback_server();
  std::vector<int> idle;
  for (std::size_t i = 0; i < MetricsServer::kMaxConnections; ++i) {
    idle.push_back(connect_to(s.port()));
    serve_once(s, 1000);
  }
  ASSERT_EQ(s.connections(), MetricsServer::kMaxConnections);
  // Every slot held by a silent client: a scraper still gets its answer.
  EXPECT_EQ(body_of(scrape(s, 1000)), "x_total 1\n");
  // Bytes beyond the head (a body nobody asked for) do not cut the answer short.
  EXPECT_EQ(body_of(scrape(s, 1000, 6000)), "x_total 1\n");
  EXPECT_EQ(s.scrapes(), 2u);
  EXPECT_EQ(s.renders(), 1u) << "two scrapes within kRenderMs share one rendering";
  EXPECT_EQ(body_of(scrape(s, 1000 + MetricsServer::kRenderMs)), "x_total 1\n");
  EXPECT_EQ(s.renders(), 2u);
  for (int fd : idle) ::close(fd);
}

TEST(MetricsServer, AFloodOfConnectionsIsTakenAFewAtATime) {
  MetricsServer s = loopback_server();
  std::vector<int> flood;
  for (int i = 0; i < 40; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(s.port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);  // EINPROGRESS or done: either way queued
    flood.push_back(fd);
  }
  // One pass takes at most kAcceptsPerPass of them and keeps at most kMaxConnections:
  // the daemon's loop gets back to its signals and watchdog whatever is queued.
  serve_once(s, 1000);
  EXPECT_LE(s.connections(), MetricsServer::kMaxConnections);
  std::size_t closed = 0;  // by the server in that pass: accepted, then evicted
  for (int fd : flood) {
    pollfd p{fd, POLLIN, 0};
    char b;
    if (::poll(&p, 1, 10) > 0 && ::recv(fd, &b, 1, MSG_DONTWAIT) == 0) ++closed;
  }
  EXPECT_LE(closed, MetricsServer::kAcceptsPerPass - MetricsServer::kMaxConnections)
      << "one pass accepted more than kAcceptsPerPass connections";
  for (int round = 0; round < 10; ++round) serve_once(s, 1000);
  EXPECT_LE(s.connections(), MetricsServer::kMaxConnections);
  for (int fd : flood) ::close(fd);
  EXPECT_EQ(body_of(scrape(s, 1000)), "x_total 1\n") << "served again once the flood is gone";
}

TEST(MetricsServer, ARequestHeadTooBigIsRefused) {
  MetricsServer s = loopback_server();
  const std::string got = exchange(s, 1000, std::string(MetricsServer::kMaxRequestBytes + 100, 'a'));
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  EXPECT_EQ(s.scrapes(), 0u);
  EXPECT_EQ(s.closed(MetricsServer::Closed::kBadRequest), 1u);
  EXPECT_EQ(MetricsServer::to_string(MetricsServer::Closed::kBadRequest), "bad_request");
}

}  // namespace
}  // namespace vswitch
