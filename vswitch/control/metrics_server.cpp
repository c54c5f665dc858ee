#include "vswitch/control/metrics_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shm/sys/error.hpp"

namespace vswitch {

sys::Result<MetricsServer, std::string> MetricsServer::listen(const MetricsConfig& config) {
  const bool v6 = config.address.find(':') != std::string::npos;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(config.port);
    if (::inet_pton(AF_INET6, config.address.c_str(), &a->sin6_addr) != 1)
      return sys::Unexpected("metrics.listen: \"" + config.listen + "\": not an IPv6 address");
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(config.port);
    if (::inet_pton(AF_INET, config.address.c_str(), &a->sin_addr) != 1)
      return sys::Unexpected("metrics.listen: \"" + config.listen + "\": not an IPv4 address");
    len = sizeof(sockaddr_in);
  }
  sys::Fd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  auto fail = [&](const char* what) {
    return sys::Unexpected("metrics.listen: \"" + config.listen + "\": " + sys::SysError{what, errno}.message());
  };
  if (!fd.valid()) return fail("socket");
  const int one = 1;
  // A restarted vswitchd binds again at once, whatever its predecessor's connections
  // left in TIME_WAIT.
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return fail("setsockopt(SO_REUSEADDR)");
  if (v6 && ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
    return fail("setsockopt(IPV6_V6ONLY)");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind");
  if (::listen(fd.get(), 16) != 0) return fail("listen");
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen) != 0) return fail("getsockname");
  const std::uint16_t port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                      : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return MetricsServer(std::move(fd), port);
}

std::string_view MetricsServer::to_string(Closed c) noexcept {
  switch (c) {
    case Closed::kEvicted: return "evicted";
    case Closed::kFull: return "full";
    case Closed::kRequestTimeout: return "request_timeout";
    case Closed::kAnswerTimeout: return "answer_timeout";
    case Closed::kBadRequest: return "bad_request";
    case Closed::kSocketError: return "socket_error";
    case Closed::kAcceptFailed: return "accept_failed";
    case Closed::kCount: break;
  }
  return "unknown";
}

void MetricsServer::add_pollfds(std::vector<pollfd>& fds, std::uint64_t now_ms) const {
  // A resting listener stays in the set (so the indices hold) with no events asked.
  fds.push_back({listener_.get(), static_cast<short>(now_ms < listener_rests_until_ms_ ? 0 : POLLIN), 0});
  for (const Connection& c : connections_)
    fds.push_back({c.fd.get(), static_cast<short>(c.phase == Phase::kAnswering ? POLLOUT : POLLIN), 0});
}

std::uint64_t MetricsServer::deadline_ms(const Connection& c) const noexcept {
  return c.accepted_ms + (c.phase == Phase::kReading ? kRequestMs : kConnectionMs);
}

int MetricsServer::timeout_ms(std::uint64_t now_ms) const {
  int t = -1;
  auto due = [&](std::uint64_t at) {
    const int left = at > now_ms ? static_cast<int>(at - now_ms) : 0;
    if (t < 0 || left < t) t = left;
  };
  for (const Connection& c : connections_) due(deadline_ms(c));
  if (now_ms < listener_rests_until_ms_) due(listener_rests_until_ms_);
  return t;
}

const std::string& MetricsServer::text(std::uint64_t now_ms, const std::function<std::string()>& render) {
  if (!rendered_ || now_ms - rendered_ms_ >= kRenderMs) {
    text_ = render();
    rendered_ms_ = now_ms;
    rendered_ = true;
    ++renders_;
  }
  return text_;
}

std::string MetricsServer::respond(std::string_view head, const std::function<std::string()>& render, bool* scraped) {
  auto answer = [](std::string_view status, std::string_view type, const std::string& body, bool with_body) {
    std::string r = "HTTP/1.1 " + std::string(status) + "\r\nContent-Type: " + std::string(type) +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (with_body) r += body;
    return r;
  };
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  // "METHOD SP TARGET SP HTTP/1.x"
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (eol == std::string_view::npos || sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.substr(sp2 + 1).substr(0, 5) != "HTTP/")
    return answer("400 Bad Request", "text/plain", "bad request\n", true);
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (const std::size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  const bool head_only = method == "HEAD";
  if (method != "GET" && !head_only) return answer("405 Method Not Allowed", "text/plain", "GET /metrics\n", true);
  if (target != "/metrics") return answer("404 Not Found", "text/plain", "GET /metrics\n", !head_only);
  if (scraped != nullptr) *scraped = true;
  return answer("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(), !head_only);
}

void MetricsServer::accept_some(std::uint64_t now_ms) {
  for (std::size_t k = 0; k < kAcceptsPerPass; ++k) {
    sys::Fd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c.valid()) {
      // EMFILE, ENFILE, ENOBUFS, ENOMEM leave the listener readable: rest it rather than
      // spin on it. EAGAIN: nothing more waits; ECONNABORTED, EINTR: try the next pass.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        listener_rests_until_ms_ = now_ms + kAcceptRestMs;
        count(Closed::kAcceptFailed);
      }
      return;
    }
    if (connections_.size() >= kMaxConnections) {
      // Full: the oldest client still sending its head gives up its slot (a scraper sends
      // its head at once; a client that holds a slot silently is the one to go). With
      // every slot answering, the newcomer is closed.
      auto oldest = connections_.end();
      for (auto it = connections_.begin(); it != connections_.end(); ++it)
        if (it->phase == Phase::kReading && (oldest == connections_.end() || it->accepted_ms < oldest->accepted_ms))
          oldest = it;
      if (oldest == connections_.end()) {
        count(Closed::kFull);
        continue;
      }
      connections_.erase(oldest);
      count(Closed::kEvicted);
    }
    connections_.push_back(Connection{std::move(c), {}, {}, 0, now_ms, Phase::kReading});
  }
}

bool MetricsServer::read_request(Connection& c, std::uint64_t now_ms, const std::function<std::string()>& render) {
  char buf[2048];
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n == 0) return false;  // closed before a whole head
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c.in.append(buf, static_cast<std::size_t>(n));
    const std::size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos && c.in.size() <= kMaxRequestBytes) continue;
    bool scraped = false;
    if (end == std::string::npos)
      c.out = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
              "request head too big";
    else
      c.out = respond(std::string_view(c.in).substr(0, end + 2), [&] { return text(now_ms, render); }, &scraped);
    if (scraped) ++scrapes_;
    if (c.out.rfind("HTTP/1.1 400", 0) == 0) count(Closed::kBadRequest);
    c.in.clear();
    c.in.shrink_to_fit();
    c.phase = Phase::kAnswering;
    return write_answer(c);
  }
}

bool MetricsServer::write_answer(Connection& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c.sent += static_cast<std::size_t>(n);
  }
  // All said: shut our side and read until the client closes its own, so that bytes it
  // sent beyond the head cannot make the close a reset that loses the answer's end.
  ::shutdown(c.fd.get(), SHUT_WR);
  c.out.clear();
  c.out.shrink_to_fit();
  c.phase = Phase::kDraining;
  return drain(c);
}

bool MetricsServer::drain(Connection& c) {
  char buf[2048];
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n == 0) return false;  // the client closed: done
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }
}

void MetricsServer::handle(std::span<const pollfd> fds, std::uint64_t now_ms, const std::function<std::string()>& render) {
  // fds[0] is the listener, fds[1 + k] connection k as add_pollfds() left them.
  std::vector<bool> keep(connections_.size(), true);
  for (std::size_t k = 0; k < connections_.size() && k + 1 < fds.size(); ++k) {
    Connection& c = connections_[k];
    const short ev = fds[k + 1].revents;
    if (ev == 0) continue;
    if ((ev & (POLLERR | POLLNVAL)) != 0) {
      keep[k] = false;
      count(Closed::kSocketError);
      continue;
    }
    switch (c.phase) {
      case Phase::kReading: keep[k] = read_request(c, now_ms, render); break;
      case Phase::kAnswering: keep[k] = write_answer(c); break;
      case Phase::kDraining: keep[k] = drain(c); break;
    }
  }
  for (std::size_t k = 0; k < connections_.size(); ++k) {
    if (!keep[k] || deadline_ms(connections_[k]) > now_ms) continue;
    keep[k] = false;  // too slow: the slot goes to the next
    // A client still draining has its whole answer: closing it is no refusal.
    if (connections_[k].phase == Phase::kReading) count(Closed::kRequestTimeout);
    if (connections_[k].phase == Phase::kAnswering) count(Closed::kAnswerTimeout);
  }
  std::size_t w = 0;
  for (std::size_t k = 0; k < connections_.size(); ++k)
    if (keep[k]) {
      if (w != k) connections_[w] = std::move(connections_[k]);
      ++w;
    }
  connections_.resize(w);
  if (!fds.empty() && (fds[0].revents & POLLIN) != 0) accept_some(now_ms);
}

}  // namespace vswitch
