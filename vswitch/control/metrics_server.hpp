// MetricsServer: vswitchd's /metrics endpoint for Prometheus ([metrics] listen in the
// topology). It lives in the daemon's own poll loop, off the data path: the endpoints
// never see it, and a scrape costs the daemon one read of the stats region.
//
// Whoever can connect is untrusted: every socket is non-blocking, a connection has 2 s
// to send its request head (8 KiB at most) and to take the answer, at most 8 are open
// at once (a ninth is closed at accept), and nothing a client sends is kept beyond its
// own connection. HTTP/1.1 just enough for a scraper: GET or HEAD of /metrics (a query
// string is ignored) answers 200 with the text exposition and Connection: close; any
// other target is 404, any other method 405, a head that does not parse or does not fit
// 400.
#pragma once

#include <poll.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"
#include "vswitch/config/topology.hpp"

namespace vswitch {

class MetricsServer {
 public:
  static constexpr std::size_t kMaxConnections = 8;
  static constexpr std::size_t kMaxRequestBytes = 8192;
  static constexpr std::uint64_t kConnectionMs = 2000;

  // Binds and listens on the topology's address; the error names it and says why.
  [[nodiscard]] static sys::Result<MetricsServer, std::string> listen(const MetricsConfig& config);

  // Appends the descriptors to poll (the listener, then each connection).
  void add_pollfds(std::vector<pollfd>& fds) const;
  // Milliseconds until the earliest connection deadline (-1: none).
  [[nodiscard]] int timeout_ms(std::uint64_t now_ms) const;
  // After poll(): `fds` are the entries add_pollfds() appended, in order. `render` makes
  // the body of a /metrics answer (called once per scrape).
  void handle(std::span<const pollfd> fds, std::uint64_t now_ms, const std::function<std::string()>& render);

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }  // the bound port
  [[nodiscard]] std::uint64_t scrapes() const noexcept { return scrapes_; }

  // The answer to one request head (exposed for tests): status line, headers, body.
  [[nodiscard]] static std::string respond(std::string_view head, const std::function<std::string()>& render,
                                           bool* scraped = nullptr);

 private:
  struct Connection {
    sys::Fd fd;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    std::uint64_t deadline_ms = 0;
    bool answering = false;
  };
  MetricsServer(sys::Fd listener, std::uint16_t port) : listener_(std::move(listener)), port_(port) {}
  void accept_all(std::uint64_t now_ms);
  // false: the connection is finished (answered, closed by the peer, or failed).
  bool read_request(Connection& c, const std::function<std::string()>& render);
  bool write_answer(Connection& c);

  sys::Fd listener_;
  std::uint16_t port_ = 0;
  std::vector<Connection> connections_;
  std::uint64_t scrapes_ = 0;
};

}  // namespace vswitch
