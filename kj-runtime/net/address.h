// Transport addresses: where an actor listens, printable and parseable.
//
//     unix:/run/user/1000/tractor/worker-5c0e1f2a.sock     a Unix domain socket (the default)
//     tcp:127.0.0.1:40123                                  TCP (IPv4 host or name, and port)
//     tcp:0.0.0.0:0                                        bind anywhere, on a random port
//
// Every actor listens on exactly one address. Unix sockets live in a per-user runtime directory
// (`runtimeDir()`, mode 0700) and are removed when their actor ends (or, after a hard kill, by
// its parent).

#pragma once

#include <kj/string.h>
#include <kj/time.h>
#include "tractor/kj-runtime/wire/identity.h"

namespace tractor {

enum class Transport: uint8_t {
  UDS,
  // Unix domain sockets: a file per actor in `runtimeDir()`; peers are identified by
  // SO_PEERCRED as well as by their handshake.
  TCP,
  // TCP: a random port on 127.0.0.1 by default, or any bind address given.
};

struct Address {
  // One parsed transport address.
  Transport transport = Transport::UDS;
  kj::String path;
  // UDS: the socket file's absolute path.
  kj::String host;
  uint16_t port = 0;
  // TCP: the host (name or IPv4 address) and port (0 when binding: any free port).

  static Address parse(kj::StringPtr text);
  // Parses "unix:/abs/path" or "tcp:host:port"; raises a clear error (KJ_REQUIRE) for anything
  // else (a relative path, a missing or out-of-range port, an unknown scheme).

  kj::String toString() const;
  // The form `parse()` reads back.

  kj::String kjAddress() const;
  // The form kj::Network::parseAddress() takes ("unix:/path", "host:port").

  Address clone() const;
  bool operator==(const Address& other) const;
};

kj::String KJ_STRINGIFY(const Address& address);

kj::String runtimeDir();
// The directory for this user's actor sockets: $XDG_RUNTIME_DIR/tractor, else /tmp/tractor-<uid>.
// Created with mode 0700 on first use; refuses (KJ_REQUIRE) a directory of another owner or one
// others can enter.

enum class UnixSocketState: uint8_t {
  ABSENT,
  // No socket file there.
  STALE,
  // A socket file nobody listens at (its actor died without removing it).
  LISTENING,
  NOT_A_SOCKET,
  // Something else (a file, a directory): never touched.
};

UnixSocketState probeUnixSocket(kj::StringPtr path);
// A blocking connect (which on a local socket answers at once) to see what is at `path`.

void removeStaleSockets(kj::Duration minAge);
// Removes the socket files in `runtimeDir()` at least `minAge` old that nothing listens at any
// more: left behind by actors that were killed with their whole tree (a SIGKILLed root). Every
// root sweeps at start with a minute's margin; after killing a tree, its parent may sweep with
// none.

Address defaultAddress(Transport transport, const ActorId& id);
// Where an actor listens when nothing else was asked: a fresh socket file in `runtimeDir()`
// named after the actor, or 127.0.0.1 on a random port.

}  // namespace tractor
