// Connections between actors through a listening address: the handshake, the listener, probes.
//
// Parent and child share a socketpair from birth; every other pair of actors meets through the
// address one of them listens on (address.h). The connecting side sends its `Hello` (identity,
// whether it is a probe), the listening side answers with its own, and both then run a two-party
// Cap'n Proto connection on which each offers its `Actor` capability. A listener drops, without
// disturbing anything else, a connection whose first message is not a valid Hello within
// HANDSHAKE_TIMEOUT, and, on Unix sockets, one whose Hello claims a pid other than the one the
// kernel reports (SO_PEERCRED).

#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/refcount.h>
#include "tractor/kj-runtime/net/address.h"
#include "tractor/kj-runtime/net/limits-internal.h"
#include "tractor/kj-runtime/async/log.h"
#include "tractor/kj-runtime/actor/portal.h"

namespace tractor {

constexpr kj::Duration HANDSHAKE_TIMEOUT = 10 * kj::SECONDS;
// How long a listener waits for a connecting peer's Hello.
constexpr kj::Duration CONNECT_TIMEOUT = 3 * kj::SECONDS;
// How long connecting to a peer (and its answer to our Hello) may take.
constexpr kj::Duration PROBE_TIMEOUT = 1 * kj::SECONDS;
// A registrar election probe's limit.
constexpr int TCP_KEEPALIVE_IDLE_SECONDS = 2;
constexpr int TCP_KEEPALIVE_INTERVAL_SECONDS = 1;
constexpr int TCP_KEEPALIVE_PROBES = 3;
constexpr unsigned int TCP_USER_TIMEOUT_MS = 5000;
// A TCP peer that stops answering is noticed within about 5 seconds, idle (keepalive: 2 s, then
// 3 probes a second apart) or with data in flight (TCP_USER_TIMEOUT).

class PeerConnection final: public kj::Refcounted {
  // One handshaken connection with another actor. Portals made from it hold it alive; the
  // actor's peer table holds it until it disconnects or the actor ends.
public:
  PeerConnection(ActorEnv& actor, kj::Own<kj::AsyncIoStream> stream, ActorId peer,
                 bool peerIsRegistrar, bool accepted);
  // For `actor`, which it serves to the peer.
  ~PeerConnection() noexcept(false);
  KJ_DISALLOW_COPY(PeerConnection);

  const ActorId& peer() const { return peerId; }
  bool peerIsRegistrar() const { return registrar; }

  Portal portal();
  // A portal to the peer; it keeps this connection alive.

  kj::Promise<void> onDisconnect();
  // Resolves once the connection has ended; logs why when it broke (see RpcConnection).

private:
  ActorEnv& actor;
  ActorId peerId;
  bool registrar;
  kj::Own<kj::AsyncIoStream> stream;
  RpcConnection rpc;
  schema::Actor::Client peerActor;
  // The peer's bootstrap capability, asked for once: every portal shares it.
};

kj::Promise<kj::Own<PeerConnection>> connectPeer(ActorEnv& actor, const Address& address);
// Connects `actor` to the actor listening at `address` and shakes hands (bounded by CONNECT_TIMEOUT).
// Raises TransportClosed when nothing answers there or the answer is not a valid Hello.

enum class ProbeVerdict: uint8_t {
  ABSENT,
  // Nothing listens there (for a unix address: no file, or a stale one).
  REGISTRAR,
  // An actor that is a registrar answered.
  OCCUPIED,
  // Something answered that is not a registrar, or no valid Hello came back in time.
};

kj::Promise<ProbeVerdict> probe(ActorEnv& actor, const Address& address);
// A registrar election probe (never recorded as a peer by the listener).

class Listener {
  // An actor's listening socket and the connections it accepted. Destroying it closes them and
  // removes a unix socket file.
public:
  static kj::Own<Listener> listen(ActorEnv& actor, const Address& address);
  // Binds `address` (a stale unix socket file nobody answers at is replaced) and starts
  // accepting. `address()` is the bound address: for TCP port 0, the port the kernel chose.
  ~Listener() noexcept(false);

  const Address& address() const { return bound; }

  Listener(kj::Badge<Listener>, ActorEnv& actor, kj::Own<kj::ConnectionReceiver> receiver,
           Address bound);

private:
  ActorEnv& actor;
  kj::Own<kj::ConnectionReceiver> receiver;
  Address bound;
  TaskErrorLog logErrors{"dropped an incoming connection"};
  kj::TaskSet tasks;

  kj::Promise<void> acceptLoop();
  kj::Promise<void> welcome(kj::Own<kj::AsyncIoStream> stream);
};

}  // namespace tractor
