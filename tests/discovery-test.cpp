// Discovery and transports across real processes: addresses, the registrar (register, find, wait,
// query, unregister, eviction of stale entries), peer-to-peer calls between actors that found
// each other by name, registrar election between separate programs, the TCP transport, hostile
// connections, and a daemon serving separate client programs.
//
// Every multi-process test runs under a generous deadline that only catches hangs and ends with
// the leak audit (no process left, no socket file left in the runtime directory). No test waits
// for time to pass as synchronisation: it asks the actor concerned with a call that waits for the
// condition, reads a separate program's report, or watches its exit through a pidfd. The only
// polling is the wait for a daemon's listener (a connection attempt every few milliseconds,
// under a deadline), since runDaemon() reports nothing before it is reachable.
//
// Separate programs are scenario processes (death-test.h): the test binary re-executed, its
// parameters passed in the environment, its progress reported as lines on its standard output.

#include <doctest/doctest.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>
#include "tractor/kj-runtime/net/address.h"
#include "tractor/supervise/main.h"
#include "tractor/kj-runtime/actor/registrar.h"
#include "tests/support/death-test.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"

namespace {

using tractor::ActorNursery;
using tractor::Address;
using tractor::Context;
using tractor::MsgStream;
using tractor::Portal;
using tractor::Registration;
using tractor::StreamOptions;
using tractor::Task;
using tractor::Transport;
using tractor::Value;
using namespace tractor::test;
using tractor::test::contains;

constexpr kj::Duration HANG_DEADLINE = 30 * kj::SECONDS;
// Catches hangs only: each test takes well under a second or two when the runtime is right.
constexpr kj::Duration WAIT_DEADLINE = 15 * kj::SECONDS;
// For a handshake that waits for something the runtime must do on its own (an exit, a drop).
constexpr kj::Duration POLL_INTERVAL = 5 * kj::MILLISECONDS;
// Between two attempts to reach a separate program's listener.
constexpr int SCENARIO_DEADLINE_MS = 30000;
// How long a separate program may take to print a line or to exit before it is killed.
constexpr int64_t STREAM_ITEMS = 100;

constexpr const char* REGISTRY_ENV = "TRACTOR_TEST_REGISTRY";
constexpr const char* TRANSPORT_ENV = "TRACTOR_TEST_TRANSPORT";
// The parameters of the scenario processes.

// ---- helpers ---------------------------------------------------------------------------------


kj::String listed(kj::ArrayPtr<const Registration> entries) {
  // "name uuid address; ..." for messages.
  kj::Vector<kj::String> parts;
  for (auto& entry: entries) {
    parts.add(kj::str(entry.id.name, ' ', entry.id.uuid, ' ', entry.address.toString()));
  }
  return kj::strArray(parts, "; ");
}

kj::Promise<void> never() { return kj::NEVER_DONE; }

kj::Promise<void> deadline(kj::Promise<void> promise) {
  return tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE, kj::mv(promise));
}

bool isSocketFile(kj::StringPtr path) {
  struct stat st;
  return stat(path.cStr(), &st) == 0 && S_ISSOCK(st.st_mode);
}

bool exists(kj::StringPtr path) {
  struct stat st;
  return lstat(path.cStr(), &st) == 0;
}

kj::String freshSocketPath(kj::StringPtr stem) {
  // A path nobody uses, in the runtime directory (where the leak audit looks).
  auto uuid = tractor::newUuid();
  return kj::str(tractor::runtimeDir(), '/', stem, '-', uuid.slice(0, 8), ".sock");
}

int bindUnix(kj::StringPtr path) {
  // A Unix socket bound at `path`, not listening yet.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_REQUIRE(fd >= 0, strerror(errno));
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof(sa.sun_path), path);
  memcpy(sa.sun_path, path.cStr(), path.size());
  KJ_SYSCALL(bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)));
  return fd;
}

void leaveStaleSocketFile(kj::StringPtr path) {
  // A socket file at `path` that nobody listens at (what a killed actor leaves behind).
  close(bindUnix(path));
}

uint16_t freeTcpPort() {
  // A port free on 127.0.0.1 a moment ago (nothing else on this machine takes ports at random
  // from under a test, in practice).
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_REQUIRE(fd >= 0, strerror(errno));
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  KJ_SYSCALL(bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)));
  socklen_t len = sizeof(sa);
  KJ_SYSCALL(getsockname(fd, reinterpret_cast<struct sockaddr*>(&sa), &len));
  close(fd);
  return ntohs(sa.sin_port);
}


Gauge hellos;
// In an actor: how many `hello` calls it got ...
kj::String lastHello;
// ... and from whom the last one came.

Portal required(kj::Maybe<Portal> maybe, kj::StringPtr what) {
  KJ_IF_MAYBE(p, maybe) {
    return kj::mv(*p);
  }
  KJ_FAIL_REQUIRE("no actor found", what);
}

Address requiredAddress(kj::Maybe<Address> maybe, kj::StringPtr what) {
  KJ_IF_MAYBE(a, maybe) {
    return kj::mv(*a);
  }
  KJ_FAIL_REQUIRE("no address found", what);
}

// ---- the children's module: "discovery_test" (also served by the daemon) ---------------------

int64_t pid() { return getpid(); }
TRACTOR_EXPOSE(discovery_test, pid);

int64_t add(int64_t a, int64_t b) { return a + b; }
TRACTOR_EXPOSE(discovery_test, add);

kj::String whoAmI() {
  auto& id = tractor::Actor::current().id();
  return kj::str(id.name, ' ', id.uuid);
}
TRACTOR_EXPOSE(discovery_test, whoAmI);

void fail(kj::String why) { throw std::runtime_error(why.cStr()); }
TRACTOR_EXPOSE(discovery_test, fail);

void hello(kj::String from) {
  lastHello = kj::mv(from);
  hellos.add();
}
TRACTOR_EXPOSE(discovery_test, hello);

Task<kj::String> waitForHello() {
  co_await hellos.atLeast(1);
  co_return kj::str(lastHello);
}
TRACTOR_EXPOSE(discovery_test, waitForHello);

Task<kj::String> selfCall() {
  // Looks itself up by name and calls its own module through the portal it gets; returns the
  // portal's uuid and the call's result.
  auto own = tractor::Actor::current().id().clone();
  Portal self = required(co_await tractor::findActor(own.name), own.name);
  int64_t sum = co_await self.run(add, 20, 22);
  kj::String who = co_await self.run(whoAmI);
  co_return kj::str(self.actorId().uuid, ' ', sum, ' ', who);
}
TRACTOR_EXPOSE(discovery_test, selfCall);

Task<kj::String> callPeer(kj::String name) {
  // Finds `name` and calls it: "<its whoAmI> <2 + 3> <the portal's uuid> <the portal's pid>".
  Portal peer = required(co_await tractor::findActor(name), name);
  kj::String who = co_await peer.run(whoAmI);
  int64_t sum = co_await peer.run(add, 2, 3);
  co_return kj::str(who, ' ', sum, ' ', peer.actorId().uuid, ' ', peer.actorId().pid);
}
TRACTOR_EXPOSE(discovery_test, callPeer);

Task<std::tuple<kj::String, kj::String, kj::String, int64_t>> peerError(kj::String name) {
  // Finds `name`, makes it fail, and returns what the error says: its boxed type, message,
  // source uuid and relay path length.
  Portal peer = required(co_await tractor::findActor(name), name);
  auto error = co_await errorOf(peer.run(fail, "peer boom"));
  KJ_IF_MAYBE(e, error) {
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
      co_return std::make_tuple(kj::str(r->boxedType), kj::str(r->message), kj::str(r->src.uuid),
                                int64_t(r->relayPath.size()));
    }
    co_return std::make_tuple(kj::str("not remote"), kj::str(e->getDescription()), kj::str(),
                              int64_t(0));
  }
  co_return std::make_tuple(kj::str("no error"), kj::str(), kj::str(), int64_t(0));
}
TRACTOR_EXPOSE(discovery_test, peerError);

Task<void> failThroughPeer(kj::String name) {
  // Finds `name` and lets its failure escape.
  Portal peer = required(co_await tractor::findActor(name), name);
  co_await peer.run(fail, "relayed boom");
}
TRACTOR_EXPOSE(discovery_test, failThroughPeer);

Task<int64_t> echo(Context& ctx) {
  // Starts with the uuid of its caller as this side sees it (the peer's handshake identity),
  // echoes every item, and returns how many it echoed once the caller closed its side.
  co_await ctx.started(kj::str(ctx.peer().uuid));
  int64_t count = 0;
  co_await ctx.openStream(StreamOptions().withOverruns(), [&](MsgStream& stream) -> Task<void> {
    for (;;) {
      auto item = co_await stream.receive<int64_t>();
      KJ_IF_MAYBE(i, item) {
        co_await stream.send(*i);
        ++count;
      } else {
        break;
      }
    }
  });
  co_return count;
}
TRACTOR_CONTEXT(discovery_test, echo);

Task<void> sleeper(Context& ctx) {
  co_await ctx.started();
  co_await never();
}
TRACTOR_CONTEXT(discovery_test, sleeper);

Task<void> sendCount(MsgStream& stream, int64_t count) {
  // Sends 0, 1, ..., count - 1.
  for (int64_t i = 0; i < count; i++) co_await stream.send(i);
}

Task<int64_t> receiveInOrder(MsgStream& stream, int64_t count) {
  // Receives 0, 1, 2, ..., count - 1 (or fewer, if the stream ends first); returns how many
  // arrived.
  int64_t next = 0;
  while (next < count) {
    auto item = co_await stream.receive<int64_t>();
    KJ_IF_MAYBE(v, item) {
      KJ_REQUIRE(*v == next, "stream item out of order", *v, next);
      ++next;
    } else {
      break;
    }
  }
  co_return next;
}

using EchoOutcome = std::tuple<int64_t, int64_t, kj::String>;
// Of streaming through `echo`: the items that came back, the items the callee echoed (its
// result), and the uuid of whom the callee saw as its caller.

Task<EchoOutcome> echoThrough(Portal portal, int64_t count) {
  // Opens `echo` with `portal` and streams `count` items through it both ways at once; once
  // they are all back, closes its side, which ends the callee's loop.
  int64_t received = -1;
  int64_t echoed = -1;
  kj::String seenAs;
  co_await portal.openContext(
      StreamOptions().withOverruns(), echo, [&](Context& ctx, Value first) -> Task<void> {
        seenAs = first.as<kj::String>();
        co_await ctx.openStream(StreamOptions().withOverruns(),
                                [&](MsgStream& stream) -> Task<void> {
          co_await tractor::openTaskGroup([&](tractor::TaskGroup& g) -> Task<void> {
            g.start(sendCount(stream, count));
            received = co_await receiveInOrder(stream, count);
          });
        });
        echoed = co_await ctx.waitForResult<int64_t>();
      });
  co_return std::make_tuple(received, echoed, kj::mv(seenAs));
}

Task<EchoOutcome> streamWithPeer(kj::String name, int64_t count) {
  // Finds `name` and streams `count` items through its `echo` both ways.
  Portal peer = required(co_await tractor::findActor(name), name);
  co_return co_await echoThrough(peer, count);
}
TRACTOR_EXPOSE(discovery_test, streamWithPeer);

Task<bool> cancelPeer(kj::String name) {
  // Finds `name` and cancels the whole actor.
  Portal peer = required(co_await tractor::findActor(name), name);
  co_return co_await peer.cancelActor();
}
TRACTOR_EXPOSE(discovery_test, cancelPeer);

Task<bool> isRegistered(kj::String name) {
  co_return co_await tractor::queryActor(name) != nullptr;
}
TRACTOR_EXPOSE(discovery_test, isRegistered);

Task<kj::String> waitAndCall(kj::String name) {
  // Waits for `name` to register, then calls it.
  Portal peer = co_await tractor::waitForActor(name);
  co_return co_await peer.run(whoAmI);
}
TRACTOR_EXPOSE(discovery_test, waitAndCall);

Task<kj::String> identityAt(kj::String address) {
  // The name and uuid of whoever listens at `address`, as its handshake says.
  Portal peer = co_await tractor::connectTo(Address::parse(address));
  co_return kj::str(peer.actorId().name, ' ', peer.actorId().uuid);
}
TRACTOR_EXPOSE(discovery_test, identityAt);

// ---- the root's module: "discovery_root" ------------------------------------------------------

int64_t rootAdd(int64_t a, int64_t b) { return a + b + 1000; }
TRACTOR_EXPOSE(discovery_root, rootAdd);

// ---- running a tree --------------------------------------------------------------------------

void resetState() {
  hellos.reset();
  lastHello = kj::str();
}

template <typename Func>
kj::Maybe<kj::Exception> runRootTree(Func&& block, tractor::RootOptions options) {
  // Runs `block(nursery)` in a root actor that serves "discovery_root" and "discovery_test",
  // under HANG_DEADLINE, and returns what it raised. No leak audit: the caller has one.
  resetState();
  auto error = kj::runCatchingExceptions([&]() {
    tractor::runAsRoot(
        [&]() -> kj::Promise<void> {
          return tractor::failAfter(tractor::Actor::current().timer(), HANG_DEADLINE,
                                    tractor::openNursery(kj::fwd<Func>(block)));
        },
        kj::mv(options).enable("discovery_root").enable("discovery_test"));
  });
  resetState();
  return error;
}

template <typename Func>
kj::Maybe<kj::Exception> runTree(Func&& block,
                                 tractor::RootOptions options = tractor::RootOptions()) {
  // runRootTree() followed by the leak audit.
  tractor::test::LeakAudit audit;
  auto error = runRootTree(kj::fwd<Func>(block), kj::mv(options));
  audit.check();
  return error;
}

tractor::RootOptions tcp() { return tractor::RootOptions().withTransport(Transport::TCP); }

// ---- separate programs -----------------------------------------------------------------------

class EnvVar {
  // Sets an environment variable for the scenario processes started while it lives.
public:
  EnvVar(const char* name, kj::StringPtr value): name(name) {
    KJ_SYSCALL(setenv(name, value.cStr(), 1));
  }
  ~EnvVar() { unsetenv(name); }
  KJ_DISALLOW_COPY(EnvVar);

private:
  const char* name;
};

class Watchdog {
  // Kills process `pid` (a child not yet reaped, so the pid cannot be reused) if the watchdog
  // still lives after `limitMs`: bounds a blocking read of the process's output.
public:
  Watchdog(pid_t pid, int limitMs)
      : thread([this, pid, limitMs]() {
          std::unique_lock<std::mutex> lock(mutex);
          if (!done.wait_for(lock, std::chrono::milliseconds(limitMs),
                             [this]() { return stopped; })) {
            fired = true;
            kill(pid, SIGKILL);
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopped = true;
    }
    done.notify_all();
    thread.join();
  }
  KJ_DISALLOW_COPY(Watchdog);

  std::atomic<bool> fired{false};

private:
  std::mutex mutex;
  std::condition_variable done;
  bool stopped = false;
  std::thread thread;
};

kj::String readTagged(tractor::test::ScenarioProcess& p, kj::StringPtr tag) {
  // The next line the scenario printed that starts with `tag` (without the tag); fails the
  // test if none comes within SCENARIO_DEADLINE_MS (the scenario is then killed).
  Watchdog dog(p.pid(), SCENARIO_DEADLINE_MS);
  kj::String result;
  auto error = kj::runCatchingExceptions([&]() {
    for (;;) {
      auto line = p.readLine();
      if (line.startsWith(tag)) {
        result = kj::heapString(line.slice(tag.size()));
        return;
      }
    }
  });
  if (dog.fired) FAIL_CHECK("the scenario printed no '", ds(tag), "' line in time");
  KJ_IF_MAYBE(e, error) {
    FAIL_CHECK("reading the scenario's output: ", ds(e->getDescription()));
  }
  return result;
}

int waitWithin(tractor::test::ScenarioProcess& p, int limitMs, double* seconds = nullptr) {
  // Waits for the scenario to exit and returns its wait status; kills it (and fails the test)
  // if it takes longer than `limitMs`.
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  int fd = static_cast<int>(syscall(SYS_pidfd_open, p.pid(), 0));
  KJ_REQUIRE(fd >= 0, "pidfd_open", strerror(errno));
  struct pollfd pfd = {fd, POLLIN, 0};
  int ready;
  do {
    ready = poll(&pfd, 1, limitMs);
  } while (ready < 0 && errno == EINTR);
  close(fd);
  if (ready != 1) {
    FAIL_CHECK("the scenario did not exit within ", limitMs, " ms");
    p.signal(SIGKILL);
  }
  int status = p.wait();
  clock_gettime(CLOCK_MONOTONIC, &end);
  if (seconds != nullptr) {
    *seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
  }
  return status;
}

void printLine(kj::StringPtr tag, kj::StringPtr text) {
  // One line of a scenario's report (newlines in `text` flattened).
  auto flat = kj::heapString(text);
  for (char& c: flat) {
    if (c == '\n') c = ' ';
  }
  printf("%s%s\n", tag.cStr(), flat.cStr());
  fflush(stdout);
}

tractor::RootOptions optionsFromEnv(kj::StringPtr name) {
  // A scenario's root: named `name` (a literal), with the registry and transport the test put
  // in the environment.
  auto options = tractor::RootOptions().withName(name);
  const char* registry = getenv(REGISTRY_ENV);
  if (registry != nullptr) options.registryAddrs.add(kj::str(registry));
  const char* transport = getenv(TRANSPORT_ENV);
  if (transport != nullptr && kj::StringPtr(transport) == "tcp") {
    options.transport = Transport::TCP;
  }
  return options;
}

Task<tractor::ActorId> pollUntilListening(Address address) {
  // Connects to `address` until something answers the handshake there; its identity.
  for (;;) {
    kj::Maybe<Portal> found;
    // Nothing there yet (TransportClosed) is the reason to try again.
    co_await errorOf(tractor::connectTo(address).then([&](Portal&& p) { found = kj::mv(p); }));
    KJ_IF_MAYBE(p, found) {
      co_return p->actorId().clone();
    }
    co_await tractor::Actor::current().timer().afterDelay(POLL_INTERVAL);
  }
}

tractor::ActorId waitUntilListening(kj::StringPtr address) {
  // The handshake with a separate program: a root of our own (its own registrar, apart from
  // the registry at `address`) polls `address` until the program answers there, within
  // WAIT_DEADLINE; returns the identity it answers with.
  tractor::ActorId id;
  auto parsed = Address::parse(address);
  auto error = kj::runCatchingExceptions([&]() {
    tractor::runAsRoot([&]() -> kj::Promise<void> {
      return tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE,
                                tractor::toPromise(pollUntilListening(parsed.clone()))
                                    .then([&](tractor::ActorId&& found) { id = kj::mv(found); }));
    }, tractor::RootOptions().withName("prober").withTransport(parsed.transport));
  });
  KJ_IF_MAYBE(e, error) {
    FAIL_CHECK("nothing answered at ", ds(address), ": ", ds(e->getDescription()));
  }
  return id;
}

kj::String registryAddress(Transport transport, kj::StringPtr stem) {
  if (transport == Transport::TCP) return kj::str("tcp:127.0.0.1:", freeTcpPort());
  return kj::str("unix:", freshSocketPath(stem));
}

// The daemon of the two-program test: runDaemon serving "discovery_test" as "daemon".
TRACTOR_SCENARIO(discoveryDaemon) {
  auto options = optionsFromEnv("daemon");
  options.enableModules.add(kj::str("discovery_test"));
  return tractor::runDaemon(argc, argv, kj::mv(options));
}

Task<void> clientMain() {
  // A separate client program: finds the daemon by name, calls it, reports, ends.
  Portal daemon = required(co_await tractor::findActor("daemon"), "daemon");
  kj::String who = co_await daemon.run(whoAmI);
  int64_t sum = co_await daemon.run(add, 40, 2);
  auto entries = co_await tractor::queryActors("daemon");
  printLine("called ", kj::str(who, ' ', sum, ' ', entries.size()));
}

TRACTOR_SCENARIO(discoveryClient) {
  return tractor::main(argc, argv, clientMain, optionsFromEnv("client"));
}

Task<void> firstProgram() {
  // The first of two roots sharing a registry: spawns "first-child", reports, then finds the
  // second program's "second-child", greets it and reports; serves until SIGTERM.
  co_await tractor::openNursery([](ActorNursery& n) -> Task<void> {
    Portal child = co_await n.startActor("first-child", tractor::enable("discovery_test"));
    printLine("ready ", child.actorId().uuid);
    Portal other = co_await tractor::waitForActor("second-child");
    kj::String who = co_await other.run(whoAmI);
    co_await other.run(hello, "first");
    printLine("found ", who);
    co_await never();
  });
}

TRACTOR_SCENARIO(discoveryFirstProgram) {
  auto options = optionsFromEnv("first");
  return tractor::main(argc, argv, firstProgram, kj::mv(options));
}

TRACTOR_SCENARIO(discoveryRefusedRoot) {
  // A root whose registry address is held by something that is not a registrar: reports
  // whether it started or how it refused.
  (void)argc;
  (void)argv;
  bool started = false;
  auto error = kj::runCatchingExceptions([&]() {
    auto options = optionsFromEnv("refused");
    options.handleSignals = false;
    auto result = tractor::runRoot(kj::mv(options), [&]() -> kj::Promise<void> {
      started = true;
      return kj::READY_NOW;
    });
    KJ_IF_MAYBE(e, result.error) {
      kj::throwFatalException(kj::mv(*e));
    }
  });
  if (started) {
    printLine("started", "");
    return 0;
  }
  KJ_IF_MAYBE(e, error) {
    printLine("refused ", e->getDescription());
    return 1;
  }
  printLine("neither started nor refused", "");
  return 2;
}

TRACTOR_SCENARIO(discoveryRuntimeDir) {
  // Reports what runtimeDir() gives (or raises) in a fresh process.
  (void)argc;
  (void)argv;
  kj::String dir;
  auto error = kj::runCatchingExceptions([&]() { dir = tractor::runtimeDir(); });
  KJ_IF_MAYBE(e, error) {
    printLine("refused ", e->getDescription());
    return 1;
  }
  printLine("dir ", dir);
  return 0;
}

// ---- a socket that is not a registrar --------------------------------------------------------

enum class Squat { SILENT, GARBAGE, HANG_UP };

class Squatter {
  // A plain listening socket (Unix or TCP) that accepts connections and then says nothing,
  // sends garbage, or hangs up at once. Its thread serves it until the squatter is destroyed,
  // which also removes its socket file.
public:
  Squatter(Transport transport, Squat how): how(how) {
    if (transport == Transport::UDS) {
      path = freshSocketPath("squatter");
      listener = bindUnix(path);
      address = kj::str("unix:", path);
    } else {
      listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      KJ_REQUIRE(listener >= 0, strerror(errno));
      struct sockaddr_in sa;
      memset(&sa, 0, sizeof(sa));
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      KJ_SYSCALL(bind(listener, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)));
      socklen_t len = sizeof(sa);
      KJ_SYSCALL(getsockname(listener, reinterpret_cast<struct sockaddr*>(&sa), &len));
      address = kj::str("tcp:127.0.0.1:", ntohs(sa.sin_port));
    }
    KJ_SYSCALL(listen(listener, 64));
    KJ_SYSCALL(pipe2(stopPipe, O_CLOEXEC));
    thread = std::thread([this]() { serve(); });
  }

  ~Squatter() {
    ssize_t n = write(stopPipe[1], "x", 1);
    (void)n;
    thread.join();
    for (int fd: accepted) close(fd);
    close(listener);
    close(stopPipe[0]);
    close(stopPipe[1]);
    if (path.size() > 0) unlink(path.cStr());
  }
  KJ_DISALLOW_COPY(Squatter);

  kj::String address;
  std::atomic<int> connections{0};

private:
  Squat how;
  kj::String path;
  int listener = -1;
  int stopPipe[2] = {-1, -1};
  std::vector<int> accepted;
  std::thread thread;

  void serve() {
    static const char GARBAGE[] =
        "HTTP/1.1 400 Bad Request\r\n\r\n\xff\xff\xff\x7f garbage, not a tractor handshake";
    for (;;) {
      struct pollfd fds[2] = {{listener, POLLIN, 0}, {stopPipe[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections;
      if (how == Squat::HANG_UP) {
        close(fd);
        continue;
      }
      if (how == Squat::GARBAGE) {
        ssize_t n = send(fd, GARBAGE, sizeof(GARBAGE) - 1, MSG_NOSIGNAL);
        (void)n;
      }
      accepted.push_back(fd);
    }
  }
};

// ---- raw connections to an actor -------------------------------------------------------------

const char HANDSHAKE_GARBAGE[] =
    "GARBAGE! this is not a tractor handshake\r\n\r\n\xff\xff\xff\xff\x01\x02\x03";

Task<kj::Own<kj::AsyncIoStream>> rawConnect(Address address) {
  // A plain connection to `address`, no handshake.
  auto& network = tractor::Actor::current().io().provider->getNetwork();
  auto peer = co_await network.parseAddress(address.kjAddress());
  co_return co_await peer->connect();
}

Task<void> droppedByPeer(kj::AsyncIoStream& stream) {
  // Reads (and discards whatever the peer sent) until the peer drops the connection.
  char buffer[512];
  for (;;) {
    size_t n = 0;
    // (A reset may be raised by tryRead() itself, not through its promise.)
    auto error = co_await errorOf(kj::evalNow([&]() {
      return stream.tryRead(buffer, 1, sizeof(buffer)).then([&](size_t r) { n = r; });
    }));
    if (error != nullptr) co_return;  // reset: dropped as well
    if (n == 0) co_return;
  }
}

}  // namespace

// ==== unit: addresses ============================================================================

TEST_SUITE("unit") {
  TEST_CASE("transport address unix and tcp forms parse and print back") {
    auto uds = Address::parse("unix:/run/user/1000/tractor/worker-5c0e1f2a.sock");
    CHECK(uds.transport == Transport::UDS);
    CHECK(uds.path == "/run/user/1000/tractor/worker-5c0e1f2a.sock");
    CHECK(uds.toString() == "unix:/run/user/1000/tractor/worker-5c0e1f2a.sock");
    CHECK(uds.kjAddress() == "unix:/run/user/1000/tractor/worker-5c0e1f2a.sock");
    CHECK(kj::str(uds) == uds.toString());

    auto tcp = Address::parse("tcp:127.0.0.1:40123");
    CHECK(tcp.transport == Transport::TCP);
    CHECK(tcp.host == "127.0.0.1");
    CHECK(tcp.port == 40123);
    CHECK(tcp.toString() == "tcp:127.0.0.1:40123");
    CHECK(tcp.kjAddress() == "127.0.0.1:40123");
    CHECK(kj::str(tcp) == "tcp:127.0.0.1:40123");

    auto any = Address::parse("tcp:0.0.0.0:0");
    CHECK(any.transport == Transport::TCP);
    CHECK(any.host == "0.0.0.0");
    CHECK(any.port == 0);
    CHECK(any.toString() == "tcp:0.0.0.0:0");

    auto named = Address::parse("tcp:localhost:65535");
    CHECK(named.host == "localhost");
    CHECK(named.port == 65535);
    CHECK(named.toString() == "tcp:localhost:65535");
  }

  TEST_CASE("transport address round trips and equality") {
    const char* texts[] = {"unix:/tmp/a.sock", "unix:/tmp/dir with space/b.sock", "tcp:10.1.2.3:1",
                           "tcp:127.0.0.1:1616", "tcp:example.org:8080", "tcp:0.0.0.0:0"};
    for (auto text: texts) {
      auto shownText = ds(text);
      CAPTURE(shownText);
      auto a = Address::parse(text);
      CHECK(a.toString() == text);
      auto b = Address::parse(a.toString());
      CHECK(a == b);
      CHECK(a.clone() == a);
      CHECK(a.clone().toString() == text);
    }
    CHECK(!(Address::parse("tcp:127.0.0.1:1") == Address::parse("tcp:127.0.0.1:2")));
    CHECK(!(Address::parse("tcp:127.0.0.1:1") == Address::parse("tcp:127.0.0.2:1")));
    CHECK(!(Address::parse("unix:/tmp/a") == Address::parse("unix:/tmp/b")));

    // Built by hand, then printed and parsed back.
    Address byHand;
    byHand.transport = Transport::TCP;
    byHand.host = kj::str("127.0.0.1");
    byHand.port = 1616;
    CHECK(byHand.toString() == "tcp:127.0.0.1:1616");
    CHECK(Address::parse(byHand.toString()) == byHand);
    Address file;
    file.path = kj::str("/tmp/x.sock");
    CHECK(file.transport == Transport::UDS);
    CHECK(file.toString() == "unix:/tmp/x.sock");
    CHECK(Address::parse("unix:/tmp/x.sock") == file);
  }

  TEST_CASE("transport address bad addresses are clear errors") {
    const char* bad[] = {
        "unix:relative/path.sock",  // a relative path
        "unix:",                    // no path
        "tcp:127.0.0.1",            // no port
        "tcp:127.0.0.1:",           // an empty port
        "tcp:127.0.0.1:65536",      // out of range
        "tcp:127.0.0.1:99999999999",
        "tcp:127.0.0.1:-1",
        "tcp:127.0.0.1:12ab",       // not a number
        "tcp::80",                  // no host
        "udp:127.0.0.1:53",         // an unknown scheme
        "/tmp/x.sock",              // no scheme at all
        "",
    };
    for (auto text: bad) {
      auto shownText = ds(text);
      CAPTURE(shownText);
      auto error = kj::runCatchingExceptions([&]() { Address::parse(text); });
      KJ_IF_MAYBE(e, error) {
        // The message names what was wrong with: the text itself.
        if (text[0] != '\0') {
          CHECK_MESSAGE(contains(e->getDescription(), text), ds(e->getDescription()));
        }
      } else {
        FAIL_CHECK("parsed without an error");
      }
    }
  }

  TEST_CASE("transport address default addresses") {
    tractor::ActorId a{kj::str("worker"), tractor::newUuid(), static_cast<uint32_t>(getpid())};
    tractor::ActorId b{kj::str("worker"), tractor::newUuid(), static_cast<uint32_t>(getpid())};
    auto ua = tractor::defaultAddress(Transport::UDS, a);
    auto ub = tractor::defaultAddress(Transport::UDS, b);
    CHECK(ua.transport == Transport::UDS);
    auto dir = tractor::runtimeDir();
    CHECK(ua.path.startsWith(kj::str(dir, '/')));
    CHECK(contains(ua.path, "worker"));
    // Two actors of the same name get two files.
    CHECK(!(ua == ub));
    CHECK(Address::parse(ua.toString()) == ua);
    auto ta = tractor::defaultAddress(Transport::TCP, a);
    CHECK(ta.transport == Transport::TCP);
    CHECK(ta.host == "127.0.0.1");
    CHECK(ta.port == 0);
  }

  TEST_CASE("transport address runtime dir is private to the user") {
    auto dir = tractor::runtimeDir();
    CHECK(dir == tractor::test::runtimeSocketDir());
    struct stat st;
    REQUIRE(stat(dir.cStr(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 0777) == 0700);
    CHECK(st.st_uid == getuid());
  }
}

// ==== multi-process ==============================================================================

TEST_SUITE("multiproc") {
  // ---- register, find, unregister -------------------------------------------------------------

  TEST_CASE("discovery a child is found by name and its entry is gone after it was cancelled") {
    bool byCancelActor = false;
    SUBCASE("cancelled with cancelActor") { byCancelActor = true; }
    SUBCASE("cancelled by the nursery's end") { byCancelActor = false; }
    kj::String uuid;
    int64_t childPid = 0;
    kj::String foundUuid;
    uint32_t foundPid = 0;
    int64_t sum = 0;
    kj::String who;
    size_t entriesWhileUp = 0;
    kj::String entryUuid;
    bool acknowledged = false;
    bool foundAfter = true;
    bool queriedAfter = true;
    size_t entriesAfter = 99;
    auto error = runTree([&](ActorNursery&) -> Task<void> {
      co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal child = co_await n.startActor("registered", tractor::enable("discovery_test"));
        uuid = kj::str(child.actorId().uuid);
        childPid = co_await child.run(pid);
        Portal found = required(co_await tractor::findActor("registered"), "registered");
        foundUuid = kj::str(found.actorId().uuid);
        foundPid = found.actorId().pid;
        sum = co_await found.run(add, 40, 2);
        who = co_await found.run(whoAmI);
        auto entries = co_await tractor::queryActors("registered");
        entriesWhileUp = entries.size();
        if (entries.size() > 0) entryUuid = kj::str(entries[0].id.uuid);
        if (byCancelActor) {
          // Acknowledged once the actor was cancelled and unregistered.
          acknowledged = co_await child.cancelActor();
          foundAfter = co_await tractor::findActor("registered") != nullptr;
          queriedAfter = co_await tractor::queryActor("registered") != nullptr;
          entriesAfter = (co_await tractor::queryActors("registered")).size();
        }
      });
      if (byCancelActor) co_return;
      // Torn down by the nursery's end.
      foundAfter = co_await tractor::findActor("registered") != nullptr;
      queriedAfter = co_await tractor::queryActor("registered") != nullptr;
      entriesAfter = (co_await tractor::queryActors("registered")).size();
    });
    CHECK_CLEAN(error);
    CHECK(uuid.size() == 36);
    CHECK(foundUuid == uuid);
    CHECK(foundPid == static_cast<uint32_t>(childPid));
    CHECK(sum == 42);
    CHECK(who == kj::str("registered ", uuid));
    CHECK(entriesWhileUp == 1);
    CHECK(entryUuid == uuid);
    if (byCancelActor) CHECK(acknowledged);
    CHECK(!foundAfter);
    CHECK(!queriedAfter);
    CHECK(entriesAfter == 0);
  }

  TEST_CASE("discovery an unknown name or address is not found") {
    bool found = true;
    bool queried = true;
    size_t entries = 99;
    bool foundInChild = true;
    kj::Maybe<kj::Exception> noFile;
    kj::Maybe<kj::Exception> staleFile;
    kj::Maybe<kj::Exception> noPort;
    auto stalePath = freshSocketPath("stale");
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      // Nothing answers at an address: TransportClosed, whether there is no socket file, a
      // socket file nobody listens at, or a TCP port nobody listens on.
      noFile = co_await errorOf(
          tractor::connectTo(Address::parse(kj::str("unix:", freshSocketPath("none"))))
              .ignoreResult());
      leaveStaleSocketFile(stalePath);
      staleFile = co_await errorOf(
          tractor::connectTo(Address::parse(kj::str("unix:", stalePath))).ignoreResult());
      unlink(stalePath.cStr());
      noPort = co_await errorOf(
          tractor::connectTo(Address::parse(kj::str("tcp:127.0.0.1:", freeTcpPort())))
              .ignoreResult());
      found = co_await tractor::findActor("nobody") != nullptr;
      queried = co_await tractor::queryActor("nobody") != nullptr;
      entries = (co_await tractor::queryActors("nobody")).size();
      Portal child = co_await n.startActor("asker", tractor::enable("discovery_test"));
      auto failed = co_await errorOf(child.run(callPeer, "nobody").ignoreResult());
      foundInChild = failed == nullptr;
    });
    CHECK_CLEAN(error);
    CHECK(!found);
    CHECK(!queried);
    CHECK(entries == 0);
    CHECK(!foundInChild);
    CHECK_RAISED(noFile, tractor::TRANSPORT_CLOSED);
    CHECK_RAISED(staleFile, tractor::TRANSPORT_CLOSED);
    CHECK_RAISED(noPort, tractor::TRANSPORT_CLOSED);
  }

  // ---- find, wait and query -------------------------------------------------------------------

  TEST_CASE("discovery wait for an actor that registers later") {
    bool childWaits = false;
    SUBCASE("the root waits") { childWaits = false; }
    SUBCASE("a child waits") { childWaits = true; }
    kj::String lateUuid;
    kj::String result;
    bool resolvedEarly = false;
    bool spawning = false;
    bool registeredBefore = true;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      kj::Promise<kj::String> waiting = nullptr;
      if (childWaits) {
        Portal waiter = co_await n.startActor("waiter", tractor::enable("discovery_test"));
        registeredBefore = co_await waiter.run(isRegistered, "late");
        waiting = waiter.run(waitAndCall, "late");
      } else {
        waiting = tractor::waitForActor("late").then(
            [](Portal&& p) { return p.run(whoAmI).attach(kj::mv(p)); });
      }
      auto pending = waiting.then([&](kj::String&& s) {
        resolvedEarly = !spawning;
        return kj::mv(s);
      }).eagerlyEvaluate(nullptr);
      // Nothing registered under the name yet.
      CHECK(co_await tractor::queryActor("late") == nullptr);
      spawning = true;
      Portal late = co_await n.startActor("late", tractor::enable("discovery_test"));
      lateUuid = kj::str(late.actorId().uuid);
      result = co_await tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE,
                                           kj::mv(pending));
    });
    CHECK_CLEAN(error);
    CHECK(!resolvedEarly);
    if (childWaits) CHECK(!registeredBefore);
    CHECK(result == kj::str("late ", lateUuid));
  }

  TEST_CASE("discovery query gives the address of a uds socket in the runtime dir") {
    kj::String uuid;
    kj::Maybe<Address> queried;
    bool socketThere = false;
    kj::String viaAddress;
    kj::String viaChild;
    size_t entries = 0;
    bool sameAddress = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal child = co_await n.startActor("queried", tractor::enable("discovery_test"));
      Portal other = co_await n.startActor("other", tractor::enable("discovery_test"));
      uuid = kj::str(child.actorId().uuid);
      queried = co_await tractor::queryActor("queried");
      KJ_IF_MAYBE(a, queried) {
        socketThere = isSocketFile(a->path);
        // connectTo reaches the same actor, from the root and from a sibling.
        Portal direct = co_await tractor::connectTo(*a);
        int64_t sum = co_await direct.run(add, 1, 2);
        viaAddress = kj::str(direct.actorId().uuid, ' ', sum);
        viaChild = co_await other.run(identityAt, a->toString());
        auto list = co_await tractor::queryActors("queried");
        entries = list.size();
        if (list.size() == 1) sameAddress = list[0].address == *a;
      }
    });
    CHECK_CLEAN(error);
    KJ_IF_MAYBE(a, queried) {
      CHECK(a->transport == Transport::UDS);
      CHECK(a->path.startsWith(kj::str(tractor::runtimeDir(), '/')));
      CHECK(a->toString().startsWith("unix:/"));
      CHECK(Address::parse(a->toString()) == *a);
      // Removed when the actor ended (the leak audit checks the whole directory too).
      CHECK(!exists(a->path));
    } else {
      FAIL_CHECK("queryActor found nothing");
    }
    CHECK(socketThere);
    CHECK(viaAddress == kj::str(uuid, " 3"));
    CHECK(viaChild == kj::str("queried ", uuid));
    CHECK(entries == 1);
    CHECK(sameAddress);
  }

  TEST_CASE("discovery an actor looking itself up gets a portal to itself that works") {
    kj::String childUuid;
    kj::String childResult;
    kj::String rootUuid;
    kj::String rootFound;
    int64_t rootSum = 0;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal child = co_await n.startActor("narcissus", tractor::enable("discovery_test"));
      childUuid = kj::str(child.actorId().uuid);
      childResult = co_await child.run(selfCall);
      // The root (the registrar) too.
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      Portal self = required(co_await tractor::findActor("root"), "root");
      rootFound = kj::str(self.actorId().uuid);
      rootSum = co_await self.run(rootAdd, 1, 2);
    });
    CHECK_CLEAN(error);
    CHECK(childResult == kj::str(childUuid, " 42 narcissus ", childUuid));
    CHECK(rootFound == rootUuid);
    CHECK(rootSum == 1003);
  }

  TEST_CASE("discovery duplicate names are listed apart by uuid") {
    kj::String first;
    kj::String second;
    kj::Vector<kj::String> listedUuids;
    kj::String entries;
    bool distinctAddresses = false;
    kj::String found;
    kj::Vector<kj::String> afterCancel;
    kj::String foundAfterCancel;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal a = co_await n.startActor("twin", tractor::enable("discovery_test"));
      Portal b = co_await n.startActor("twin", tractor::enable("discovery_test"));
      first = kj::str(a.actorId().uuid);
      second = kj::str(b.actorId().uuid);
      auto list = co_await tractor::queryActors("twin");
      entries = listed(list);
      for (auto& entry: list) listedUuids.add(kj::str(entry.id.uuid));
      if (list.size() == 2) distinctAddresses = !(list[0].address == list[1].address);
      Portal any = required(co_await tractor::findActor("twin"), "twin");
      found = kj::str(any.actorId().uuid);
      // One twin cancelled: only the other is left.
      co_await a.cancelActor();
      auto rest = co_await tractor::queryActors("twin");
      for (auto& entry: rest) afterCancel.add(kj::str(entry.id.uuid));
      Portal left = required(co_await tractor::findActor("twin"), "twin");
      foundAfterCancel = kj::str(left.actorId().uuid);
      co_await left.run(add, 1, 1);
    });
    CHECK_CLEAN(error);
    CHECK(first != second);
    INFO("entries: ", ds(entries));
    REQUIRE(listedUuids.size() == 2);
    // In registration order.
    CHECK(listedUuids[0] == first);
    CHECK(listedUuids[1] == second);
    CHECK(distinctAddresses);
    CHECK((found == first || found == second));
    REQUIRE(afterCancel.size() == 1);
    CHECK(afterCancel[0] == second);
    CHECK(foundAfterCancel == second);
  }

  // ---- peer to peer -----------------------------------------------------------------------------

  TEST_CASE("discovery siblings find each other and call each other directly") {
    kj::String aUuid;
    kj::String bUuid;
    int64_t aPid = 0;
    kj::String fromB;
    kj::String fromA;
    std::tuple<kj::String, kj::String, kj::String, int64_t> errorSeenByB;
    kj::Maybe<kj::Exception> relayed;
    kj::String relayedVia;
    EchoOutcome streamed;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal a = co_await n.startActor("peer-a", tractor::enable("discovery_test"));
      Portal b = co_await n.startActor("peer-b", tractor::enable("discovery_test"));
      aUuid = kj::str(a.actorId().uuid);
      bUuid = kj::str(b.actorId().uuid);
      aPid = co_await a.run(pid);
      fromB = co_await b.run(callPeer, "peer-a");
      fromA = co_await a.run(callPeer, "peer-b");
      // Errors from A reach B as remote errors with A as their source ...
      errorSeenByB = co_await b.run(peerError, "peer-a");
      // ... and, relayed by B, reach the root with A as the source and B as the last hop.
      relayed = co_await errorOf(b.run(failThroughPeer, "peer-a"));
      KJ_IF_MAYBE(e, relayed) {
        KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
          relayedVia = kj::str(r->relayUid().uuid);
        }
      }
      // A context from B to A streams both ways.
      streamed = co_await b.run(streamWithPeer, "peer-a", STREAM_ITEMS);
      // The siblings are unharmed.
      CHECK(co_await a.run(add, 1, 1) == 2);
      CHECK(co_await b.run(add, 2, 2) == 4);
    });
    CHECK_CLEAN(error);
    CHECK(fromB == kj::str("peer-a ", aUuid, " 5 ", aUuid, ' ', aPid));
    CHECK(fromA.startsWith(kj::str("peer-b ", bUuid, " 5 ", bUuid)));
    CHECK(std::get<0>(errorSeenByB) == "std::runtime_error");
    CHECK(std::get<1>(errorSeenByB) == "peer boom");
    CHECK(std::get<2>(errorSeenByB) == aUuid);
    CHECK(std::get<3>(errorSeenByB) == 1);
    KJ_IF_MAYBE(e, relayed) {
      KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
        CHECK(r->src.uuid == aUuid);
        CHECK(r->srcType == "std::runtime_error");
        CHECK(r->message == "relayed boom");
        CHECK(r->isInception());
        CHECK(relayedVia == bUuid);
      } else {
        FAIL_CHECK("not a remote error: ", ds(e->getDescription()));
      }
    } else {
      FAIL_CHECK("the relayed call did not fail");
    }
    CHECK(std::get<0>(streamed) == STREAM_ITEMS);
    CHECK(std::get<1>(streamed) == STREAM_ITEMS);
    // A saw B itself on the other side of the context: a direct connection.
    CHECK(std::get<2>(streamed) == bUuid);
  }

  TEST_CASE("discovery a sibling cancelling a peer is named as the canceller") {
    kj::String aUuid;
    kj::String bUuid;
    kj::Maybe<kj::Exception> scope;
    bool acknowledged = false;
    kj::Maybe<kj::Exception> callAfter;
    size_t entriesAfter = 99;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal a = co_await n.startActor("victim", tractor::enable("discovery_test"));
      Portal b = co_await n.startActor("canceller", tractor::enable("discovery_test"));
      aUuid = kj::str(a.actorId().uuid);
      bUuid = kj::str(b.actorId().uuid);
      kj::Promise<bool> cancelling = nullptr;
      scope = co_await errorOf(a.openContext(sleeper, [&](Context& ctx, Value) -> Task<void> {
        // B cancels A while the root's context with A is open. The call runs apart from this
        // block, which the ContextCancelled (not asked for by the root) cuts short.
        cancelling = b.run(cancelPeer, "victim").eagerlyEvaluate(nullptr);
        co_await ctx.waitForResult();
      }));
      acknowledged = co_await tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE,
                                                 kj::mv(cancelling));
      callAfter = co_await errorOf(a.run(add, 1, 1).ignoreResult());
      entriesAfter = (co_await tractor::queryActors("victim")).size();
    });
    CHECK_CLEAN(error);
    CHECK_RAISED(scope, tractor::CONTEXT_CANCELLED);
    CHECK(cancellerUuid(scope) == bUuid);
    CHECK(sourceUuid(scope) == aUuid);
    CHECK(acknowledged);
    CHECK(callAfter != nullptr);
    CHECK(entriesAfter == 0);
  }

  // ---- stale entries ----------------------------------------------------------------------------

  TEST_CASE("discovery the stale entry of a killed actor is evicted when found unreachable") {
    kj::String path;
    bool socketBefore = false;
    kj::Maybe<kj::Exception> supervision;
    bool socketAfterReap = true;
    kj::String staleBefore;
    bool foundAfter = true;
    size_t entriesAfter = 99;
    bool othersFine = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal bystander = co_await n.startActor("bystander", tractor::enable("discovery_test"));
      LoneActor doomed = co_await startLoneActor("doomed", "discovery_test");
      Portal& victim = doomed.portal;
      auto address = requiredAddress(co_await tractor::queryActor("doomed"), "doomed");
      path = kj::str(address.path);
      socketBefore = isSocketFile(path);
      auto victimPid = static_cast<pid_t>(co_await victim.run(pid));
      KJ_SYSCALL(kill(victimPid, SIGKILL));
      // Its parent notices, reaps it, and removes its socket file.
      supervision = co_await kj::mv(doomed.supervision);
      doomed.release->fulfill();
      socketAfterReap = exists(path);
      // The entry may still be there: the actor never unregistered.
      staleBefore = listed(co_await tractor::queryActors("doomed"));
      foundAfter = co_await tractor::findActor("doomed") != nullptr;
      entriesAfter = (co_await tractor::queryActors("doomed")).size();
      othersFine = (co_await bystander.run(callPeer, "bystander")).startsWith("bystander ");
    });
    CHECK_CLEAN(error);
    CHECK(socketBefore);
    CHECK_RAISED(supervision, tractor::ACTOR_FAILURE);
    CHECK(!socketAfterReap);
    MESSAGE("entries before the lookup: ", ds(staleBefore.size() > 0 ? staleBefore : "none"_kj));
    CHECK(!foundAfter);
    CHECK(entriesAfter == 0);
    CHECK(othersFine);
  }

  // ---- registrar election -----------------------------------------------------------------------

  TEST_CASE("discovery election a root with a free registry address becomes the registrar") {
    bool tcpRegistry = false;
    SUBCASE("uds") { tcpRegistry = false; }
    SUBCASE("tcp") { tcpRegistry = true; }
    auto transport = tcpRegistry ? Transport::TCP : Transport::UDS;
    auto registry = registryAddress(transport, "registry");
    auto options = tractor::RootOptions().withTransport(transport).withRegistry(registry);
    kj::String rootUuid;
    kj::String childUuid;
    kj::String fromChild;
    kj::String atRegistry;
    bool listening = false;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      Portal child = co_await n.startActor("elector", tractor::enable("discovery_test"));
      childUuid = kj::str(child.actorId().uuid);
      Portal found = required(co_await tractor::findActor("elector"), "elector");
      fromChild = co_await found.run(whoAmI);
      // The root listens at the registry address: whoever connects there meets the root.
      atRegistry = co_await child.run(identityAt, registry);
      auto parsed = Address::parse(registry);
      listening = parsed.transport == Transport::TCP || isSocketFile(parsed.path);
    }, kj::mv(options));
    CHECK_CLEAN(error);
    CHECK(fromChild == kj::str("elector ", childUuid));
    CHECK(atRegistry == kj::str("root ", rootUuid));
    CHECK(listening);
  }

  TEST_CASE("discovery election a second program joins the registrar of the first") {
    tractor::test::LeakAudit audit;
    auto registry = registryAddress(Transport::UDS, "registry");
    EnvVar env(REGISTRY_ENV, registry);
    tractor::test::ScenarioProcess first("discoveryFirstProgram");
    // The first program is up, its child registered, once it says so.
    auto firstChild = readTagged(first, "ready ");
    kj::String found;
    kj::String queried;
    kj::String secondChild;
    kj::String greetedBy;
    auto error = runRootTree([&](ActorNursery& n) -> Task<void> {
      Portal mine = co_await n.startActor("second-child", tractor::enable("discovery_test"));
      secondChild = kj::str(mine.actorId().uuid);
      // Found through the first program's registrar ...
      Portal theirs = required(co_await tractor::findActor("first-child"), "first-child");
      found = co_await theirs.run(whoAmI);
      queried = listed(co_await tractor::queryActors("first-child"));
      // ... which has our child too: the first program finds it and greets it.
      greetedBy = co_await tractor::failAfter(tractor::Actor::current().timer(), WAIT_DEADLINE,
                                              mine.run(waitForHello));
    }, tractor::RootOptions().withName("second").withRegistry(registry));
    CHECK_CLEAN(error);
    CHECK(found == kj::str("first-child ", firstChild));
    CHECK(contains(queried, firstChild));
    CHECK(greetedBy == "first");
    CHECK(readTagged(first, "found ") == kj::str("second-child ", secondChild));
    first.signal(SIGTERM);
    CHECK(tractor::test::describeStatus(waitWithin(first, SCENARIO_DEADLINE_MS)) ==
          kj::str("exit ", 128 + SIGTERM));
    audit.check();
  }

  TEST_CASE("discovery election refuses a registry address held by a non-registrar") {
    Transport transport = Transport::UDS;
    Squat how = Squat::SILENT;
    doctest::String variant;
    SUBCASE("uds silent") {
      how = Squat::SILENT;
      variant = "uds silent";
    }
    SUBCASE("uds garbage") {
      how = Squat::GARBAGE;
      variant = "uds garbage";
    }
    SUBCASE("uds hang up") {
      how = Squat::HANG_UP;
      variant = "uds hang up";
    }
    SUBCASE("tcp garbage") {
      transport = Transport::TCP;
      how = Squat::GARBAGE;
      variant = "tcp garbage";
    }
    CAPTURE(variant);
    tractor::test::LeakAudit audit;
    kj::String line;
    kj::String status;
    double seconds = 0;
    int connections = 0;
    kj::String address;
    {
      Squatter squatter(transport, how);
      address = kj::str(squatter.address);
      EnvVar env(REGISTRY_ENV, squatter.address);
      kj::Maybe<EnvVar> tcpEnv;
      if (transport == Transport::TCP) tcpEnv.emplace(TRANSPORT_ENV, "tcp");
      tractor::test::ScenarioProcess root("discoveryRefusedRoot");
      status = tractor::test::describeStatus(waitWithin(root, SCENARIO_DEADLINE_MS, &seconds));
      line = readTagged(root, "");
      connections = squatter.connections;
    }
    MESSAGE("refused after ", seconds, " s: ", ds(line));
    CHECK(line.startsWith("refused "));
    CHECK(contains(line, address));
    CHECK(contains(line, "registrar"));
    CHECK(status == "exit 1");
    // It did probe.
    CHECK(connections >= 1);
    audit.check();
  }

  // ---- TCP --------------------------------------------------------------------------------------

  TEST_CASE("transport tcp find call stream and cancel") {
    kj::String rootUuid;
    kj::String aUuid;
    kj::String bUuid;
    kj::Maybe<Address> queried;
    kj::Maybe<Address> rootAddress;
    int64_t sum = 0;
    EchoOutcome direct;
    EchoOutcome peerStream;
    kj::String peerCall;
    kj::Maybe<kj::Exception> scope;
    bool acknowledged = false;
    kj::Maybe<kj::Exception> callAfter;
    size_t entriesAfter = 99;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      Portal a = co_await n.startActor("tcp-a", tractor::enable("discovery_test"));
      Portal b = co_await n.startActor("tcp-b", tractor::enable("discovery_test"));
      aUuid = kj::str(a.actorId().uuid);
      bUuid = kj::str(b.actorId().uuid);
      queried = co_await tractor::queryActor("tcp-a");
      rootAddress = co_await tractor::queryActor("root");
      Portal found = required(co_await tractor::findActor("tcp-a"), "tcp-a");
      sum = co_await found.run(add, 40, 2);
      direct = co_await echoThrough(found, STREAM_ITEMS);
      peerCall = co_await b.run(callPeer, "tcp-a");
      peerStream = co_await b.run(streamWithPeer, "tcp-a", STREAM_ITEMS);
      // Cancelled through the found portal while the nursery's portal has a context open.
      scope = co_await errorOf(a.openContext(sleeper, [&](Context& ctx, Value) -> Task<void> {
        acknowledged = co_await found.cancelActor();
        co_await ctx.waitForResult();
      }));
      callAfter = co_await errorOf(found.run(add, 1, 1).ignoreResult());
      entriesAfter = (co_await tractor::queryActors("tcp-a")).size();
    }, tcp());
    CHECK_CLEAN(error);
    KJ_IF_MAYBE(q, queried) {
      CHECK(q->transport == Transport::TCP);
      CHECK(q->host == "127.0.0.1");
      CHECK(q->port != 0);
      CHECK(Address::parse(q->toString()) == *q);
    } else {
      FAIL_CHECK("queryActor found nothing");
    }
    KJ_IF_MAYBE(r, rootAddress) {
      CHECK(r->transport == Transport::TCP);
      CHECK(r->port != 0);
    } else {
      FAIL_CHECK("the root is not registered");
    }
    CHECK(sum == 42);
    CHECK(std::get<0>(direct) == STREAM_ITEMS);
    CHECK(std::get<1>(direct) == STREAM_ITEMS);
    CHECK(std::get<2>(direct) == rootUuid);
    CHECK(peerCall.startsWith(kj::str("tcp-a ", aUuid, " 5 ", aUuid)));
    CHECK(std::get<0>(peerStream) == STREAM_ITEMS);
    CHECK(std::get<1>(peerStream) == STREAM_ITEMS);
    CHECK(std::get<2>(peerStream) == bUuid);
    CHECK_RAISED(scope, tractor::CONTEXT_CANCELLED);
    CHECK(cancellerUuid(scope) == rootUuid);
    CHECK(acknowledged);
    CHECK(callAfter != nullptr);
    CHECK(entriesAfter == 0);
  }

  TEST_CASE("transport the root listens where bindTo says") {
    bool tcpRoot = false;
    SUBCASE("uds") { tcpRoot = false; }
    SUBCASE("tcp") { tcpRoot = true; }
    auto bind = tcpRoot ? kj::str("tcp:127.0.0.1:", freeTcpPort())
                        : kj::str("unix:", freshSocketPath("bound-root"));
    auto options = tractor::RootOptions().bindTo(bind);
    if (tcpRoot) options.transport = Transport::TCP;
    kj::String rootUuid;
    kj::String queried;
    kj::String atBind;
    kj::String childAddress;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      rootUuid = kj::str(tractor::Actor::current().id().uuid);
      kj::Maybe<Address> own = co_await tractor::queryActor("root");
      KJ_IF_MAYBE(a, own) {
        queried = a->toString();
      }
      Portal child = co_await n.startActor("bound-child", tractor::enable("discovery_test"));
      atBind = co_await child.run(identityAt, bind);
      kj::Maybe<Address> childs = co_await tractor::queryActor("bound-child");
      KJ_IF_MAYBE(a, childs) {
        childAddress = a->toString();
      }
    }, kj::mv(options));
    CHECK_CLEAN(error);
    CHECK(queried == bind);
    CHECK(atBind == kj::str("root ", rootUuid));
    // The children use the same transport.
    CHECK(childAddress.startsWith(tcpRoot ? "tcp:127.0.0.1:" : "unix:/"));
  }

  TEST_CASE("transport runtime dir is created private and refused when open to others") {
    tractor::test::LeakAudit audit;
    // In fresh processes (runtimeDir() may remember its answer), with a runtime directory of
    // the test's own.
    char base[] = "/tmp/tractor-dirtest-XXXXXX";
    REQUIRE(mkdtemp(base) != nullptr);
    auto tractorDir = kj::str(base, "/tractor");
    {
      EnvVar xdg("XDG_RUNTIME_DIR", base);
      tractor::test::ScenarioProcess fresh("discoveryRuntimeDir");
      auto line = readTagged(fresh, "dir ");
      CHECK(tractor::test::describeStatus(waitWithin(fresh, SCENARIO_DEADLINE_MS)) == "exit 0");
      CHECK(line == tractorDir);
      struct stat st;
      REQUIRE(stat(tractorDir.cStr(), &st) == 0);
      CHECK(S_ISDIR(st.st_mode));
      CHECK((st.st_mode & 0777) == 0700);

      // Opened to others: refused.
      REQUIRE(chmod(tractorDir.cStr(), 0755) == 0);
      tractor::test::ScenarioProcess open("discoveryRuntimeDir");
      auto refusal = readTagged(open, "refused ");
      CHECK(tractor::test::describeStatus(waitWithin(open, SCENARIO_DEADLINE_MS)) == "exit 1");
      CHECK_MESSAGE(contains(refusal, tractorDir), ds(refusal));
    }
    rmdir(tractorDir.cStr());
    rmdir(base);
    audit.check();
  }

  // ---- hostile connections ----------------------------------------------------------------------

  TEST_CASE("transport an invalid handshake is dropped without disturbing the server") {
    bool targetRoot = false;
    bool useTcp = false;
    SUBCASE("uds child") {}
    SUBCASE("uds registrar") { targetRoot = true; }
    SUBCASE("tcp child") { useTcp = true; }
    SUBCASE("tcp registrar") {
      useTcp = true;
      targetRoot = true;
    }
    doctest::String variant = useTcp ? "tcp" : "uds";
    variant += targetRoot ? " registrar" : " child";
    CAPTURE(variant);
    kj::String targetUuid;
    kj::Maybe<kj::Exception> dropped;
    kj::String concurrentFind;
    int64_t callAfter = 0;
    kj::String after;
    kj::String peerAfter;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal target = co_await n.startActor("target", tractor::enable("discovery_test"));
      Portal other = co_await n.startActor("other", tractor::enable("discovery_test"));
      kj::StringPtr name = targetRoot ? "root"_kj : "target"_kj;
      targetUuid = targetRoot ? kj::str(tractor::Actor::current().id().uuid)
                              : kj::str(target.actorId().uuid);
      auto address = requiredAddress(co_await tractor::queryActor(name), name);
      auto raw = co_await rawConnect(address.clone());
      co_await raw->write(HANDSHAKE_GARBAGE, sizeof(HANDSHAKE_GARBAGE) - 1);
      // A lookup that needs the server while the garbage is being dealt with.
      auto finding = other.run(callPeer, name).eagerlyEvaluate(nullptr);
      dropped = co_await errorOf(deadline(droppedByPeer(*raw)));
      concurrentFind = co_await kj::mv(finding);
      callAfter = co_await target.run(add, 2, 3);
      after = co_await other.run(callPeer, name);
      peerAfter = co_await other.run(identityAt, address.toString());
    }, useTcp ? tcp() : tractor::RootOptions());
    CHECK_CLEAN(error);
    CHECK_CLEAN(dropped);
    CHECK(concurrentFind.startsWith(kj::str(targetRoot ? "root " : "target ", targetUuid)));
    CHECK(callAfter == 5);
    CHECK(after.startsWith(kj::str(targetRoot ? "root " : "target ", targetUuid)));
    CHECK(peerAfter.endsWith(targetUuid));
  }

  TEST_CASE("transport a silent connection blocks nobody") {
    bool targetRoot = false;
    bool useTcp = false;
    SUBCASE("uds child") {}
    SUBCASE("uds registrar") { targetRoot = true; }
    SUBCASE("tcp child") { useTcp = true; }
    doctest::String variant = useTcp ? "tcp" : "uds";
    variant += targetRoot ? " registrar" : " child";
    CAPTURE(variant);
    kj::String targetUuid;
    kj::String found;
    kj::String viaPeer;
    kj::String late;
    int64_t sum = 0;
    size_t entries = 0;
    auto error = runTree([&](ActorNursery& n) -> Task<void> {
      Portal target = co_await n.startActor("target", tractor::enable("discovery_test"));
      Portal other = co_await n.startActor("other", tractor::enable("discovery_test"));
      kj::StringPtr name = targetRoot ? "root"_kj : "target"_kj;
      targetUuid = targetRoot ? kj::str(tractor::Actor::current().id().uuid)
                              : kj::str(target.actorId().uuid);
      auto address = requiredAddress(co_await tractor::queryActor(name), name);
      // Two connections that say nothing and stay open for the whole test.
      auto silent = co_await rawConnect(address.clone());
      auto silent2 = co_await rawConnect(address.clone());
      // Everyone else goes on: lookups, new connections, calls, new registrations.
      found = co_await other.run(callPeer, name);
      viaPeer = co_await other.run(identityAt, address.toString());
      entries = (co_await tractor::queryActors("other")).size();
      sum = co_await target.run(add, 20, 22);
      Portal latecomer = co_await n.startActor("latecomer", tractor::enable("discovery_test"));
      late = co_await other.run(callPeer, "latecomer");
      (void)latecomer;
      silent = nullptr;
      silent2 = nullptr;
    }, useTcp ? tcp() : tractor::RootOptions());
    CHECK_CLEAN(error);
    CHECK(found.startsWith(kj::str(targetRoot ? "root " : "target ", targetUuid)));
    CHECK(viaPeer.endsWith(targetUuid));
    CHECK(entries == 1);
    CHECK(sum == 42);
    CHECK(late.startsWith("latecomer "));
  }

  // ---- separate programs ------------------------------------------------------------------------

  TEST_CASE("discovery two programs share a daemon through the registry") {
    bool useTcp = false;
    SUBCASE("uds") { useTcp = false; }
    SUBCASE("tcp") { useTcp = true; }
    tractor::test::LeakAudit audit;
    auto registry = registryAddress(useTcp ? Transport::TCP : Transport::UDS, "registry");
    EnvVar env(REGISTRY_ENV, registry);
    kj::Maybe<EnvVar> tcpEnv;
    if (useTcp) tcpEnv.emplace(TRANSPORT_ENV, "tcp");
    // Program 1: the daemon, the registrar at `registry` (nobody else is there).
    tractor::test::ScenarioProcess daemon("discoveryDaemon");
    auto daemonId = waitUntilListening(registry);
    CHECK(daemonId.name == "daemon");
    // Program 2: a client finds it by name, calls it, and exits.
    {
      tractor::test::ScenarioProcess client("discoveryClient");
      auto called = readTagged(client, "called ");
      CHECK(called == kj::str("daemon ", daemonId.uuid, " 42 1"));
      CHECK(tractor::test::describeStatus(waitWithin(client, SCENARIO_DEADLINE_MS)) == "exit 0");
    }
    // Program 3 (this one): the daemon survived the client's exit and answers a third lookup.
    kj::String who;
    int64_t sum = 0;
    kj::String entries;
    kj::String clientEntries;
    auto error = runRootTree([&](ActorNursery&) -> Task<void> {
      Portal found = required(co_await tractor::findActor("daemon"), "daemon");
      who = co_await found.run(whoAmI);
      sum = co_await found.run(add, 1, 2);
      entries = listed(co_await tractor::queryActors("daemon"));
      // The client unregistered when it ended.
      clientEntries = listed(co_await tractor::queryActors("client"));
    }, useTcp ? tcp().withRegistry(registry).withName("third")
              : tractor::RootOptions().withRegistry(registry).withName("third"));
    CHECK_CLEAN(error);
    CHECK(who == kj::str("daemon ", daemonId.uuid));
    CHECK(sum == 3);
    CHECK(contains(entries, daemonId.uuid));
    CHECK(clientEntries == "");
    // Stopped with SIGTERM, it exits 0 and leaves nothing behind.
    daemon.signal(SIGTERM);
    CHECK(tractor::test::describeStatus(waitWithin(daemon, SCENARIO_DEADLINE_MS)) == "exit 0");
    if (!useTcp) CHECK(!exists(Address::parse(registry).path));
    audit.check();
  }
}
