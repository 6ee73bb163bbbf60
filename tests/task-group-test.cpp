// Tests of task groups, deadlines and shielded cleanup (kj-runtime/async/task-group.h). Time is a
// kj::TimerImpl moved by hand, so every test is deterministic and none sleeps.

#include "tractor/kj-runtime/async/task-group.h"

#include <doctest/doctest.h>
#include <kj/async.h>
#include <kj/timer.h>
#include <kj/vector.h>
#include <string.h>
#include <stdexcept>
#include <string>
#include "tests/support/manual-time.h"

namespace tractor {
namespace {

constexpr kj::Duration MS = kj::MILLISECONDS;

using test::ManualTime;

class Counted {
  // Adds one to a counter when destroyed, unless it was moved from.
public:
  explicit Counted(int& counter): counter(&counter) {}
  Counted(Counted&& other) noexcept: counter(other.counter) { other.counter = nullptr; }
  ~Counted() noexcept {
    if (counter != nullptr) ++*counter;
  }
  KJ_DISALLOW_COPY(Counted);

private:
  int* counter;
};

struct Probe {
  // What happened to one task: whether it ran to its end, and whether its frame's locals are gone.
  bool finished = false;
  int destroyed = 0;

  bool cancelled() const { return !finished && destroyed == 1; }
};

class LogCapture final: public kj::ExceptionCallback {
  // Collects the ERROR messages logged on this thread while it exists.
public:
  kj::Vector<kj::String> errors;

  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override {
    if (severity == kj::LogSeverity::ERROR) {
      errors.add(kj::mv(text));
    } else {
      next.logMessage(severity, file, line, contextDepth, kj::mv(text));
    }
  }

  bool contains(kj::StringPtr part) const {
    for (auto& error: errors) {
      if (strstr(error.cStr(), part.cStr()) != nullptr) return true;
    }
    return false;
  }
};

bool mentions(const kj::Exception& exception, kj::StringPtr part) {
  return strstr(exception.getDescription().cStr(), part.cStr()) != nullptr;
}

// ---------------------------------------------------------------------------------------------
// Tasks. Reference parameters refer to test locals, which outlive every frame.

Task<void> sleeper(kj::Timer& timer, kj::Duration delay, Probe& probe) {
  Counted local(probe.destroyed);
  co_await timer.afterDelay(delay);
  probe.finished = true;
}

Task<int> slowValue(kj::Timer& timer, kj::Duration delay, int value, Probe& probe) {
  Counted local(probe.destroyed);
  co_await timer.afterDelay(delay);
  probe.finished = true;
  co_return value;
}

Task<void> failer(kj::Timer& timer, kj::Duration delay, kj::String message) {
  co_await timer.afterDelay(delay);
  KJ_FAIL_REQUIRE("task failed", message);
}

Task<void> failWhenRejected(kj::Promise<void> trigger) {
  co_await kj::mv(trigger);
}

Task<void> cancelGroupAfter(kj::Timer& timer, kj::Duration delay, TaskGroup& group,
                            Probe& probe, bool& ranAfterCancel) {
  Counted local(probe.destroyed);
  co_await timer.afterDelay(delay);
  group.cancel();
  // Cancellation is delivered in a later turn, so this task runs on to its next suspension.
  ranAfterCancel = true;
  co_await timer.afterDelay(1000 * MS);
  probe.finished = true;
}

struct CleanupProbe {
  bool started = false;
  bool midway = false;
  bool finished = false;
};

Task<void> cleanUpSlowly(kj::Timer& timer, CleanupProbe& probe) {
  probe.started = true;
  co_await timer.afterDelay(50 * MS);
  probe.midway = true;
  co_await timer.afterDelay(50 * MS);
  probe.finished = true;
}

Task<void> workThenCleanUp(kj::Timer& timer, CleanupProbe& cleanup, Probe& probe) {
  Counted local(probe.destroyed);
  co_await timer.afterDelay(10 * MS);
  co_await shield(cleanUpSlowly(timer, cleanup));
  probe.finished = true;
}

}  // namespace

TEST_SUITE("unit") {

// ---------------------------------------------------------------------------------------------
// Task groups

TEST_CASE("task group resolves after the block and all children complete") {
  ManualTime time;
  Probe a, b, c;
  TaskGroup* group = nullptr;
  bool blockDone = false;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> Task<void> {
    group = &tg;
    tg.start(sleeper(time.timer, 10 * MS, a));
    tg.start(sleeper(time.timer, 20 * MS, b));
    co_await time.timer.afterDelay(5 * MS);
    tg.start(sleeper(time.timer, 30 * MS, c));
    blockDone = true;
  });
  REQUIRE(group != nullptr);
  CHECK(group->size() == 2);
  CHECK(!group->cancelCalled());

  time.advance(5 * MS);
  CHECK(blockDone);
  CHECK(group->size() == 3);
  time.advance(5 * MS);
  CHECK(a.finished);
  CHECK(group->size() == 2);
  time.advance(10 * MS);
  CHECK(b.finished);
  CHECK(group->size() == 1);
  CHECK(!done.poll(time.waitScope));

  time.advance(15 * MS);
  CHECK(c.finished);
  CHECK(group->size() == 0);
  CHECK(time.outcome(done) == nullptr);
}

TEST_CASE("task group first child failure cancels the siblings and is raised") {
  ManualTime time;
  Probe a, b;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    tg.start(sleeper(time.timer, 100 * MS, a));
    tg.start(sleeper(time.timer, 200 * MS, b));
    tg.start(failer(time.timer, 10 * MS, kj::str("child broke")));
    return kj::READY_NOW;
  });
  time.advance(10 * MS);
  KJ_IF_MAYBE(exception, time.outcome(done)) {
    CHECK(mentions(*exception, "child broke"));
  } else {
    FAIL("the child's failure was not raised");
  }
  CHECK(a.cancelled());
  CHECK(b.cancelled());
  CHECK(time.timerIdle());
  time.advance(1000 * MS);
  CHECK(!a.finished);
  CHECK(!b.finished);
}

TEST_CASE("task group block failure cancels the children") {
  ManualTime time;
  Probe a, b;
  bool blockContinued = false;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> Task<void> {
    tg.start(sleeper(time.timer, 100 * MS, a));
    tg.start(sleeper(time.timer, 200 * MS, b));
    co_await time.timer.afterDelay(10 * MS);
    throw std::runtime_error("block broke");
    blockContinued = true;
  });
  time.advance(10 * MS);
  KJ_IF_MAYBE(exception, time.outcome(done)) {
    CHECK(exception->getDescription() == "std::runtime_error: block broke");
  } else {
    FAIL("the block's failure was not raised");
  }
  CHECK(!blockContinued);
  CHECK(a.cancelled());
  CHECK(b.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("task group block throwing at once cancels the children it started") {
  ManualTime time;
  Probe a;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    tg.start(sleeper(time.timer, 100 * MS, a));
    KJ_FAIL_REQUIRE("block refused to run");
  });
  time.waitScope.poll();
  KJ_IF_MAYBE(exception, time.outcome(done)) {
    CHECK(mentions(*exception, "block refused to run"));
  } else {
    FAIL("the block's failure was not raised");
  }
  CHECK(a.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("task group cancel from the block cancels everything and completes normally") {
  ManualTime time;
  Probe a, b;
  int blockDestroyed = 0;
  bool blockResumed = false;
  bool cancelCalled = false;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> Task<void> {
    Counted local(blockDestroyed);
    tg.start(sleeper(time.timer, 100 * MS, a));
    tg.start(sleeper(time.timer, 200 * MS, b));
    co_await time.timer.afterDelay(10 * MS);
    tg.cancel();
    tg.cancel();
    cancelCalled = tg.cancelCalled();
    co_await time.timer.afterDelay(1000 * MS);
    blockResumed = true;
  });
  time.advance(10 * MS);
  CHECK(cancelCalled);
  CHECK(time.outcome(done) == nullptr);
  CHECK(blockDestroyed == 1);
  CHECK(!blockResumed);
  CHECK(a.cancelled());
  CHECK(b.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("task group a child can cancel its own group") {
  ManualTime time;
  Probe sibling, canceller;
  bool ranAfterCancel = false;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    tg.start(sleeper(time.timer, 100 * MS, sibling));
    tg.start(cancelGroupAfter(time.timer, 10 * MS, tg, canceller, ranAfterCancel));
    return kj::READY_NOW;
  });
  time.advance(10 * MS);
  CHECK(time.outcome(done) == nullptr);
  CHECK(ranAfterCancel);
  CHECK(canceller.cancelled());
  CHECK(sibling.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("task group dropping its promise cancels the block and all children") {
  ManualTime time;
  Probe a, b;
  int blockDestroyed = 0;
  bool blockResumed = false;
  {
    kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> Task<void> {
      Counted local(blockDestroyed);
      tg.start(sleeper(time.timer, 100 * MS, a));
      tg.start(sleeper(time.timer, 200 * MS, b));
      co_await time.timer.afterDelay(1000 * MS);
      blockResumed = true;
    });
    time.advance(10 * MS);
    CHECK(blockDestroyed == 0);
    CHECK(a.destroyed == 0);
  }
  CHECK(blockDestroyed == 1);
  CHECK(a.cancelled());
  CHECK(b.cancelled());
  CHECK(time.timerIdle());
  time.advance(2000 * MS);
  CHECK(!blockResumed);
}

TEST_CASE("task group nested group failure propagates outward and cancels both levels") {
  ManualTime time;
  Probe outerSibling, innerSibling;
  bool blockContinued = false;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& outer) -> Task<void> {
    outer.start(sleeper(time.timer, 100 * MS, outerSibling));
    co_await openTaskGroup([&](TaskGroup& inner) -> kj::Promise<void> {
      inner.start(sleeper(time.timer, 100 * MS, innerSibling));
      inner.start(failer(time.timer, 10 * MS, kj::str("inner child broke")));
      return kj::READY_NOW;
    });
    blockContinued = true;
  });
  time.advance(10 * MS);
  KJ_IF_MAYBE(exception, time.outcome(done)) {
    CHECK(mentions(*exception, "inner child broke"));
  } else {
    FAIL("the inner failure was not raised");
  }
  CHECK(!blockContinued);
  CHECK(innerSibling.cancelled());
  CHECK(outerSibling.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("task group cancelling the outer group cancels the children of a nested group") {
  ManualTime time;
  Probe innerA, innerB;
  bool innerBlockResumed = false;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& outer) -> Task<void> {
    outer.start(openTaskGroup([&](TaskGroup& inner) -> Task<void> {
      inner.start(sleeper(time.timer, 100 * MS, innerA));
      inner.start(sleeper(time.timer, 200 * MS, innerB));
      co_await time.timer.afterDelay(1000 * MS);
      innerBlockResumed = true;
    }));
    co_await time.timer.afterDelay(10 * MS);
    outer.cancel();
  });
  time.advance(10 * MS);
  CHECK(time.outcome(done) == nullptr);
  CHECK(innerA.cancelled());
  CHECK(innerB.cancelled());
  CHECK(!innerBlockResumed);
  CHECK(time.timerIdle());
}

TEST_CASE("task group drops a task started after cancel") {
  ManualTime time;
  Probe late;
  size_t sizeAfterStart = 99;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    tg.cancel();
    tg.start(sleeper(time.timer, 10 * MS, late));
    sizeAfterStart = tg.size();
    return kj::READY_NOW;
  });
  CHECK(sizeAfterStart == 0);
  CHECK(late.cancelled());
  time.waitScope.poll();
  CHECK(time.outcome(done) == nullptr);
  CHECK(time.timerIdle());
}

TEST_CASE("task group refuses a start after it finished") {
  ManualTime time;
  TaskGroup* group = nullptr;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    group = &tg;
    return kj::READY_NOW;
  });
  REQUIRE(done.poll(time.waitScope));
  // The group's state lives until `done` is dropped, so the reference is still valid here.
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { group->start(kj::READY_NOW); })) {
    CHECK(mentions(*exception, "the group has finished"));
  } else {
    FAIL("start() on a finished group was accepted");
  }
  CHECK(time.outcome(done) == nullptr);
}

TEST_CASE("task group raises only the first of two failures in one turn") {
  ManualTime time;
  auto first = kj::newPromiseAndFulfiller<void>();
  auto second = kj::newPromiseAndFulfiller<void>();
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    tg.start(failWhenRejected(kj::mv(first.promise)));
    tg.start(failWhenRejected(kj::mv(second.promise)));
    return kj::READY_NOW;
  });
  time.waitScope.poll();
  // KJ runs the consequences of an event before older queued events, so the first failure
  // cancels the second task before its failure reaches the group.
  first.fulfiller->reject(KJ_EXCEPTION(FAILED, "first failure"));
  second.fulfiller->reject(KJ_EXCEPTION(FAILED, "second failure"));
  time.waitScope.poll();
  KJ_IF_MAYBE(exception, time.outcome(done)) {
    CHECK(exception->getDescription() == "first failure");
  } else {
    FAIL("no failure was raised");
  }
}

TEST_CASE("task group keeps the capturing block lambda alive while it runs") {
  ManualTime time;
  kj::String seen;
  kj::Promise<void> done = openTaskGroup(
      [&time, &seen, text = kj::str("captured text")](TaskGroup&) -> Task<void> {
        co_await time.timer.afterDelay(10 * MS);
        seen = kj::str(text);
      });
  time.advance(10 * MS);
  CHECK(time.outcome(done) == nullptr);
  CHECK(seen == "captured text");
}

// ---------------------------------------------------------------------------------------------
// Deadlines

TEST_CASE("moveOnAfter gives the value when the work completes in time") {
  ManualTime time;
  Probe probe;
  kj::Promise<kj::Maybe<int>> result =
      moveOnAfter(time.timer, 10 * MS, toPromise(slowValue(time.timer, 5 * MS, 7, probe)));
  time.advance(5 * MS);
  REQUIRE(result.poll(time.waitScope));
  KJ_IF_MAYBE(value, result.wait(time.waitScope)) {
    CHECK(*value == 7);
  } else {
    FAIL("moveOnAfter gave up on work that completed in time");
  }
  CHECK(probe.finished);
  CHECK(time.timerIdle());
}

TEST_CASE("moveOnAfter gives null and cancels the work when the deadline passes") {
  ManualTime time;
  Probe probe;
  kj::Promise<kj::Maybe<int>> result =
      moveOnAfter(time.timer, 10 * MS, toPromise(slowValue(time.timer, 20 * MS, 7, probe)));
  time.advance(10 * MS);
  REQUIRE(result.poll(time.waitScope));
  CHECK(result.wait(time.waitScope) == nullptr);
  CHECK(probe.cancelled());
  CHECK(time.timerIdle());
  time.advance(100 * MS);
  CHECK(!probe.finished);
}

TEST_CASE("moveOnAfter for void work reports completion and timeout") {
  ManualTime time;
  Probe quick, slow;
  kj::Promise<bool> inTime = moveOnAfter(time.timer, 10 * MS, sleeper(time.timer, 5 * MS, quick));
  kj::Promise<bool> late = moveOnAfter(time.timer, 10 * MS, sleeper(time.timer, 20 * MS, slow));
  time.advance(5 * MS);
  REQUIRE(inTime.poll(time.waitScope));
  CHECK(inTime.wait(time.waitScope));
  CHECK(quick.finished);
  time.advance(5 * MS);
  REQUIRE(late.poll(time.waitScope));
  CHECK(!late.wait(time.waitScope));
  CHECK(slow.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("moveOnAfter passes an error of the work through") {
  ManualTime time;
  kj::Promise<bool> result = moveOnAfter(time.timer, 10 * MS,
                                         failer(time.timer, 5 * MS, kj::str("work broke")));
  time.advance(5 * MS);
  REQUIRE(result.poll(time.waitScope));
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result.wait(time.waitScope); })) {
    CHECK(mentions(*exception, "work broke"));
  } else {
    FAIL("the work's error was swallowed");
  }
  CHECK(time.timerIdle());
}

TEST_CASE("failAfter raises TooSlowError and cancels the work") {
  ManualTime time;
  Probe probe;
  kj::Promise<int> result =
      failAfter(time.timer, 10 * MS, toPromise(slowValue(time.timer, 20 * MS, 7, probe)));
  time.advance(10 * MS);
  REQUIRE(result.poll(time.waitScope));
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result.wait(time.waitScope); })) {
    INFO("description: ", exception->getDescription().cStr());
    CHECK((exception->getType() == kj::Exception::Type::OVERLOADED));
    CHECK(exception->getDescription() == "tractor::TooSlowError: deadline of 10ms exceeded");
    CHECK(kj::StringPtr(exception->getFile()) == CXX_EXCEPTION_FILE);
    CHECK(isTooSlowError(*exception));
  } else {
    FAIL("failAfter did not fail");
  }
  CHECK(probe.cancelled());
  CHECK(time.timerIdle());
}

TEST_CASE("failAfter passes the outcome through when the work is in time") {
  ManualTime time;
  Probe valueProbe, voidProbe;
  kj::Promise<int> value =
      failAfter(time.timer, 10 * MS, toPromise(slowValue(time.timer, 5 * MS, 7, valueProbe)));
  kj::Promise<void> done = failAfter(time.timer, 10 * MS, sleeper(time.timer, 5 * MS, voidProbe));
  kj::Promise<void> broken =
      failAfter(time.timer, 10 * MS, failer(time.timer, 5 * MS, kj::str("work broke")));
  time.advance(5 * MS);
  CHECK(value.wait(time.waitScope) == 7);
  CHECK(time.outcome(done) == nullptr);
  KJ_IF_MAYBE(exception, time.outcome(broken)) {
    CHECK(mentions(*exception, "work broke"));
    CHECK(!isTooSlowError(*exception));
  } else {
    FAIL("the work's error was swallowed");
  }
  CHECK(voidProbe.finished);
  CHECK(time.timerIdle());
}

// ---------------------------------------------------------------------------------------------
// Shielded cleanup

TEST_CASE("shield passes the value and the error through when not cancelled") {
  ManualTime time;
  ShieldKeeper keeper;
  Probe probe;
  kj::Promise<int> value = shield(toPromise(slowValue(time.timer, 5 * MS, 3, probe)));
  kj::Promise<void> broken = shield(failer(time.timer, 5 * MS, kj::str("cleanup broke")));
  CHECK(keeper.pending() == 2);
  time.advance(5 * MS);
  CHECK(value.wait(time.waitScope) == 3);
  KJ_IF_MAYBE(exception, time.outcome(broken)) {
    CHECK(mentions(*exception, "cleanup broke"));
  } else {
    FAIL("the shielded error was not passed through");
  }
  CHECK(keeper.pending() == 0);
  CHECK(keeper.drain().poll(time.waitScope));
}

TEST_CASE("shielded cleanup runs to completion after its awaiter is cancelled") {
  ManualTime time;
  ShieldKeeper keeper;
  CleanupProbe cleanup;
  Probe worker;
  {
    kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
      tg.start(workThenCleanUp(time.timer, cleanup, worker));
      return kj::READY_NOW;
    });
    time.advance(10 * MS);
    CHECK(cleanup.started);
    time.advance(60 * MS);
    CHECK(cleanup.midway);
    CHECK(!cleanup.finished);
    // Cancellation arrives while the worker is inside the shielded section.
  }
  CHECK(worker.cancelled());
  CHECK(!cleanup.finished);
  CHECK(keeper.pending() == 1);
  kj::Promise<void> drained = keeper.drain();
  CHECK(!drained.poll(time.waitScope));

  // The cleanup's second timer was set at 70 ms, for 120 ms.
  time.advance(50 * MS);
  CHECK(cleanup.finished);
  CHECK(drained.poll(time.waitScope));
  drained.wait(time.waitScope);
  CHECK(keeper.pending() == 0);
  CHECK(!worker.finished);
  CHECK(time.timerIdle());
}

TEST_CASE("task group a shield holds a sibling failure's cancellation back until it is done") {
  // trio's semantics: the cancellation reaches a task at its next suspension outside the
  // shielded section, so the code right after the shield still runs.
  ManualTime time;
  ShieldKeeper keeper;
  CleanupProbe cleanup;
  Probe worker;
  kj::Promise<void> done = openTaskGroup([&](TaskGroup& tg) -> kj::Promise<void> {
    tg.start(workThenCleanUp(time.timer, cleanup, worker));
    tg.start(failer(time.timer, 30 * MS, kj::str("sibling broke")));
    return kj::READY_NOW;
  });
  time.advance(10 * MS);
  CHECK(cleanup.started);
  time.advance(20 * MS);
  // The sibling failed; the group waits for the shielded cleanup.
  CHECK(!done.poll(time.waitScope));
  time.advance(50 * MS);
  CHECK(cleanup.midway);
  CHECK(!cleanup.finished);
  CHECK(!done.poll(time.waitScope));
  time.advance(50 * MS);
  CHECK(cleanup.finished);
  CHECK(worker.finished);
  KJ_IF_MAYBE(exception, time.outcome(done)) {
    CHECK(mentions(*exception, "sibling broke"));
  } else {
    FAIL("the sibling's failure was not raised");
  }
  CHECK(keeper.drain().poll(time.waitScope));
}

TEST_CASE("shield without a ShieldKeeper is refused") {
  ManualTime time;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    auto promise = shield(kj::Promise<void>(kj::READY_NOW));
  })) {
    CHECK(mentions(*exception, "needs a ShieldKeeper"));
  } else {
    FAIL("shield() without a keeper was accepted");
  }
}

TEST_CASE("shielded work failing after its awaiter is gone is logged") {
  ManualTime time;
  LogCapture log;
  ShieldKeeper keeper;
  {
    kj::Promise<void> orphan = shield(failer(time.timer, 10 * MS, kj::str("orphan broke")));
    time.waitScope.poll();
  }
  time.advance(10 * MS);
  CHECK(keeper.pending() == 0);
  CHECK(log.contains("orphan broke"));
  CHECK(log.contains("awaiter was cancelled"));
}

TEST_CASE("only one ShieldKeeper may be installed per thread") {
  ManualTime time;
  {
    ShieldKeeper keeper;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([]() { ShieldKeeper second; })) {
      CHECK(mentions(*exception, "already installed"));
    } else {
      FAIL("a second keeper was installed");
    }
  }
  ShieldKeeper again;
  kj::Promise<void> promise = shield(kj::Promise<void>(kj::READY_NOW));
  CHECK(time.outcome(promise) == nullptr);
}

TEST_CASE("destroying a ShieldKeeper cancels pending work and rejects drain") {
  ManualTime time;
  LogCapture log;
  Probe probe;
  kj::Promise<void> awaiter = nullptr;
  kj::Promise<void> drained = nullptr;
  {
    ShieldKeeper keeper;
    awaiter = shield(sleeper(time.timer, 10 * MS, probe));
    drained = keeper.drain();
    time.waitScope.poll();
  }
  CHECK(probe.cancelled());
  CHECK(log.contains("ShieldKeeper destroyed"));
  CHECK(time.outcome(awaiter) != nullptr);
  KJ_IF_MAYBE(exception, time.outcome(drained)) {
    CHECK(mentions(*exception, "ShieldKeeper destroyed"));
  } else {
    FAIL("drain() resolved although the work was cancelled");
  }
  CHECK(time.timerIdle());
}

// ---------------------------------------------------------------------------------------------
// startAndWait (trio's nursery.start)

TEST_CASE("task group startAndWait gives the started value while the task goes on") {
  ManualTime time;
  Probe probe;
  int started = 0;
  auto group = openTaskGroup([&](TaskGroup& g) -> kj::Promise<void> {
    return g.startAndWait<int>([&](TaskStatus<int>& status) -> kj::Promise<void> {
              return time.timer.afterDelay(5 * MS).then([&]() -> kj::Promise<void> {
                status.started(42);
                return sleeper(time.timer, 10 * MS, probe);
              });
            })
        .then([&](int value) { started = value; });
  });
  time.advance(5 * MS);
  CHECK(started == 42);
  CHECK(!probe.finished);
  CHECK(!group.poll(time.waitScope));
  time.advance(10 * MS);
  CHECK(probe.finished);
  CHECK(time.outcome(group) == nullptr);
}

TEST_CASE("task group startAndWait raises an error from before started and not the group") {
  ManualTime time;
  kj::Maybe<kj::Exception> seen;
  auto group = openTaskGroup([&](TaskGroup& g) -> kj::Promise<void> {
    return g.startAndWait<void>([&](TaskStatus<void>&) {
              return failer(time.timer, 1 * MS, kj::str("not ready"));
            })
        .catch_([&](kj::Exception&& e) { seen = kj::mv(e); });
  });
  time.advance(1 * MS);
  KJ_IF_MAYBE(e, seen) {
    CHECK(mentions(*e, "not ready"));
  } else {
    FAIL("startAndWait did not raise");
  }
  CHECK(time.outcome(group) == nullptr);
}

TEST_CASE("task group startAndWait of a task that never calls started raises TaskNotStarted") {
  ManualTime time;
  kj::Maybe<kj::Exception> returned;
  auto group = openTaskGroup([&](TaskGroup& g) -> kj::Promise<void> {
    return g.startAndWait<int>([](TaskStatus<int>&) -> kj::Promise<void> { return kj::READY_NOW; })
        .then([](int) {}, [&](kj::Exception&& e) { returned = kj::mv(e); });
  });
  CHECK(time.outcome(group) == nullptr);
  KJ_IF_MAYBE(e, returned) {
    CHECK(mentions(*e, "tractor::TaskNotStarted: the task returned without calling started()"));
  } else {
    FAIL("no error for the task that returned");
  }
}

TEST_CASE("task group startAndWait of a task cancelled before started raises TaskNotStarted") {
  ManualTime time;
  kj::Maybe<kj::Exception> cancelled;
  Probe probe;
  auto group = openTaskGroup([&](TaskGroup& g) -> kj::Promise<void> {
    g.startAndWait<int>([&](TaskStatus<int>&) { return sleeper(time.timer, 10 * MS, probe); })
        .then([](int) {}, [&](kj::Exception&& e) { cancelled = kj::mv(e); })
        .detach([](kj::Exception&&) {});
    return time.timer.afterDelay(1 * MS).then([&g]() { g.cancel(); });
  });
  time.advance(1 * MS);
  CHECK(time.outcome(group) == nullptr);
  KJ_IF_MAYBE(e, cancelled) {
    CHECK(mentions(*e, "cancelled before it called started()"));
  } else {
    FAIL("no error for the cancelled task");
  }
  CHECK(probe.cancelled());
}

// ---------------------------------------------------------------------------------------------
// Cancel scopes

kj::Exception cancelled(kj::StringPtr why) { return KJ_EXCEPTION(FAILED, "cancelled", why); }

void advanceInSteps(ManualTime& time, kj::Duration total) {
  // Timers that a timer's callback sets fire in the same span.
  for (kj::Duration passed = 0 * MS; passed < total; passed += 10 * MS) time.advance(10 * MS);
}

kj::Function<kj::Exception()> abandonedReason() {
  return []() { return KJ_EXCEPTION(FAILED, "abandoned"); };
}

struct DestructorCleanup {
  // Lives in a task's frame: when destroyed (the task was dropped), it shields a cleanup that
  // takes 20 ms and then, if asked, fails.
  kj::Timer& timer;
  bool fail;
  CleanupProbe& probe;
  ~DestructorCleanup() noexcept(false) {
    auto work = cleanUpSlowly(timer, probe);
    kj::Promise<void> cleanup = fail ? toPromise(kj::mv(work)).then([]() -> kj::Promise<void> {
      return KJ_EXCEPTION(FAILED, "cleanup broke");
    })
                                     : toPromise(kj::mv(work));
    (void)shield(kj::mv(cleanup));
  }
};

Task<void> sleepWithCleanup(kj::Timer& timer, CleanupProbe& cleanup, bool fail) {
  DestructorCleanup onDrop{timer, fail, cleanup};
  co_await timer.afterDelay(1000 * MS);
}

Task<int> failAfterShieldedCleanup(kj::Timer& timer, CleanupProbe& cleanup) {
  co_await timer.afterDelay(5 * MS);
  co_await shield(cleanUpSlowly(timer, cleanup));
  // Runs even though the scope was cancelled during the shielded section.
  KJ_FAIL_REQUIRE("the real error after the cleanup");
}

TEST_CASE("cancel scope cancel drops the task in a later turn and raises the reason") {
  ManualTime time;
  ShieldKeeper keeper;
  Probe probe;
  auto scope = kj::refcounted<CancelScope>();
  kj::Promise<void> result = scope->run([&]() { return sleeper(time.timer, 10 * MS, probe); },
                                        abandonedReason());
  scope->cancel(cancelled("by the test"));
  CHECK(scope->cancelCalled());
  CHECK(!probe.cancelled());
  time.waitScope.poll();
  CHECK(probe.cancelled());
  CHECK(scope->cancelledCaught());
  KJ_IF_MAYBE(e, time.outcome(result)) {
    CHECK(mentions(*e, "by the test"));
  } else {
    FAIL("no error");
  }
  CHECK(time.timerIdle());
}

TEST_CASE("cancel scope a shield holds the cancellation back and the real error wins") {
  ManualTime time;
  ShieldKeeper keeper;
  CleanupProbe cleanup;
  auto scope = kj::refcounted<CancelScope>();
  kj::Promise<int> result =
      scope->run([&]() { return failAfterShieldedCleanup(time.timer, cleanup); },
                 abandonedReason());
  time.advance(5 * MS);
  CHECK(cleanup.started);
  scope->cancel(cancelled("during the cleanup"));
  time.advance(60 * MS);
  CHECK(cleanup.midway);
  CHECK(!result.poll(time.waitScope));
  time.advance(50 * MS);
  CHECK(cleanup.finished);
  CHECK(!scope->cancelledCaught());
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { result.wait(time.waitScope); })) {
    CHECK(mentions(*e, "the real error after the cleanup"));
  } else {
    FAIL("no error");
  }
}

TEST_CASE("cancel scope waits for the cleanup its drop sets off and raises its error") {
  ManualTime time;
  ShieldKeeper keeper;
  for (bool fail: {false, true}) {
    CleanupProbe cleanup;
    auto scope = kj::refcounted<CancelScope>();
    kj::Promise<void> result = scope->run(
        [&]() { return sleepWithCleanup(time.timer, cleanup, fail); }, abandonedReason());
    time.advance(1 * MS);
    scope->cancel(cancelled("by the test"));
    time.waitScope.poll();
    CHECK(cleanup.started);
    CHECK(!result.poll(time.waitScope));
    advanceInSteps(time, 100 * MS);
    CHECK(cleanup.finished);
    KJ_IF_MAYBE(e, time.outcome(result)) {
      CHECK(mentions(*e, fail ? "cleanup broke"_kj : "by the test"_kj));
    } else {
      FAIL("no error");
    }
  }
  CHECK(time.timerIdle());
}

TEST_CASE("cancel scope cancelling a scope cancels the scopes nested in it") {
  ManualTime time;
  ShieldKeeper keeper;
  Probe inner;
  auto outer = kj::refcounted<CancelScope>();
  kj::Promise<void> innerResult = nullptr;
  kj::Promise<void> outerResult = outer->run(
      [&]() -> kj::Promise<void> {
        auto nested = kj::refcounted<CancelScope>();
        CHECK(&KJ_ASSERT_NONNULL(nested->enclosing()) == outer.get());
        innerResult = nested->run([&]() { return sleeper(time.timer, 10 * MS, inner); },
                                  abandonedReason());
        return kj::NEVER_DONE;
      },
      abandonedReason());
  outer->cancel(cancelled("outer"));
  time.waitScope.poll();
  CHECK(inner.cancelled());
  KJ_IF_MAYBE(e, time.outcome(innerResult)) {
    CHECK(mentions(*e, "outer"));
  } else {
    FAIL("the nested scope was not cancelled");
  }
  CHECK(time.outcome(outerResult) != nullptr);
}

TEST_CASE("cancel scope an abandoned task is cancelled and kept until it ended") {
  ManualTime time;
  ShieldKeeper keeper;
  CleanupProbe cleanup;
  auto scope = kj::refcounted<CancelScope>();
  {
    kj::Promise<int> result =
        scope->run([&]() { return failAfterShieldedCleanup(time.timer, cleanup); },
                   abandonedReason());
    time.advance(5 * MS);
  }
  // Abandoned inside its shielded section: it goes on, and its error goes to whoever dropped it
  // (here: nobody collects, so it is logged).
  LogCapture log;
  CHECK(scope->cancelCalled());
  CHECK(keeper.pending() >= 1);
  advanceInSteps(time, 200 * MS);
  CHECK(cleanup.finished);
  CHECK(keeper.pending() == 0);
  CHECK(log.contains("the real error after the cleanup"));
}

TEST_CASE("shield keeper collect reports the cleanup a drop sets off") {
  ManualTime time;
  ShieldKeeper keeper;
  CleanupProbe cleanup;
  kj::Maybe<kj::Promise<void>> task =
      kj::Promise<void>(sleepWithCleanup(time.timer, cleanup, true));
  time.waitScope.poll();
  kj::Promise<void> collected = keeper.collect([&]() { task = nullptr; });
  CHECK(cleanup.started);
  CHECK(!collected.poll(time.waitScope));
  advanceInSteps(time, 100 * MS);
  KJ_IF_MAYBE(e, time.outcome(collected)) {
    CHECK(mentions(*e, "cleanup broke"));
  } else {
    FAIL("the cleanup's error was not collected");
  }
  // A drop that sets nothing off is done at once.
  CHECK(keeper.collect([]() {}).poll(time.waitScope));
}

class Recorder final: public IdleHook {
  // An idle hook that writes its name down when it runs (and can arm another hook, or throw).
public:
  Recorder(kj::Vector<kj::String>& out, kj::StringPtr name): out(out), name(name) {}
  kj::Maybe<IdleHook&> armOnIdle;
  bool throwOnIdle = false;

private:
  kj::Vector<kj::String>& out;
  kj::StringPtr name;
  void idle() override {
    out.add(kj::str(name));
    KJ_IF_MAYBE(h, armOnIdle) {
      h->arm();
    }
    if (throwOnIdle) KJ_FAIL_REQUIRE("an idle hook broke");
  }
};

std::string joined(kj::Vector<kj::String>& names) { return kj::strArray(names, " ").cStr(); }

TEST_CASE("idle hooks run once the loop is idle, in the order armed, before that round's whenIdle()") {
  ManualTime time;
  kj::Vector<kj::String> ran;
  Recorder a(ran, "a"), b(ran, "b");
  b.arm();
  auto w = whenIdle().then([&]() { ran.add(kj::str("w")); }).eagerlyEvaluate(nullptr);
  a.arm();
  a.arm();  // once per round
  auto later = kj::evalLater([&]() { ran.add(kj::str("later")); }).eagerlyEvaluate(nullptr);
  CHECK(a.armed());
  CHECK(ran.size() == 0);
  time.waitScope.poll();
  // A hook is called; a whenIdle() promise of the same round is fulfilled then, so its
  // continuation runs right after the round.
  CHECK(joined(ran) == "later b a w");
  CHECK(!a.armed());
  CHECK(!b.armed());
}

TEST_CASE("an idle hook armed while a round runs waits for the next idle point") {
  ManualTime time;
  kj::Vector<kj::String> ran;
  Recorder a(ran, "a"), b(ran, "b");
  a.armOnIdle = b;
  a.arm();
  kj::Promise<void> second = nullptr;
  auto first = whenIdle().then([&]() {
    ran.add(kj::str("w"));
    second = whenIdle().then([&]() { ran.add(kj::str("w2")); }).eagerlyEvaluate(nullptr);
  }).eagerlyEvaluate(nullptr);
  time.waitScope.poll();
  CHECK(joined(ran) == "a w b w2");
}

TEST_CASE("a destroyed idle hook is not called, and a throwing one does not stop the round") {
  ManualTime time;
  LogCapture log;
  kj::Vector<kj::String> ran;
  Recorder c(ran, "c");
  {
    Recorder gone(ran, "gone");
    gone.arm();
  }
  Recorder broken(ran, "broken");
  broken.throwOnIdle = true;
  broken.arm();
  c.arm();
  time.waitScope.poll();
  CHECK(joined(ran) == "broken c");
  CHECK(log.contains("an idle hook broke"));
}

TEST_CASE("an idle hook still armed when its event loop goes runs on the thread's next loop") {
  kj::Vector<kj::String> ran;
  Recorder a(ran, "a");
  {
    ManualTime time;
    a.arm();
  }
  CHECK(a.armed());
  ManualTime time;
  Recorder b(ran, "b");
  b.arm();
  time.waitScope.poll();
  CHECK(joined(ran) == "a b");
}

}  // TEST_SUITE("unit")

}  // namespace tractor
