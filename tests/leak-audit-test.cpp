// The leak audit catches what it must.

#include <doctest/doctest.h>
#include <kj/debug.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/support/leak-audit.h"

namespace {

pid_t spawnProgram(const char* path, const char* arg) {
  pid_t pid;
  char* argv[] = {const_cast<char*>(path), const_cast<char*>(arg), nullptr};
  KJ_ASSERT(posix_spawn(&pid, path, nullptr, nullptr, argv, environ) == 0);
  return pid;
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("the leak audit catches a live process and a zombie") {
    REQUIRE(tractor::test::findLeakedProcesses().size() == 0);
    tractor::test::LeakAudit audit;
    pid_t live = spawnProgram("/bin/sleep", "30");
    pid_t dead = spawnProgram("/bin/true", nullptr);
    // Wait until `dead` has exited without reaping it: it stays a zombie.
    siginfo_t info;
    REQUIRE(waitid(P_PID, dead, &info, WEXITED | WNOWAIT) == 0);
    auto leaks = audit.findLeaks();
    CHECK(leaks.size() == 2);
    bool sawLive = false, sawZombie = false;
    for (auto& leak: leaks) {
      sawLive = sawLive || tractor::test::contains(leak, kj::str("pid ", live, " (sleep) alive"));
      sawZombie =
          sawZombie || tractor::test::contains(leak, kj::str("pid ", dead, " (true) zombie"));
    }
    CHECK(sawLive);
    CHECK(sawZombie);
    tractor::test::killAndReapLeaks();
    CHECK(audit.findLeaks().size() == 0);
    audit.check();
  }
}
