// The test binary's entry point. The suite spawns actors from its own executable, so a spawned
// child must boot the child runtime before doctest sees the command line.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include "tractor/devx/proctitle.h"
#include "tractor/supervise/main.h"
#include "tests/support/death-test.h"

int main(int argc, char** argv) {
  tractor::initProcessTitle(argc, argv);
  if (tractor::isChildProcess()) return tractor::childMain();
  KJ_IF_MAYBE(code, tractor::test::runRequestedScenario(argc, argv)) {
    return *code;
  }
  // Orphaned descendants are re-parented to the test process, where the leak audit sees them.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // A runtime directory of its own (inherited by every actor and scenario it starts), so that
  // the leak audit's socket-file check sees only this process's actors, also when several test
  // processes run at once.
  char dir[] = "/tmp/tractor-test-XXXXXX";
  KJ_SYSCALL(mkdtemp(dir) == nullptr ? -1 : 0);
  setenv("XDG_RUNTIME_DIR", dir, 1);
  doctest::Context context(argc, argv);
  int code = context.run();
  // Empty unless a test leaked a socket file (which it reported).
  KJ_SYSCALL(system(kj::str("rm -rf '", dir, "'").cStr()));
  return code;
}
