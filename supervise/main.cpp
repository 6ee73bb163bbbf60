// Booting the root actor. See main.h.

#include "tractor/supervise/main.h"

#include <kj/debug.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tractor/devx/proctitle.h"
#include "tractor/kj-runtime/actor/connection-internal.h"
#include "tractor/spawn/exec-spawn.h"
#include "tractor/spawn/forkserver.h"
#include "tractor/spawn/reaper.h"

namespace tractor {

namespace {

void applyLogLevel(kj::Maybe<kj::StringPtr> fallback) {
  // TRACTOR_LOGLEVEL wins; it is inherited by every child through the environment as well.
  const char* env = getenv("TRACTOR_LOGLEVEL");
  kj::Maybe<kj::StringPtr> name = env != nullptr ? kj::Maybe<kj::StringPtr>(env) : fallback;
  KJ_IF_MAYBE(n, name) {
    KJ_IF_MAYBE(level, parseLogLevel(*n)) {
      setLogLevel(*level);
    } else {
      fprintf(stderr, "tractor: unknown log level '%s' (use error, warning, info, runtime, debug "
              "or trace)\n", n->cStr());
    }
  }
}

kj::Promise<int> firstSignal(kj::UnixEventPort& port) {
  return port.onSignal(SIGINT)
      .then([](siginfo_t) { return SIGINT; })
      .exclusiveJoin(port.onSignal(SIGTERM).then([](siginfo_t) { return SIGTERM; }));
}

void raiseFdLimit() {
  // Every child costs its parent two fds (its connection and its pidfd): a tree of a thousand
  // actors needs more than the usual soft limit of 1024. Children inherit the raised limit.
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

Task<void> startDiscovery(Actor& actor, kj::Array<Address> registry, kj::Maybe<Address> bind,
                          Transport transport) {
  // Registrar election (see registrar.h), then listening and registering.
  auto ownAddress = [&]() {
    KJ_IF_MAYBE(b, bind) {
      return b->clone();
    }
    return defaultAddress(transport, actor.id());
  };
  kj::Maybe<size_t> free;
  for (auto i: kj::indices(registry)) {
    auto verdict = co_await probe(actor, registry[i]);
    if (verdict == ProbeVerdict::REGISTRAR) {
      TRACTOR_LOG(RUNTIME, "joining the registrar at ", registry[i]);
      auto connection = co_await connectPeer(actor, registry[i]);
      auto registrar = connection->portal().capability().getRegistrarRequest().send();
      actor.useRegistrar(registrar.getRegistrar());
      actor.adoptPeer(kj::mv(connection));
      actor.listen(ownAddress());
      co_await actor.registerSelf();
      co_return;
    }
    if (verdict == ProbeVerdict::ABSENT && free == nullptr) free = i;
    if (verdict == ProbeVerdict::OCCUPIED) {
      TRACTOR_LOG(WARNING, "the registry address ", registry[i],
                  " is held by something that is not a registrar");
    }
  }
  if (registry.size() > 0) {
    KJ_IF_MAYBE(i, free) {
      actor.becomeRegistrar(newRegistrar());
      actor.listen(registry[*i]);
    } else {
      kj::throwFatalException(typedError(
          NO_REGISTRAR, kj::str("every registry address is held by something that is not a "
                                "registrar: ", kj::strArray(registry, ", "))));
    }
  } else {
    actor.becomeRegistrar(newRegistrar());
    actor.listen(ownAddress());
  }
  co_await actor.registerSelf();
}

}  // namespace

RootResult runRoot(RootOptions options, kj::Function<kj::Promise<void>()> rootFn) {
  validateActorName(options.name);
  // Before the forkserver forks: its actors inherit them (see childEnvironmentLimits()).
  setMessageLimits(options.messageLimits);
  raiseFdLimit();
  // Forked now, before the event loop, any thread or connection exists; outlives everything
  // below (its destructor reaps it last).
  kj::Maybe<kj::Own<ForkServer>> forkServer;
  auto asPtr = [](kj::String& text) -> kj::StringPtr { return text; };
  if (forkServerRequested(options.spawnMethod.map(asPtr))) forkServer = ForkServer::start();
  if (options.handleSignals) {
    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGTERM);
  }
  // Adopted orphans announce themselves with SIGCHLD (the runtime's own children use pidfds).
  kj::UnixEventPort::captureSignal(SIGCHLD);
  auto io = kj::setupAsyncIo();
  LogSink sink;
  applyLogLevel(options.logLevel.map(asPtr));
  Actor actor(io, ActorId{kj::str(options.name), newUuid(), static_cast<uint32_t>(getpid())},
              true);
  actor.enableModules(options.enableModules);
  OrphanReaper reaper(io.unixEventPort);
  actor.setDescendantLedger(reaper);

  RootResult result;
  // Litter of trees killed outright; a minute's margin spares sockets being set up right now.
  removeStaleSockets(60 * kj::SECONDS);
  auto registry = KJ_MAP(a, options.registryAddrs) { return Address::parse(a); };
  auto bind = options.bindAddress.map([](kj::String& a) { return Address::parse(a); });
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
        toPromise(startDiscovery(actor, kj::mv(registry), kj::mv(bind), options.transport))
            .wait(io.waitScope);
      })) {
    // The root refuses to start: nothing was spawned yet.
    result.error = kj::mv(*e);
    return result;
  }
  auto body = actor.runTask([&]() { return rootFn(); },
                            [&actor]() {
                              return contextCancelled(actor.id(), actor.id(),
                                                      "the root function was stopped");
                            })
                  .then([]() { return 0; });
  if (options.handleSignals) {
    // A signal drops the root function: its nurseries hand their children to the shield keeper,
    // which tears them down gracefully below.
    body = body.exclusiveJoin(firstSignal(io.unixEventPort).then([](int signo) {
      TRACTOR_LOG(WARNING, "received ", strsignal(signo), ": cancelling the actor tree");
      return signo;
    }));
  }
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { result.signal = body.wait(io.waitScope); })) {
    result.error = kj::mv(*e);
  }
  // The root function is gone; children it left behind are being torn down under the shield.
  actor.shieldKeeper().drain().wait(io.waitScope);
  actor.unregisterSelf().wait(io.waitScope);
  return result;
}

namespace {

void printMembers(const ErrorGroup& group, int depth) {
  // One line per member ("[2] std::runtime_error: boom (raised in actor worker@123)"), a nested
  // group's members indented under it.
  for (auto i: kj::indices(group.members)) {
    auto& member = group.members[i];
    auto indent = kj::str(kj::repeat(' ', 2 * (depth + 1)));
    KJ_IF_MAYBE(remote, RemoteActorError::from(member)) {
      fprintf(stderr, "%s[%u] %s: %s (raised in actor %s)\n", indent.cStr(), uint(i + 1),
              remote->srcType.cStr(), remote->message.cStr(), remote->src.toString().cStr());
    } else {
      fprintf(stderr, "%s[%u] %s\n", indent.cStr(), uint(i + 1),
              member.getDescription().cStr());
    }
    KJ_IF_MAYBE(nested, ErrorGroup::from(member)) {
      printMembers(*nested, depth + 1);
    }
  }
}

int reportResult(const RootResult& result) {
  // The exit code of a root, with its error printed.
  KJ_IF_MAYBE(e, result.error) {
    KJ_IF_MAYBE(group, ErrorGroup::from(*e)) {
      fprintf(stderr, "error: %s: %s\n", ERROR_GROUP.cStr(), group->message.cStr());
      printMembers(*group, 0);
      return 1;
    }
    KJ_IF_MAYBE(remote, RemoteActorError::from(*e)) {
      fprintf(stderr, "error: %s: %s\n  raised in actor %s\n%s\n", remote->boxedType.cStr(),
              remote->message.cStr(), remote->src.toString().cStr(),
              remote->remoteStack.cStr());
    } else if (strcmp(e->getFile(), CXX_EXCEPTION_FILE) == 0) {
      // A C++ exception or a typed error: "<type>: <message>" says it all.
      fprintf(stderr, "error: %s\n", e->getDescription().cStr());
    } else {
      // A check of the runtime's or of KJ's: what it says, then where it failed.
      fprintf(stderr, "error: %s\n  at %s:%d\n", e->getDescription().cStr(), e->getFile(),
              e->getLine());
    }
    return 1;
  }
  if (result.signal != 0) return 128 + result.signal;
  return 0;
}

RootResult runRootReporting(RootOptions options, kj::Function<kj::Promise<void>()> rootFn) {
  // runRoot(), with what it refuses to start with (bad options, an unusable runtime directory)
  // as the result's error: a message and exit status 1, never an abort.
  RootResult result;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
        result = runRoot(kj::mv(options), kj::mv(rootFn));
      })) {
    result.error = kj::mv(*e);
  }
  return result;
}

}  // namespace

int mainWithRoot(int argc, char** argv, RootOptions options,
                 kj::Function<kj::Promise<void>()> rootFn) {
  initProcessTitle(argc, argv);
  if (isChildProcess()) return childMain();
  return reportResult(runRootReporting(kj::mv(options), kj::mv(rootFn)));
}

int runDaemon(int argc, char** argv, RootOptions options) {
  initProcessTitle(argc, argv);
  if (isChildProcess()) return childMain();
  options.handleSignals = true;
  auto result = runRootReporting(kj::mv(options), []() -> kj::Promise<void> {
    KJ_IF_MAYBE(address, Actor::current().address()) {
      TRACTOR_LOG(INFO, "serving at ", *address);
    }
    return kj::NEVER_DONE;
  });
  // Being stopped by a signal is how a daemon ends.
  result.signal = 0;
  return reportResult(result);
}

}  // namespace tractor
