// Booting the runtime: `tractor::main()` for programs, `runAsRoot()` for embedding and tests.
//
//     tractor::Task<void> rootMain() { ... co_await tractor::openNursery(...); ... }
//     int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
//
// The same executable is every actor of the tree: when the runtime spawns a child it re-executes
// the program with a marker in the environment, and `tractor::main()` then boots a child runtime
// instead of calling the root function. A program must therefore call `tractor::main()` (or
// `isChildProcess()` / `childMain()`) before doing anything of its own in `main`.

#pragma once

#include <kj/function.h>
#include "tractor/kj-runtime/actor/actor.h"
#include "tractor/kj-runtime/net/limits.h"
#include "tractor/kj-runtime/actor/registrar.h"
#include "tractor/spawn/child.h"
#include "tractor/supervise/nursery.h"

namespace tractor {

struct RootOptions {
  // How to boot the root actor; built by chaining: `RootOptions().enable("math")`. Each setter
  // returns the options by value, so `options = kj::mv(options).enable("math")` keeps what
  // `options` held.
  kj::String name = kj::str("root");
  kj::Vector<kj::String> enableModules;
  // Modules the root serves to its children (through their `Actor::parent()` portal).
  kj::Maybe<kj::String> logLevel;
  // `TRACTOR_LOGLEVEL` in the environment wins over this; "warning" when neither is set.
  kj::Maybe<kj::String> spawnMethod;
  // "exec" (default) or "forkserver"; `TRACTOR_SPAWN_METHOD` in the environment wins.
  bool handleSignals = true;
  // SIGINT and SIGTERM cancel the whole tree gracefully; `main()` then exits with 128 + signal.
  Transport transport = Transport::UDS;
  // What every actor of the tree listens on (see address.h).
  kj::Maybe<kj::String> bindAddress;
  // Where the root listens; by default `defaultAddress(transport, id)`. The root's children
  // listen on the same transport (and, for TCP, on the same host) at fresh addresses.
  kj::Vector<kj::String> registryAddrs;
  // Registrar addresses to probe (see registrar.h): the root joins the first that answers as a
  // registrar, else becomes the registrar, listening on the first free one. An address held by
  // something that is not a registrar is skipped; if every one is, the root refuses to start.
  // Empty (the default): the root is its tree's registrar, at its own address.
  MessageLimits messageLimits;
  // What every connection of the tree accepts from a peer: the largest and the most deeply
  // nested message (limits.h). Every actor of the tree uses the root's limits. A root started
  // with limits `validate()` refuses raises before anything starts.

  RootOptions enable(kj::StringPtr module) && {
    enableModules.add(kj::str(module));
    return kj::mv(*this);
  }
  RootOptions withName(kj::StringPtr actorName) && {
    name = kj::str(actorName);
    return kj::mv(*this);
  }
  RootOptions withTransport(Transport t) && {
    transport = t;
    return kj::mv(*this);
  }
  RootOptions bindTo(kj::StringPtr address) && {
    bindAddress = kj::str(address);
    return kj::mv(*this);
  }
  RootOptions withLogLevel(kj::StringPtr level) && {
    logLevel = kj::str(level);
    return kj::mv(*this);
  }
  RootOptions withSpawnMethod(kj::StringPtr method) && {
    spawnMethod = kj::str(method);
    return kj::mv(*this);
  }
  RootOptions withMessageLimits(MessageLimits limits) && {
    messageLimits = limits;
    return kj::mv(*this);
  }
  RootOptions withRegistry(kj::StringPtr address) && {
    registryAddrs.add(kj::str(address));
    return kj::mv(*this);
  }
};

struct RootResult {
  kj::Maybe<kj::Exception> error;
  // What the root function raised.
  int signal = 0;
  // The signal that interrupted the tree (SIGINT, SIGTERM), or 0.
};

RootResult runRoot(RootOptions options, kj::Function<kj::Promise<void>()> rootFn);
// Boots a root actor on this thread, runs `rootFn`, then waits for every shielded teardown (every
// child reaped) before returning. Can be called again afterwards (tests do).

template <typename Func>
void runAsRoot(Func&& rootFn, RootOptions options = {}) {
  // runRoot() for tests and embedding: raises what the root function raised.
  options.handleSignals = false;
  auto result = runRoot(kj::mv(options), [&]() -> kj::Promise<void> { return rootFn(); });
  KJ_IF_MAYBE(e, result.error) {
    kj::throwFatalException(kj::mv(*e));
  }
}

int mainWithRoot(int argc, char** argv, RootOptions options,
                 kj::Function<kj::Promise<void>()> rootFn);

int runDaemon(int argc, char** argv, RootOptions options);
// A program whose only job is to serve RPC: a root actor named `options.name` serving
// `options.enableModules`, registered with the registry at `options.registryAddrs` (becoming
// the registrar if none answers), until SIGINT or SIGTERM ends it (exit code 0). Other programs
// started with the same registry address find it by name (`findActor()`). Call it from `main`
// like `tractor::main()`.

template <typename Func>
int main(int argc, char** argv, Func&& rootFn, RootOptions options = {}) {
  // The program's entry point: a child runtime in a spawned child, else the root actor running
  // `rootFn()` (returning a kj::Promise<void> or a Task<void>). Returns the exit code: 0, 1 when
  // the root function raised (the error is printed), 128 + signal when interrupted.
  return mainWithRoot(argc, argv, kj::mv(options),
                      [&]() -> kj::Promise<void> { return rootFn(); });
}

}  // namespace tractor
