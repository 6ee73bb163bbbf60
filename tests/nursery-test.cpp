// The actor nursery: nesting, one-cancels-all, error propagation, teardown and reaping.

#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>
#include <stdexcept>
#include "tractor/supervise/main.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"

namespace {

using tractor::ActorNursery;
using tractor::Portal;
using tractor::Task;
using tractor::test::contains;

int64_t leaf(int64_t x) { return x + 1; }
TRACTOR_EXPOSE(nursery_test, leaf);

Task<int64_t> descend(int64_t depth) {
  // Each level spawns the next in a nursery of its own; the leaf adds one.
  int64_t result = 0;
  co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
    if (depth <= 1) {
      Portal p = co_await n.runInActor(leaf, 0);
      result = co_await p.waitForResult<int64_t>() + 1;
    } else {
      Portal p = co_await n.runInActor(descend, depth - 1);
      result = co_await p.waitForResult<int64_t>() + 1;
    }
  });
  co_return result;
}
TRACTOR_EXPOSE(nursery_test, descend);

void boom(kj::String why) { throw std::invalid_argument(why.cStr()); }
TRACTOR_EXPOSE(nursery_test, boom);

Task<void> descendAndFail(int64_t depth) {
  // A chain of supervisors whose leaf fails: each level's nursery raises the error it got.
  co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
    if (depth <= 1) {
      co_await n.runInActor(boom, "deep down");
    } else {
      co_await n.runInActor(descendAndFail, depth - 1);
    }
  });
}
TRACTOR_EXPOSE(nursery_test, descendAndFail);

Task<void> sleepLong() {
  co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
}
TRACTOR_EXPOSE(nursery_test, sleepLong);

Task<void> exitAbruptly(bool whileStarting) {
  // Dies without a word: during the spawn handshake, or once it is running.
  if (!whileStarting) co_await kj::evalLater([]() {});
  _exit(3);
}
TRACTOR_EXPOSE(nursery_test, exitAbruptly);

void blockForever() {
  // A blocking, non-cancellable call: the actor's event loop never runs again.
  for (;;) pause();
}
TRACTOR_EXPOSE(nursery_test, blockForever);

kj::Maybe<kj::Promise<void>> stuckSubtree;
// In a middle actor: the nursery holding a stuck grandchild, kept as a task of the actor.

Task<int64_t> startStuckGrandchild() {
  // Starts a grandchild and sends it into a blocking call; returns its pid. The call is queued
  // on the grandchild's connection ahead of anything this actor sends it later.
  auto paf = kj::newPromiseAndFulfiller<int64_t>();
  auto fulfiller = kj::mv(paf.fulfiller);
  stuckSubtree = tractor::Actor::current()
                     .wrapTask(tractor::openNursery([&fulfiller](ActorNursery& n) -> Task<void> {
                       Portal p = co_await n.startActor("stuck", tractor::enable("nursery_test"));
                       auto stuck = p.run(blockForever).eagerlyEvaluate(nullptr);
                       fulfiller->fulfill(p.actorId().pid);
                       co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
                     }))
                     .eagerlyEvaluate(nullptr);
  co_return co_await kj::mv(paf.promise);
}
TRACTOR_EXPOSE(nursery_test, startStuckGrandchild);

tractor::test::Gauge shielded;
// In a child: its main task is inside its shielded cleanup.

Task<void> failAfterShieldedCleanup() {
  // Its cleanup is shielded: a cancellation arriving meanwhile lets it finish, and the error it
  // then raises is the task's outcome.
  co_await tractor::shield(kj::evalLater([]() { shielded.add(); })
                               .then([]() {
                                 return tractor::Actor::current().timer().afterDelay(
                                     100 * kj::MILLISECONDS);
                               }));
  throw std::logic_error("failed after its cleanup");
}
TRACTOR_EXPOSE(nursery_test, failAfterShieldedCleanup);

Task<void> waitUntilShielded() { co_await shielded.atLeast(1); }
TRACTOR_EXPOSE(nursery_test, waitUntilShielded);

Task<void> failAfterMs(int64_t ms) {
  // tractor's `assert_err(delay)`: a job that fails a while after it started.
  co_await tractor::Actor::current().timer().afterDelay(ms * kj::MILLISECONDS);
  throw std::logic_error("failed late");
}
TRACTOR_EXPOSE(nursery_test, failAfterMs);

using tractor::test::runAuditedRoot;

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("nurseries nest three levels deep") {
    int64_t result = 0;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.runInActor(descend, 3);
        result = co_await p.waitForResult<int64_t>();
      });
    });
    CHECK(error == nullptr);
    CHECK(result == 4);
  }

  TEST_CASE("a failing run in actor child raises its error from the nursery") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        co_await n.runInActor(boom, "bad input");
      });
    });
    KJ_IF_MAYBE(e, error) {
      KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
        CHECK(r->boxedType == "std::invalid_argument");
        CHECK(r->message == "bad input");
        CHECK(r->src.name == "boom");
      } else {
        FAIL("not a remote error: ", e->getDescription().cStr());
      }
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("an error relayed through two supervisors keeps its source and names every hop") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        co_await n.runInActor(descendAndFail, 2);
      });
    });
    KJ_IF_MAYBE(e, error) {
      KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
        CHECK(r->boxedType == "RemoteActorError");
        CHECK(r->srcType == "std::invalid_argument");
        CHECK(r->message == "deep down");
        CHECK(r->src.name == "boom");
        REQUIRE(r->relayPath.size() == 3);
        CHECK(r->relayPath[0].name == "boom");
        CHECK(r->relayPath[1].name == "descendAndFail");
        CHECK(r->relayPath[2].name == "descendAndFail");
        CHECK(r->relayPath[1].pid != r->relayPath[2].pid);
        CHECK(r->isInception());
      } else {
        FAIL("not a remote error: ", e->getDescription().cStr());
      }
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("an error relayed from depth three names all four hops") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        co_await n.runInActor(descendAndFail, 3);
      });
    });
    KJ_IF_MAYBE(e, error) {
      KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
        CHECK(r->srcType == "std::invalid_argument");
        CHECK(r->relayPath.size() == 4);
      } else {
        FAIL("not a remote error: ", e->getDescription().cStr());
      }
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("a failing call to a daemon among sleeping actors cancels them all") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        for (int i = 0; i < 3; i++) co_await n.runInActor(sleepLong);
        co_await n.startActor("calm", tractor::enable("nursery_test"));
        Portal failing = co_await n.startActor("failing", tractor::enable("nursery_test"));
        // Not caught: the block fails, and with it the whole nursery.
        co_await failing.run(boom, "daemon call failed");
      });
    });
    KJ_IF_MAYBE(e, error) {
      CHECK(tractor::isRemoteError(*e, "std::invalid_argument"));
      CHECK(contains(e->getDescription(), "daemon call failed"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("an error while children are still being spawned tears every one of them down") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        // Spawned, not awaited: the block fails while their handshakes are in flight.
        kj::Vector<kj::Promise<Portal>> starting;
        for (int i = 0; i < 4; i++) starting.add(n.runInActor(sleepLong));
        for (int i = 0; i < 2; i++) {
          starting.add(n.startActor(kj::str("half", i), tractor::enable("nursery_test")));
        }
        CHECK(n.childCount() == 6);
        KJ_FAIL_REQUIRE("failed during spawning");
        co_return;
      });
    });
    KJ_IF_MAYBE(e, error) {
      CHECK(contains(e->getDescription(), "failed during spawning"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("one failure cancels the sibling actors and the block") {
    bool blockFinished = false;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        co_await n.startActor("daemon", tractor::enable("nursery_test"));
        co_await n.runInActor(sleepLong);
        co_await n.runInActor(boom, "first");
        // The failure cancels the block while it waits here.
        co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
        blockFinished = true;
      });
    });
    CHECK(!blockFinished);
    KJ_IF_MAYBE(e, error) {
      CHECK(tractor::isRemoteError(*e, "std::invalid_argument"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("two failures raise an error group naming both") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        // Both are spawned in the same turn, so both fail before either can be cancelled.
        co_await kj::joinPromises(kj::arr(n.runInActor(boom, "left"), n.runInActor(boom, "right")));
        co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
      });
    });
    KJ_IF_MAYBE(e, error) {
      auto desc = e->getDescription();
      CHECK(contains(desc, tractor::ERROR_GROUP));
      CHECK(contains(desc, "left"));
      CHECK(contains(desc, "right"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("an error in the block tears down every child") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        co_await n.startActor("one", tractor::enable("nursery_test"));
        co_await n.startActor("two", tractor::enable("nursery_test"));
        KJ_FAIL_REQUIRE("block failed on purpose");
      });
    });
    KJ_IF_MAYBE(e, error) {
      CHECK(contains(e->getDescription(), "block failed on purpose"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("a child that exits on its own is an ActorFailure") {
    bool whileStarting = false;
    SUBCASE("once running") { whileStarting = false; }
    SUBCASE("while starting") { whileStarting = true; }
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        co_await n.runInActor(exitAbruptly, whileStarting);
      });
    });
    KJ_IF_MAYBE(e, error) {
      INFO(doctest::String(e->getDescription().cStr()));
      CHECK(contains(e->getDescription(), tractor::ACTOR_FAILURE));
      CHECK(contains(e->getDescription(), "exited with status 3"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("nursery cancel tears down children and is reported") {
    bool called = false;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("daemon", tractor::enable("nursery_test"));
        CHECK(co_await p.run(leaf, 1) == 2);
        CHECK(!n.cancelCalled());
        CHECK(!n.cancelledCaught());
        co_await n.cancel();
        called = n.cancelCalled();
        CHECK(n.cancelledCaught());
        auto after = co_await p.run(leaf, 1).then([](int64_t) { return false; },
                                                  [](kj::Exception&&) { return true; });
        CHECK(after);
      });
    });
    CHECK(error == nullptr);
    CHECK(called);
  }

  TEST_CASE("cancelling the enclosing scope still reaps every child") {
    auto error = runAuditedRoot([]() -> Task<void> {
      auto& timer = tractor::Actor::current().timer();
      bool done = co_await tractor::moveOnAfter(
          timer, 200 * kj::MILLISECONDS,
          tractor::openNursery([](ActorNursery& n) -> Task<void> {
            co_await n.startActor("a", tractor::enable("nursery_test"));
            co_await n.runInActor(sleepLong);
            co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
          }));
      CHECK(!done);
    });
    // runAsRoot waited for the shielded teardown; the audit proves nothing is left.
    CHECK(error == nullptr);
  }

  TEST_CASE("a child stuck in a blocking call is too slow to cancel and is killed by the ladder") {
    bool tooSlow = false;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("stuck", tractor::enable("nursery_test"));
        // Started, not awaited: the call blocks the child for good.
        auto stuck = p.run(blockForever).eagerlyEvaluate(nullptr);
        // A round trip behind it cannot complete either; the cancel request is not answered.
        tooSlow = co_await p.cancelActor(50 * kj::MILLISECONDS, true)
                      .then([](bool) { return false; },
                            [](kj::Exception&& e) {
                              return contains(e.getDescription(), tractor::ACTOR_TOO_SLOW);
                            });
        // The scope's end climbs the ladder: cancel, close, SIGTERM. Only a signal can end this
        // child, so the scope returning at all proves it was killed.
      });
    });
    CHECK(tooSlow);
    CHECK(error == nullptr);
  }

  TEST_CASE("a grandchild stuck in a blocking call is killed and the tree still comes down") {
    pid_t grandchild = 0;
    auto error = runAuditedRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal middle = co_await n.startActor("middle", tractor::enable("nursery_test"));
        grandchild = static_cast<pid_t>(co_await middle.run(startStuckGrandchild));
        KJ_FAIL_REQUIRE("root gives up");
      });
    });
    KJ_IF_MAYBE(e, error) {
      CHECK(contains(e->getDescription(), "root gives up"));
    } else {
      FAIL("the nursery did not raise");
    }
    // The middle actor reaped it (the audit found no orphan); the pid is gone.
    CHECK(grandchild > 0);
    CHECK(kill(grandchild, 0) != 0);
  }

  TEST_CASE("hard kill skips the graceful request") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        co_await n.startActor("doomed", tractor::enable("nursery_test"));
        co_await n.cancel(true);
      });
    });
    CHECK(error == nullptr);
  }

  TEST_CASE("a child failing while it is being cancelled is in the group") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.runInActor(failAfterShieldedCleanup);
        co_await p.run(waitUntilShielded);
        throw std::runtime_error("the block failed");
      });
    });
    KJ_IF_MAYBE(e, error) {
      KJ_IF_MAYBE(group, tractor::ErrorGroup::from(*e)) {
        REQUIRE(group->members.size() == 2);
        CHECK(tractor::errorTypeName(group->members[0]) == "std::runtime_error");
        auto child = KJ_ASSERT_NONNULL(tractor::RemoteActorError::from(group->members[1]));
        CHECK(child.boxedType == "std::logic_error");
        CHECK(child.message == "failed after its cleanup");
      } else {
        FAIL("not a group: ", e->getDescription().cStr());
      }
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("the block raising a child's error again is one failure") {
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.runInActor(boom, "once");
        co_await p.waitForResult();
      });
    });
    KJ_IF_MAYBE(e, error) {
      CHECK(tractor::ErrorGroup::from(*e) == nullptr);
      CHECK(tractor::isRemoteError(*e, "std::invalid_argument"));
    } else {
      FAIL("the nursery did not raise");
    }
  }

  TEST_CASE("a run in actor child still running after the failure grace is cancelled") {
    kj::Duration took = 0 * kj::SECONDS;
    kj::Own<ActorNursery> kept;
    bool cancelCalled = false;
    bool cancelledCaught = false;
    auto error = runAuditedRoot([&]() {
      auto& timer = tractor::Actor::current().timer();
      auto start = timer.now();
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
               kept = n.addRef();
               co_await n.runInActor(sleepLong);
               co_await n.runInActor(boom, "alone");
             })
          .then([]() {}, [&, start](kj::Exception&& e) {
            took = timer.now() - start;
            // Read after the block; handles do not outlive the actor.
            cancelCalled = kept->cancelCalled();
            cancelledCaught = kept->cancelledCaught();
            kept = nullptr;
            kj::throwFatalException(kj::mv(e));
          });
    });
    KJ_IF_MAYBE(e, error) {
      // The sleeper's cancellation is not a failure.
      CHECK(tractor::ErrorGroup::from(*e) == nullptr);
      CHECK(tractor::isRemoteError(*e, "std::invalid_argument"));
    } else {
      FAIL("the nursery did not raise");
    }
    CHECK(took >= tractor::FAILURE_GRACE);
    CHECK(cancelCalled);
    CHECK(cancelledCaught);
  }

  TEST_CASE("the block re-raising a subtree's error gives the other children their grace") {
    // The error comes through a runInActor child from deeper down: it is that child's failure,
    // so the sibling failing a little later still joins the group.
    auto error = runAuditedRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal relaying = co_await n.runInActor(descendAndFail, 2);
        co_await n.runInActor(failAfterMs, 200);
        co_await relaying.waitForResult();
      });
    });
    KJ_IF_MAYBE(e, error) {
      KJ_IF_MAYBE(group, tractor::ErrorGroup::from(*e)) {
        // Members come in the order the failures arrived; which is first depends on how fast
        // the grandchildren spawn, so only the set is checked.
        REQUIRE(group->members.size() == 2);
        bool first = tractor::isRemoteError(group->members[0], "std::invalid_argument");
        CHECK(tractor::isRemoteError(group->members[first ? 0 : 1], "std::invalid_argument"));
        CHECK(tractor::isRemoteError(group->members[first ? 1 : 0], "std::logic_error"));
      } else {
        FAIL("not a group: ", e->getDescription().cStr());
      }
    } else {
      FAIL("the nursery did not raise");
    }
  }
}
