// MetricsServer: vswitchd's /metrics endpoint for Prometheus ([metrics] listen in the
// topology). It lives in the daemon's own poll loop, off the data path: the endpoints
// never see it, and a scrape costs the daemon one read of the stats region.
//
// Whoever can connect is untrusted, and nothing a client does may hold up the daemon's
// loop (its signals, watchdog and restarts) or keep a scraper out for long:
//   - every socket is non-blocking; one pass accepts at most kAcceptsPerPass connections;
//   - at most kMaxConnections are open; when all are taken, a new client takes the slot
//     of the oldest one that has not finished its request head;
//   - a client has kRequestMs to send its head (kMaxRequestBytes at most) and
//     kConnectionMs in all to take the answer;
//   - the text is rendered at most once per kRenderMs, whoever asks and how often (every
//     answer within that time carries the same text);
//   - after the answer the socket is shut for writing and drained until the client
//     closes (or the deadline), so unread bytes cannot turn the close into a reset that
//     cuts the answer short;
//   - an accept that fails for want of descriptors or memory rests the listener for
//     kAcceptRestMs instead of spinning on it.
// Every connection the server ends early is counted by why (closed()): exported as
// vswitch_metrics_connections_closed_total{reason}, so a refusal is never unseen.
// HTTP/1.1 just enough for a scraper: GET or HEAD of /metrics (a query string is ignored)
// answers 200 with the text exposition and Connection: close; any other target is 404,
// any other method 405, a head that does not parse or does not fit 400.
#pragma once

#include <poll.h>

#include <array>
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
  static constexpr std::size_t kAcceptsPerPass = 16;
  static constexpr std::size_t kMaxRequestBytes = 8192;
  static constexpr std::uint64_t kRequestMs = 500;
  static constexpr std::uint64_t kConnectionMs = 2000;
  static constexpr std::uint64_t kRenderMs = 200;
  static constexpr std::uint64_t kAcceptRestMs = 100;

  // Why a connection was ended before a normal close (or refused at accept).
  enum class Closed : std::uint8_t {
    kEvicted,         // a newcomer took its slot while it still sent its request head
    kFull,            // every slot was answering: the newcomer was closed at once
    kRequestTimeout,  // no whole request head within kRequestMs
    kAnswerTimeout,   // did not take its answer within kConnectionMs
    kBadRequest,      // a head that did not parse or did not fit (400)
    kSocketError,     // the socket reported an error
    kAcceptFailed,    // accept() failed for want of descriptors or memory
    kCount,
  };
  [[nodiscard]] static std::string_view to_string(Closed c) noexcept;

  // Binds and listens on the topology's address; the error names it and says why.
  [[nodiscard]] static sys::Result<MetricsServer, std::string> listen(const MetricsConfig& config);

  // Appends the descriptors to poll (the listener, then each connection).
  void add_pollfds(std::vector<pollfd>& fds, std::uint64_t now_ms) const;
  // Milliseconds until the earliest connection deadline or the end of the listener's
  // rest (-1: none).
  [[nodiscard]] int timeout_ms(std::uint64_t now_ms) const;
  // After poll(): `fds` are the entries add_pollfds() appended, in order. `render` makes
  // the body of a /metrics answer (called once per scrape).
  void handle(std::span<const pollfd> fds, std::uint64_t now_ms, const std::function<std::string()>& render);

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }  // the bound port
  [[nodiscard]] std::uint64_t scrapes() const noexcept { return scrapes_; }
  [[nodiscard]] std::uint64_t renders() const noexcept { return renders_; }
  [[nodiscard]] std::size_t connections() const noexcept { return connections_.size(); }
  [[nodiscard]] std::uint64_t closed(Closed c) const noexcept { return closed_[static_cast<std::size_t>(c)]; }

  // The answer to one request head (exposed for tests): status line, headers, body.
  [[nodiscard]] static std::string respond(std::string_view head, const std::function<std::string()>& render,
                                           bool* scraped = nullptr);

 private:
  enum class Phase : std::uint8_t { kReading, kAnswering, kDraining };
  struct Connection {
    sys::Fd fd;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    std::uint64_t accepted_ms = 0;
    Phase phase = Phase::kReading;
  };
  MetricsServer(sys::Fd listener, std::uint16_t port) : listener_(std::move(listener)), port_(port) {}
  void accept_some(std::uint64_t now_ms);
  // false: the connection is finished (answered, closed by the peer, or failed).
  bool read_request(Connection& c, std::uint64_t now_ms, const std::function<std::string()>& render);
  bool write_answer(Connection& c);
  bool drain(Connection& c);
  [[nodiscard]] std::uint64_t deadline_ms(const Connection& c) const noexcept;
  // The text, rendered afresh only when the last rendering is kRenderMs old.
  const std::string& text(std::uint64_t now_ms, const std::function<std::string()>& render);

  sys::Fd listener_;
  std::uint16_t port_ = 0;
  std::vector<Connection> connections_;
  std::uint64_t scrapes_ = 0;
  std::uint64_t renders_ = 0;
  std::string text_;
  std::uint64_t rendered_ms_ = 0;
  bool rendered_ = false;
  std::uint64_t listener_rests_until_ms_ = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(Closed::kCount)> closed_{};
  void count(Closed c) noexcept { ++closed_[static_cast<std::size_t>(c)]; }
};

}  // namespace vswitch
