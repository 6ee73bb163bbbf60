// Connections between actors through a listening address. See connection.h.

#include "tractor/kj-runtime/actor/connection-internal.h"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <errno.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "tractor/kj-runtime/net/buffered-stream.h"

namespace tractor {

namespace {

struct Greeting {
  // A received Hello.
  ActorId id;
  bool isRegistrar;
  bool isProbe;
};

kj::Promise<void> sendHello(kj::AsyncIoStream& stream, const ActorEnv& actor, bool probe) {
  auto message = kj::heap<capnp::MallocMessageBuilder>(64);
  auto hello = message->initRoot<schema::Hello>();
  actor.id().copyTo(hello.initId());
  hello.setIsRegistrar(actor.isRegistrar());
  hello.setIsProbe(probe);
  auto written = capnp::writeMessage(stream, *message);
  return written.attach(kj::mv(message));
}

kj::Promise<Greeting> receiveHello(kj::AsyncIoStream& stream) {
  // A Hello is small: anything larger or deeper is refused before it is read in full.
  capnp::ReaderOptions limits;
  limits.traversalLimitInWords = 1024;
  limits.nestingLimit = 8;
  return capnp::readMessage(stream, limits).then([](kj::Own<capnp::MessageReader>&& message) {
    auto hello = message->getRoot<schema::Hello>();
    KJ_REQUIRE(hello.hasId() && hello.getId().getUuid().size() > 0,
               "the peer sent an invalid actor handshake");
    return Greeting{ActorId::fromReader(hello.getId()), hello.getIsRegistrar(),
                    hello.getIsProbe()};
  });
}

template <typename T>
kj::Promise<T> within(kj::Timer& timer, kj::Promise<T> promise, kj::Duration limit,
                      kj::String what) {
  auto late = timer.afterDelay(limit).then(
      [what = kj::mv(what), limit]() -> kj::Promise<T> {
        return typedError(TRANSPORT_CLOSED, kj::str(what, ": no answer within ", limit),
                          kj::Exception::Type::DISCONNECTED);
      });
  return promise.exclusiveJoin(kj::mv(late));
}

kj::Exception unreachable(const Address& address, const kj::Exception& e) {
  if (typedErrorName(e).orDefault(kj::str()) == TRANSPORT_CLOSED) return kj::cp(e);
  return typedError(TRANSPORT_CLOSED,
                    kj::str("cannot reach an actor at ", address, ": ", e.getDescription()),
                    kj::Exception::Type::DISCONNECTED);
}

kj::Promise<kj::Own<kj::AsyncIoStream>> openStream(ActorEnv& actor, const Address& address) {
  auto& network = actor.io().provider->getNetwork();
  return network.parseAddress(address.kjAddress())
      .then([](kj::Own<kj::NetworkAddress>&& target) {
        auto connected = target->connect();
        return connected.attach(kj::mv(target));
      });
}

kj::AutoCloseFd bindSocket(const Address& address, Address& bound) {
  bound = address.clone();
  if (address.transport == Transport::UDS) {
    switch (probeUnixSocket(address.path)) {
      case UnixSocketState::ABSENT:
        break;
      case UnixSocketState::STALE:
        unlink(address.path.cStr());  // its actor died without removing it
        break;
      case UnixSocketState::LISTENING:
        KJ_FAIL_REQUIRE("another process listens at this address", address);
      case UnixSocketState::NOT_A_SOCKET:
        KJ_FAIL_REQUIRE("something other than a socket is at this address", address);
    }
    int fd;
    KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    kj::AutoCloseFd owned(fd);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, address.path.cStr(), sizeof(addr.sun_path) - 1);
    KJ_SYSCALL(bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), address);
    KJ_SYSCALL(listen(fd, SOMAXCONN));
    return owned;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* found = nullptr;
  auto port = kj::str(address.port);
  int status = getaddrinfo(address.host.cStr(), port.cStr(), &hints, &found);
  KJ_REQUIRE(status == 0, "cannot resolve the address to listen on", address,
             gai_strerror(status));
  KJ_DEFER(freeaddrinfo(found));
  int fd;
  KJ_SYSCALL(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  kj::AutoCloseFd owned(fd);
  int one = 1;
  KJ_SYSCALL(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
  KJ_SYSCALL(bind(fd, found->ai_addr, found->ai_addrlen), address);
  KJ_SYSCALL(listen(fd, SOMAXCONN));
  struct sockaddr_in actual;
  socklen_t length = sizeof(actual);
  KJ_SYSCALL(getsockname(fd, reinterpret_cast<struct sockaddr*>(&actual), &length));
  bound.port = ntohs(actual.sin_port);
  return owned;
}

void tuneTcp(kj::AsyncIoStream& stream) {
  // On TCP, a peer that vanishes without a word (a cut link, a powered-off host) must still be
  // noticed in bounded time: keepalive probes when idle, and a limit on unacknowledged data.
  struct sockaddr_storage local;
  kj::uint length = sizeof(local);
  stream.getsockname(reinterpret_cast<struct sockaddr*>(&local), &length);
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) return;
  int one = 1;
  int idle = TCP_KEEPALIVE_IDLE_SECONDS;
  int interval = TCP_KEEPALIVE_INTERVAL_SECONDS;
  int count = TCP_KEEPALIVE_PROBES;
  unsigned int userTimeout = TCP_USER_TIMEOUT_MS;
  stream.setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  stream.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  stream.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  stream.setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT, &userTimeout, sizeof(userTimeout));
}

}  // namespace

// =======================================================================================

PeerConnection::PeerConnection(ActorEnv& actor, kj::Own<kj::AsyncIoStream> raw, ActorId peer,
                               bool peerIsRegistrar, bool accepted)
    : actor(actor), peerId(kj::mv(peer)), registrar(peerIsRegistrar),
      stream((tuneTcp(*raw), kj::heap<BufferedStream>(kj::mv(raw)))),
      rpc(*stream,
          accepted ? capnp::rpc::twoparty::Side::SERVER : capnp::rpc::twoparty::Side::CLIENT,
          capnp::Capability::Client(actor.serve(peerId.clone()))),
      peerActor(rpc.bootstrap().castAs<schema::Actor>()) {}

PeerConnection::~PeerConnection() noexcept(false) {}

kj::Promise<void> PeerConnection::onDisconnect() {
  return rpc.onDisconnect().then([this]() {
    KJ_IF_MAYBE(why, rpc.failure()) {
      TRACTOR_LOG(WARNING, "connection to ", peerId.toString(), " broke: ", why->getDescription());
    }
  });
}

Portal PeerConnection::portal() {
  return Portal(actor, peerActor, peerId.clone(), kj::addRef(*this));
}

kj::Promise<kj::Own<PeerConnection>> connectPeer(ActorEnv& actor, const Address& address) {
  auto handshaken = openStream(actor, address).then([&actor](kj::Own<kj::AsyncIoStream>&& stream) {
    auto& s = *stream;
    return kj::evalNow([&]() { return sendHello(s, actor, false); })
        .then([&s]() { return receiveHello(s); })
        .then([&actor, stream = kj::mv(stream)](Greeting&& greeting) mutable {
          TRACTOR_LOG(DEBUG, "connected to ", greeting.id);
          return kj::refcounted<PeerConnection>(actor, kj::mv(stream), kj::mv(greeting.id),
                                                greeting.isRegistrar, false);
        });
  });
  return within(actor.timer(), kj::mv(handshaken), CONNECT_TIMEOUT,
                kj::str("connecting to ", address))
      .catch_([address = address.clone()](
                  kj::Exception&& e) -> kj::Promise<kj::Own<PeerConnection>> {
        return unreachable(address, e);
      });
}

kj::Promise<ProbeVerdict> probe(ActorEnv& actor, const Address& address) {
  auto answered = openStream(actor, address).then(
      [&actor](kj::Own<kj::AsyncIoStream>&& stream) -> kj::Promise<ProbeVerdict> {
        auto& s = *stream;
        // evalNow: a write to a peer that already hung up can fail synchronously.
        auto verdict = kj::evalNow([&]() { return sendHello(s, actor, true); })
                           .then([&s]() { return receiveHello(s); })
                           .then([](Greeting&& greeting) {
                             return greeting.isRegistrar ? ProbeVerdict::REGISTRAR
                                                         : ProbeVerdict::OCCUPIED;
                           },
                                 [](kj::Exception&&) { return ProbeVerdict::OCCUPIED; });
        return verdict.attach(kj::mv(stream));
      },
      [](kj::Exception&&) { return ProbeVerdict::ABSENT; });
  auto late = actor.timer().afterDelay(PROBE_TIMEOUT).then([]() { return ProbeVerdict::OCCUPIED; });
  return answered.exclusiveJoin(kj::mv(late));
}

// =======================================================================================

kj::Own<Listener> Listener::listen(ActorEnv& actor, const Address& address) {
  Address bound;
  auto fd = bindSocket(address, bound);
  auto receiver = actor.io().lowLevelProvider->wrapListenSocketFd(
      fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                        kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                        kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
  TRACTOR_LOG(RUNTIME, "listening at ", bound);
  return kj::heap<Listener>(kj::Badge<Listener>(), actor, kj::mv(receiver), kj::mv(bound));
}

Listener::Listener(kj::Badge<Listener>, ActorEnv& actor,
                   kj::Own<kj::ConnectionReceiver> receiver, Address bound)
    : actor(actor), receiver(kj::mv(receiver)), bound(kj::mv(bound)), tasks(logErrors) {
  tasks.add(acceptLoop());
}

Listener::~Listener() noexcept(false) {
  if (bound.transport == Transport::UDS) unlink(bound.path.cStr());
}


kj::Promise<void> Listener::acceptLoop() {
  return receiver->accept().then([this](kj::Own<kj::AsyncIoStream>&& stream) {
    // Each connection shakes hands on its own: a silent one blocks nobody.
    tasks.add(welcome(kj::mv(stream)));
    return acceptLoop();
  });
}

kj::Promise<void> Listener::welcome(kj::Own<kj::AsyncIoStream> stream) {
  auto& s = *stream;
  auto transport = bound.transport;
  auto greeted =
      within(actor.timer(), receiveHello(s), HANDSHAKE_TIMEOUT, kj::str("an actor handshake"));
  return greeted.then([this, &s, transport,
                       stream = kj::mv(stream)](Greeting&& greeting) mutable -> kj::Promise<void> {
    if (greeting.isProbe) {
      // A registrar election probe: answer and hang up.
      return kj::evalNow([&]() { return sendHello(s, actor, false); }).attach(kj::mv(stream));
    }
    if (transport == Transport::UDS) {
      struct ucred credentials;
      kj::uint length = sizeof(credentials);
      s.getsockopt(SOL_SOCKET, SO_PEERCRED, &credentials, &length);
      KJ_REQUIRE(static_cast<uint32_t>(credentials.pid) == greeting.id.pid,
                 "a peer's handshake claims a pid the kernel does not confirm",
                 greeting.id.toString(), credentials.pid);
    }
    return kj::evalNow([&]() { return sendHello(s, actor, false); })
        .then([this, stream = kj::mv(stream), greeting = kj::mv(greeting)]() mutable {
          TRACTOR_LOG(DEBUG, "accepted a connection from ", greeting.id.toString());
          actor.adoptPeer(kj::refcounted<PeerConnection>(actor, kj::mv(stream),
                                                         kj::mv(greeting.id),
                                                         greeting.isRegistrar, true));
        });
  });
}

}  // namespace tractor
