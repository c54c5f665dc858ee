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

void MetricsServer::add_pollfds(std::vector<pollfd>& fds) const {
  fds.push_back({listener_.get(), POLLIN, 0});
  for (const Connection& c : connections_)
    fds.push_back({c.fd.get(), static_cast<short>(c.answering ? POLLOUT : POLLIN), 0});
}

int MetricsServer::timeout_ms(std::uint64_t now_ms) const {
  int t = -1;
  for (const Connection& c : connections_) {
    const int left = c.deadline_ms > now_ms ? static_cast<int>(c.deadline_ms - now_ms) : 0;
    if (t < 0 || left < t) t = left;
  }
  return t;
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

void MetricsServer::accept_all(std::uint64_t now_ms) {
  for (;;) {
    sys::Fd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c.valid()) return;  // EAGAIN: no more; anything else (ECONNABORTED, EMFILE): next time
    if (connections_.size() >= kMaxConnections) continue;  // closed here: the slots are taken
    connections_.push_back(Connection{std::move(c), {}, {}, 0, now_ms + kConnectionMs, false});
  }
}

bool MetricsServer::read_request(Connection& c, const std::function<std::string()>& render) {
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
      c.out = respond(std::string_view(c.in).substr(0, end + 2), render, &scraped);
    if (scraped) ++scrapes_;
    c.in.clear();
    c.answering = true;
    return write_answer(c);
  }
}

bool MetricsServer::write_answer(Connection& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c.sent += static_cast<std::size_t>(n);
  }
  ::shutdown(c.fd.get(), SHUT_WR);  // all said; the client closes its end
  return false;
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
      continue;
    }
    keep[k] = c.answering ? write_answer(c) : read_request(c, render);
  }
  for (std::size_t k = 0; k < connections_.size(); ++k)
    if (connections_[k].deadline_ms <= now_ms) keep[k] = false;  // too slow: the slot goes to the next
  std::size_t w = 0;
  for (std::size_t k = 0; k < connections_.size(); ++k)
    if (keep[k]) {
      if (w != k) connections_[w] = std::move(connections_[k]);
      ++w;
    }
  connections_.resize(w);
  if (!fds.empty() && (fds[0].revents & POLLIN) != 0) accept_all(now_ms);
}

}  // namespace vswitch
