// How a whole tree ends when its root is interrupted or killed: run as death tests, each in a
// fresh process, with the leak audit after.

#include <doctest/doctest.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "tractor/supervise/main.h"
#include "tractor/spawn/forkserver.h"
#include "tests/support/death-test.h"
#include "tests/support/leak-audit.h"

namespace {

using tractor::ActorNursery;
using tractor::Portal;
using tractor::Task;

int64_t ownPid() { return getpid(); }
TRACTOR_EXPOSE(signal_test, ownPid);

Task<void> forever() {
  co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
}
TRACTOR_EXPOSE(signal_test, forever);

Task<int64_t> spawnGrandchild() {
  // A supervisor in the middle: starts a daemon of its own and reports its pid, then serves on.
  auto paf = kj::newPromiseAndFulfiller<int64_t>();
  auto fulfiller = kj::mv(paf.fulfiller);
  auto& actor = tractor::Actor::current();
  // The nursery outlives this call: it runs as a task of the actor until the actor is cancelled.
  static kj::Maybe<kj::Promise<void>> keep;
  keep = actor.wrapTask(tractor::openNursery([&fulfiller](ActorNursery& n) -> Task<void> {
    Portal p = co_await n.startActor("grandchild", tractor::enable("signal_test"));
    fulfiller->fulfill(co_await p.run(ownPid));
    co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
  })).eagerlyEvaluate(nullptr);
  co_return co_await kj::mv(paf.promise);
}
TRACTOR_EXPOSE(signal_test, spawnGrandchild);

Task<void> treeThenWait() {
  // Two daemons, one of which supervises a grandchild, and a job that never ends; prints every
  // pid of the tree on one line, then waits for the signal.
  co_await tractor::openNursery([](ActorNursery& n) -> Task<void> {
    Portal a = co_await n.startActor("a", tractor::enable("signal_test"));
    Portal b = co_await n.startActor("b", tractor::enable("signal_test"));
    Portal job = co_await n.runInActor(forever);
    int64_t grandchild = co_await b.run(spawnGrandchild);
    int64_t aPid = co_await a.run(ownPid);
    int64_t bPid = co_await b.run(ownPid);
    printf("ready %lld %lld %lld %lld", static_cast<long long>(aPid),
           static_cast<long long>(bPid), static_cast<long long>(grandchild),
           static_cast<long long>(job.actorId().pid));
    // With the forkserver backend, the server belongs to the tree as well.
    KJ_IF_MAYBE(server, tractor::ForkServer::current()) {
      printf(" %lld", static_cast<long long>(server->pid()));
    }
    printf("\n");
    fflush(stdout);
    co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
  });
}

TRACTOR_SCENARIO(interruptedTree) { return tractor::main(argc, argv, treeThenWait); }

double secondsSince(const struct timespec& start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
}

kj::Vector<pid_t> parsePids(kj::StringPtr line) {
  kj::Vector<pid_t> pids;
  REQUIRE(line.startsWith("ready "));
  const char* p = line.cStr() + 6;
  while (*p != '\0') {
    char* end;
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    pids.add(static_cast<pid_t>(pid));
    p = end;
  }
  return pids;
}

void reapAdopted(pid_t pid) {
  // Waits (with a deadline that only guards against a hang) for a descendant of a killed root to
  // end, and reaps it if it was re-parented to this (subreaper) process. Where it went depends on
  // the order in which the kernel kills the tree; either way it must be gone, which the leak
  // audit then confirms for everything re-parented here.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    struct pollfd pfd = {pidfd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 10000) == 1);
    close(pidfd);
  }
  int status;
  pid_t r = waitpid(pid, &status, WNOHANG);
  CHECK((r == pid || (r < 0 && errno == ECHILD)));
}

kj::Vector<pid_t> signalReadyTree(tractor::test::ScenarioProcess& root, int signo,
                                  struct timespec& start) {
  // Waits for the scenario's tree to be up, signals its root; returns the tree's pids.
  auto pids = parsePids(root.readLine());
  REQUIRE(pids.size() >= 4);
  clock_gettime(CLOCK_MONOTONIC, &start);
  root.signal(signo);
  return pids;
}

void checkSignalEndsTree(int signo) {
  tractor::test::LeakAudit audit;
  tractor::test::ScenarioProcess root("interruptedTree");
  struct timespec start;
  auto pids = signalReadyTree(root, signo, start);
  int status = root.wait();
  MESSAGE("tree ended ", secondsSince(start) * 1000, " ms after the signal");
  CHECK(tractor::test::describeStatus(status) == kj::str("exit ", 128 + signo));
  // Graceful: every actor was cancelled and reaped by its own parent, none was re-parented.
  for (auto pid: pids) CHECK(kill(pid, 0) != 0);
  audit.check();
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("SIGINT at the root cancels the whole tree and exits as interrupted") {
    checkSignalEndsTree(SIGINT);
  }

  TEST_CASE("SIGTERM at the root cancels the whole tree") { checkSignalEndsTree(SIGTERM); }

  TEST_CASE("SIGKILL of a middle actor takes its subtree down and fails the nursery") {
    tractor::test::LeakAudit audit;
    pid_t grandchild = 0;
    struct timespec killedAt;
    auto error = kj::runCatchingExceptions([&]() {
      tractor::runAsRoot([&]() {
        return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
          Portal middle = co_await n.startActor("middle", tractor::enable("signal_test"));
          grandchild = static_cast<pid_t>(co_await middle.run(spawnGrandchild));
          clock_gettime(CLOCK_MONOTONIC, &killedAt);
          kill(static_cast<pid_t>(middle.actorId().pid), SIGKILL);
          co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
        });
      });
    });
    KJ_IF_MAYBE(e, error) {
      CHECK(tractor::test::contains(e->getDescription(), "tractor::ActorFailure"));
      CHECK(tractor::test::contains(e->getDescription(), "killed by signal 9"));
    } else {
      FAIL("the nursery did not raise");
    }
    // The grandchild lost its parent: the kernel's parent-death signal or the closed connection
    // ends it; re-parented to the root (this process), the root's orphan reaper reaped it.
    REQUIRE(grandchild > 0);
    CHECK(kill(grandchild, 0) != 0);
    MESSAGE("subtree gone and the nursery raised ", secondsSince(killedAt) * 1000,
            " ms after the middle actor was killed");
    audit.check();
  }

  TEST_CASE("the root's orphan reaper leaves processes of its user's own alone") {
    tractor::test::LeakAudit audit;
    pid_t own = 0;
    bool stillMine = false;
    tractor::runAsRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        char truePath[] = "/bin/true";
        char* argv[] = {truePath, nullptr};
        REQUIRE(posix_spawn(&own, "/bin/true", nullptr, nullptr, argv, environ) == 0);
        siginfo_t info;
        REQUIRE(waitid(P_PID, own, &info, WEXITED | WNOWAIT) == 0);
        // Its SIGCHLD is pending; a round trip runs the event loop, and so the reaper's sweep.
        Portal p = co_await n.startActor("bystander", tractor::enable("signal_test"));
        co_await p.run(ownPid);
        int status;
        stillMine = waitpid(own, &status, WNOHANG) == own;
      });
    });
    CHECK(stillMine);
    audit.check();
  }

  TEST_CASE("SIGKILL of the root takes every descendant down") {
    tractor::test::LeakAudit audit;
    tractor::test::ScenarioProcess root("interruptedTree");
    struct timespec start;
    auto pids = signalReadyTree(root, SIGKILL, start);
    root.wait();
    // The test process is a child subreaper: orphaned descendants become its children.
    // Each is killed by its parent-death signal or exits on losing its parent connection,
    // whichever comes first; a deadline only guards against a hang.
    for (auto pid: pids) reapAdopted(pid);
    MESSAGE("descendants gone ", secondsSince(start) * 1000, " ms after the root was killed");
    // Nobody of the tree survived to remove its socket files: as the killed root's parent, the
    // test removes them (what the next root to start would do after a minute).
    tractor::removeStaleSockets(0 * kj::SECONDS);
    audit.check();
  }
}
