// Connection: one vhost-user control connection (a unix stream socket), read without ever
// blocking the endpoint: bytes and descriptors are gathered until a whole message is there
// (a front-end that sends half a message stalls only its own connection). At most
// kMaxFds descriptors may arrive with one message; a truncated control message (more than
// that) or a descriptor that is not a plain one is a protocol violation.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "endpoints/vhost_user/message.hpp"
#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::vhost_user {

// Who may connect to a listening socket: the file's owner, group and mode, applied after
// bind and before listen (nobody can connect in between).
struct SocketAccess {
  std::optional<std::uint32_t> owner;  // uid; none: the creating process's
  std::optional<std::uint32_t> group;  // gid; none: the creating process's
  std::uint32_t mode = 0600;
};

// A listening socket at `path` (a stale socket file is replaced) with `access`,
// non-blocking; an error when the mode or the owner cannot be set.
[[nodiscard]] sys::Result<sys::Fd, std::string> listen_unix(const std::string& path, const SocketAccess& access = {});

class Connection {
 public:
  explicit Connection(sys::Fd socket) : socket_(std::move(socket)) {}

  enum class Read : std::uint8_t { kMessage, kPending, kClosed, kError };
  struct ReadResult {
    Read status;
    std::optional<Message> message;  // kMessage
    std::string error;               // kError: what the front-end did wrong
  };
  // Reads what the socket has; returns a decoded message once one is complete.
  ReadResult read();
  enum class Sent : std::uint8_t { kDone, kPending, kError };
  // Sends a reply without ever blocking: what the socket does not take now is kept
  // (kPending) and goes out with flush() once it is writable. The caller reads no further
  // message while a reply waits, so at most one is kept: a front-end that does not read
  // its replies stalls only itself.
  [[nodiscard]] Sent send(std::span<const std::byte> bytes);
  [[nodiscard]] Sent flush();
  [[nodiscard]] bool sending() const noexcept { return !out_.empty(); }

  [[nodiscard]] int fd() const noexcept { return socket_.get(); }

 private:
  sys::Fd socket_;
  std::vector<std::byte> buffer_;  // header then payload of the message being gathered
  std::vector<sys::Fd> fds_;       // descriptors received with it
  std::vector<std::byte> out_;     // the part of a reply the socket has not taken yet
};

}  // namespace vswitch::endpoints::vhost_user
