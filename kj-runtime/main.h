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
#include "kj-runtime/actor.h"
#include "supervise/nursery.h"

namespace tractor {

struct RootOptions {
  // How to boot the root actor; built by chaining: `RootOptions().enable("math")`.
  kj::StringPtr name = "root";
  kj::Vector<kj::String> enableModules;
  // Modules the root serves to its children (through their `Actor::parent()` portal).
  kj::Maybe<kj::StringPtr> logLevel = nullptr;
  // `TRACTOR_LOGLEVEL` in the environment wins over this; "warning" when neither is set.
  kj::Maybe<kj::StringPtr> spawnMethod = nullptr;
  // "exec" (default) or "forkserver"; `TRACTOR_SPAWN_METHOD` in the environment wins.
  bool handleSignals = true;
  // SIGINT and SIGTERM cancel the whole tree gracefully; `main()` then exits with 128 + signal.

  RootOptions&& enable(kj::StringPtr module) && {
    enableModules.add(kj::str(module));
    return kj::mv(*this);
  }
};

bool isChildProcess();
// True in a process spawned by the runtime (before `childMain()` consumed the marker).

int childMain();
// Runs this process as a child actor until its parent connection closes; returns the exit code.

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

template <typename Func>
int main(int argc, char** argv, Func&& rootFn, RootOptions options = {}) {
  // The program's entry point: a child runtime in a spawned child, else the root actor running
  // `rootFn()` (returning a kj::Promise<void> or a Task<void>). Returns the exit code: 0, 1 when
  // the root function raised (the error is printed), 128 + signal when interrupted.
  return mainWithRoot(argc, argv, kj::mv(options),
                      [&]() -> kj::Promise<void> { return rootFn(); });
}

}  // namespace tractor
