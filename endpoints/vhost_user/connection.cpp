#include "endpoints/vhost_user/connection.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vswitch::endpoints::vhost_user {

sys::Result<sys::Fd, std::string> listen_unix(const std::string& path, const SocketAccess& access) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return sys::Unexpected("vhost-user socket path \"" + path + "\" is empty or too long");
  sys::Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return sys::Unexpected(std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return sys::Unexpected(path + " exists and is not a socket: not removing it");
    ::unlink(path.c_str());  // a stale socket of an earlier run
  }
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return sys::Unexpected("bind " + path + ": " + std::strerror(errno));
  // From here on the file is the one bind() made: a step that fails removes it again.
  const auto failed = [&](const char* what) {
    const std::string why = std::string(what) + " " + path + ": " + std::strerror(errno);
    ::unlink(path.c_str());
    return sys::Unexpected(why);
  };
  if (::chmod(path.c_str(), static_cast<mode_t>(access.mode)) != 0) return failed("chmod");
  if ((access.owner || access.group) &&
      ::chown(path.c_str(), access.owner ? static_cast<uid_t>(*access.owner) : static_cast<uid_t>(-1),
              access.group ? static_cast<gid_t>(*access.group) : static_cast<gid_t>(-1)) != 0)
    return failed("chown");
  if (::listen(s.get(), 1) != 0) return failed("listen");
  return s;
}

Connection::ReadResult Connection::read() {
  for (;;) {
    const std::size_t want = buffer_.size() < kHeaderBytes
                                 ? kHeaderBytes - buffer_.size()
                                 : [&] {
                                     Header h;
                                     std::memcpy(&h, buffer_.data(), sizeof h);
                                     return kHeaderBytes + h.size - buffer_.size();
                                   }();
    if (want == 0) {
      Header h;
      std::memcpy(&h, buffer_.data(), sizeof h);
      auto m = decode(h, std::span<const std::byte>(buffer_).subspan(kHeaderBytes), std::move(fds_));
      buffer_.clear();
      fds_.clear();
      if (!m) {
        return {Read::kError, std::nullopt,
                std::string("request ") + std::to_string(h.request) + ": " + std::string(to_string(m.error()))};
      }
      return {Read::kMessage, std::move(m.value()), {}};
    }
    const std::size_t at = buffer_.size();
    buffer_.resize(at + want);
    iovec iov{buffer_.data() + at, want};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      buffer_.resize(at);
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return {Read::kPending, std::nullopt, {}};
      return {Read::kError, std::nullopt, std::string("recvmsg: ") + std::strerror(errno)};
    }
    buffer_.resize(at + static_cast<std::size_t>(n));
    // Take ownership of every descriptor first, so any error below closes them.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int f;
        std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
        fds_.emplace_back(f);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) return {Read::kError, std::nullopt, "more than 8 descriptors with one message"};
    if (fds_.size() > kMaxFds) return {Read::kError, std::nullopt, "more than 8 descriptors with one message"};
    if (n == 0) return {Read::kClosed, std::nullopt, {}};
    if (buffer_.size() == kHeaderBytes) {
      Header h;
      std::memcpy(&h, buffer_.data(), sizeof h);
      if (h.size > kMaxPayloadBytes)
        return {Read::kError, std::nullopt, "payload of " + std::to_string(h.size) + " bytes announced"};
    }
  }
}

Connection::Sent Connection::send(std::span<const std::byte> bytes) {
  out_.insert(out_.end(), bytes.begin(), bytes.end());
  return flush();
}

Connection::Sent Connection::flush() {
  while (!out_.empty()) {
    const ssize_t n = ::send(fd(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return Sent::kPending;  // the front-end is not reading its replies
      return Sent::kError;
    }
    out_.erase(out_.begin(), out_.begin() + n);
  }
  return Sent::kDone;
}

}  // namespace vswitch::endpoints::vhost_user
