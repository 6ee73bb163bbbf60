// The test binary's entry point. The suite spawns actors from its own executable, so a spawned
// child must boot the child runtime before doctest sees the command line.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sys/prctl.h>
#include "devx/proctitle.h"
#include "kj-runtime/main.h"
#include "tests/death-test.h"

int main(int argc, char** argv) {
  tractor::initProcessTitle(argc, argv);
  if (tractor::isChildProcess()) return tractor::childMain();
  KJ_IF_MAYBE(code, tractor::test::runRequestedScenario(argc, argv)) {
    return *code;
  }
  // Orphaned descendants are re-parented to the test process, where the leak audit sees them.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  doctest::Context context(argc, argv);
  return context.run();
}
