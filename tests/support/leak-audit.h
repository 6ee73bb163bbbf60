// The leak audit every multi-process test ends with: no descendant process alive, no zombie, no
// socket file left behind by the runtime.

#pragma once

#include <kj/array.h>
#include <kj/string.h>
#include <kj/vector.h>
#include <string.h>
#include "tractor/supervise/main.h"

namespace tractor {
namespace test {

kj::Array<kj::String> findLeakedProcesses();
// Every process whose parent is this one (the test binary is a child subreaper, so orphaned
// descendants count too), alive or zombie, described as "pid 123 (name) state S".

void killAndReapLeaks();
// SIGKILLs and reaps whatever findLeakedProcesses() reports, so one leak fails one test only.

kj::String runtimeSocketDir();
// The directory where the runtime keeps socket files: $XDG_RUNTIME_DIR/tractor or
// /tmp/tractor-<uid>.

inline bool contains(kj::StringPtr text, kj::StringPtr part) {
  return strstr(text.cStr(), part.cStr()) != nullptr;
}

class LeakAudit {
  // Construct at the start of a multi-process test; `check()` (or the destructor) at its end
  // fails the test on any leak. Socket files are compared with the snapshot taken at
  // construction, so files of unrelated programs do not count.
public:
  LeakAudit();
  ~LeakAudit() noexcept(false);
  KJ_DISALLOW_COPY(LeakAudit);

  kj::Array<kj::String> findLeaks();
  // Every leak, described; empty when clean. Does not fail the test by itself.

  void check();
  // Fails the current test (doctest CHECK) for each leak, then cleans them up.

private:
  kj::Array<kj::String> socketsBefore;
  bool checked = false;
};

template <typename Func>
kj::Maybe<kj::Exception> runAuditedRoot(Func&& body, RootOptions options = {}) {
  // Runs `body` as a root actor's function (runAsRoot) and returns what it raised; the leak
  // audit runs after the root has reaped everything.
  LeakAudit audit;
  auto error = kj::runCatchingExceptions(
      [&]() { runAsRoot(kj::fwd<Func>(body), kj::mv(options)); });
  audit.check();
  return error;
}

template <typename Func>
kj::Maybe<kj::Exception> runAuditedTree(Func&& block, RootOptions options = {}) {
  // Runs `block(nursery)` in a root actor under a 30-second deadline that only catches hangs,
  // and returns what it raised; the leak audit runs once the root has reaped everything.
  return runAuditedRoot(
      [&]() {
        return failAfter(Actor::current().timer(), 30 * kj::SECONDS,
                         openNursery(kj::fwd<Func>(block)));
      },
      kj::mv(options));
}

}  // namespace test
}  // namespace tractor
