// Transport addresses. See address.h.

#include "tractor/kj-runtime/net/address.h"

#include <errno.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

namespace tractor {

Address Address::parse(kj::StringPtr text) {
  Address address;
  if (text.startsWith("unix:")) {
    address.transport = Transport::UDS;
    address.path = kj::str(text.slice(5));
    // KJ_FAIL_REQUIRE: a user reads these (a bad bind or registry address), without the condition.
    if (!address.path.startsWith("/")) {
      KJ_FAIL_REQUIRE("a unix address needs an absolute path (unix:/dir/name.sock)", text);
    }
    if (address.path.size() >= sizeof(sockaddr_un::sun_path)) {
      KJ_FAIL_REQUIRE("a unix socket path must be shorter than 108 bytes", text);
    }
    return address;
  }
  if (text.startsWith("tcp:")) {
    address.transport = Transport::TCP;
    auto rest = text.slice(4);
    KJ_IF_MAYBE(colon, rest.findLast(':')) {
      address.host = kj::str(rest.slice(0, *colon));
      auto portText = kj::str(rest.slice(*colon + 1));
      char* end = nullptr;
      errno = 0;
      unsigned long port = strtoul(portText.cStr(), &end, 10);
      if (portText.size() == 0 || *end != '\0' || errno != 0 || port > 65535) {
        KJ_FAIL_REQUIRE("a tcp address needs a port from 0 to 65535 (tcp:host:port)", text);
      }
      if (address.host.size() == 0) {
        KJ_FAIL_REQUIRE("a tcp address needs a host (tcp:host:port)", text);
      }
      address.port = static_cast<uint16_t>(port);
      return address;
    }
    KJ_FAIL_REQUIRE("a tcp address needs a port (tcp:host:port)", text);
  }
  KJ_FAIL_REQUIRE("not an actor address: expected unix:/path or tcp:host:port", text);
}

kj::String Address::toString() const {
  switch (transport) {
    case Transport::UDS:
      return kj::str("unix:", path);
    case Transport::TCP:
      return kj::str("tcp:", host, ':', port);
  }
  KJ_UNREACHABLE;
}

kj::String Address::kjAddress() const {
  switch (transport) {
    case Transport::UDS:
      return kj::str("unix:", path);
    case Transport::TCP:
      return kj::str(host, ':', port);
  }
  KJ_UNREACHABLE;
}

Address Address::clone() const {
  Address copy;
  copy.transport = transport;
  copy.path = kj::str(path);
  copy.host = kj::str(host);
  copy.port = port;
  return copy;
}

bool Address::operator==(const Address& other) const {
  return transport == other.transport && path == other.path && host == other.host &&
         port == other.port;
}

kj::String KJ_STRINGIFY(const Address& address) { return address.toString(); }

kj::String runtimeDir() {
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  auto dir = (xdg != nullptr && xdg[0] != '\0') ? kj::str(xdg, "/tractor")
                                                : kj::str("/tmp/tractor-", getuid());
  if (mkdir(dir.cStr(), 0700) < 0 && errno != EEXIST) {
    int error = errno;
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("cannot make the actors' socket directory ", dir,
                " (set XDG_RUNTIME_DIR to a directory of yours): ", strerror(error))));
  }
  struct stat info;
  KJ_SYSCALL(lstat(dir.cStr(), &info), dir);
  KJ_REQUIRE(S_ISDIR(info.st_mode) && info.st_uid == getuid(),
             "the actor socket directory belongs to someone else", dir);
  KJ_REQUIRE((info.st_mode & 0077) == 0,
             "the actor socket directory must not be accessible to others (mode 0700)", dir);
  return dir;
}

UnixSocketState probeUnixSocket(kj::StringPtr path) {
  struct stat info;
  if (lstat(path.cStr(), &info) < 0) return UnixSocketState::ABSENT;
  if (!S_ISSOCK(info.st_mode)) return UnixSocketState::NOT_A_SOCKET;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_REQUIRE(fd >= 0, "socket() failed", strerror(errno));
  KJ_DEFER(close(fd));
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.cStr(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0) {
    return UnixSocketState::LISTENING;
  }
  return errno == ECONNREFUSED ? UnixSocketState::STALE : UnixSocketState::ABSENT;
}

void removeStaleSockets(kj::Duration minAge) {
  auto dir = runtimeDir();
  DIR* handle = opendir(dir.cStr());
  if (handle == nullptr) return;
  KJ_DEFER(closedir(handle));
  auto now = time(nullptr);
  while (auto entry = readdir(handle)) {
    kj::StringPtr name = entry->d_name;
    if (!name.endsWith(".sock")) continue;
    auto path = kj::str(dir, '/', name);
    struct stat info;
    if (lstat(path.cStr(), &info) < 0) continue;
    if ((now - info.st_mtime) * kj::SECONDS < minAge) continue;
    if (probeUnixSocket(path) == UnixSocketState::STALE) unlink(path.cStr());
  }
}

Address defaultAddress(Transport transport, const ActorId& id) {
  Address address;
  address.transport = transport;
  if (transport == Transport::UDS) {
    // The uuid keeps names unique; its first 8 characters keep the path short.
    auto uuid = id.uuid.slice(0, kj::min(id.uuid.size(), size_t(8)));
    auto name = id.name.slice(0, kj::min(id.name.size(), size_t(40)));
    address.path = kj::str(runtimeDir(), '/', name, '-', uuid, ".sock");
  } else {
    address.host = kj::str("127.0.0.1");
  }
  return address;
}

}  // namespace tractor
