// A thousand actors on a 2-core machine: spawned flat and as 10 supervisors of 100 workers, every
// one answers a call, one worker's error cancels the whole tree, everything is reaped.
// Labelled "scale"; the sanitizer preset excludes it (a thousand ASan processes need tens of GB).

#include <doctest/doctest.h>
#include <signal.h>
#include <stdexcept>
#include <vector>
#include "tractor/supervise/main.h"
#include "tests/support/leak-audit.h"

namespace {

using tractor::ActorNursery;
using tractor::Portal;
using tractor::Task;

constexpr int64_t ACTORS = 1000;
constexpr int64_t SUPERVISORS = 10;

int64_t echo(int64_t x) { return x; }
TRACTOR_EXPOSE(scale_test, echo);

Task<void> failWhen(int64_t index, int64_t failing) {
  // A worker: sleeps for good, except the one that fails.
  if (index == failing) throw std::runtime_error(kj::str("worker ", index, " failed").cStr());
  co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
}
TRACTOR_EXPOSE(scale_test, failWhen);

Task<int64_t> superviseWorkers(int64_t first, int64_t count, int64_t failing) {
  // A supervisor of `count` workers. Without `failing` (-1): daemons that each answer a call.
  // With it: runInActor jobs that wait for good, except worker number `failing`, which fails.
  int64_t answered = 0;
  co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
    if (failing >= 0) {
      for (int64_t i = 0; i < count; i++) {
        co_await n.runInActor(kj::str("job", first + i), {}, failWhen, first + i, failing);
      }
      co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
      co_return;
    }
    kj::Vector<kj::Promise<Portal>> starting;
    for (int64_t i = 0; i < count; i++) {
      starting.add(n.startActor(kj::str("worker", first + i), tractor::enable("scale_test")));
    }
    auto workers = co_await kj::joinPromises(starting.releaseAsArray());
    kj::Vector<kj::Promise<int64_t>> calls;
    for (auto i: kj::indices(workers)) calls.add(workers[i].run(echo, first + i));
    auto answers = co_await kj::joinPromises(calls.releaseAsArray());
    for (auto i: kj::indices(answers)) answered += answers[i] == first + int64_t(i) ? 1 : 0;
  });
  co_return answered;
}
TRACTOR_EXPOSE(scale_test, superviseWorkers);

using tractor::test::runAuditedRoot;

}  // namespace

TEST_SUITE("scale") {
  TEST_CASE("a thousand flat actors each answer a call and are all reaped") {
    int64_t answered = 0;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        kj::Vector<kj::Promise<Portal>> starting;
        for (int64_t i = 0; i < ACTORS; i++) {
          starting.add(n.startActor(kj::str("flat", i), tractor::enable("scale_test")));
        }
        auto actors = co_await kj::joinPromises(starting.releaseAsArray());
        kj::Vector<kj::Promise<int64_t>> calls;
        for (auto i: kj::indices(actors)) calls.add(actors[i].run(echo, int64_t(i)));
        auto answers = co_await kj::joinPromises(calls.releaseAsArray());
        for (auto i: kj::indices(answers)) answered += answers[i] == int64_t(i) ? 1 : 0;
      });
    });
    CHECK(error == nullptr);
    CHECK(answered == ACTORS);
  }

  TEST_CASE("ten supervisors of a hundred workers: one error cancels the whole tree") {
    int64_t answered = 0;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        // First every worker answers, then one of them fails.
        kj::Vector<kj::Promise<int64_t>> supervisors;
        kj::Vector<Portal> portals;
        for (int64_t s = 0; s < SUPERVISORS; s++) {
          portals.add(
              co_await n.startActor(kj::str("supervisor", s), tractor::enable("scale_test")));
        }
        int64_t perSupervisor = ACTORS / SUPERVISORS;
        for (int64_t s = 0; s < SUPERVISORS; s++) {
          supervisors.add(portals[s].run(superviseWorkers, s * perSupervisor, perSupervisor,
                                         int64_t(-1)));
        }
        for (auto count: co_await kj::joinPromises(supervisors.releaseAsArray())) answered += count;
        // Now a tree whose worker 537 fails: the error crosses its supervisor and cancels all.
        for (int64_t s = 0; s < SUPERVISORS; s++) {
          co_await n.runInActor(kj::str("failing", s), tractor::enable("scale_test"),
                                superviseWorkers, s * perSupervisor, perSupervisor, int64_t(537));
        }
        co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
      });
    });
    CHECK(answered == ACTORS);
    KJ_IF_MAYBE(e, error) {
      CHECK(tractor::isRemoteError(*e, "std::runtime_error"));
      CHECK(tractor::test::contains(e->getDescription(), "worker 537 failed"));
    } else {
      FAIL("the tree did not raise");
    }
  }
}
