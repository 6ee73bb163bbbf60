// Portal::run, runInActor results and errors across real processes.

#include <doctest/doctest.h>
#include <unistd.h>
#include <map>
#include <stdexcept>
#include <vector>
#include "tractor/supervise/main.h"
#include "tests/support/leak-audit.h"

namespace {

using tractor::ActorNursery;
using tractor::Portal;
using tractor::Task;

using tractor::test::contains;

std::vector<int64_t> oneTwoThree() {
  // Braced lists cannot appear inside coroutines with g++ 12.
  return {1, 2, 3};
}

int64_t add(int64_t a, int64_t b) { return a + b; }
TRACTOR_EXPOSE(portal_test, add);

int64_t pid() { return getpid(); }
TRACTOR_EXPOSE(portal_test, pid);

kj::String greet(kj::String name, std::vector<int64_t> counts) {
  int64_t total = 0;
  for (auto c: counts) total += c;
  return kj::str("hello ", name, " x", total);
}
TRACTOR_EXPOSE(portal_test, greet);

std::map<std::string, std::vector<double>> table(std::optional<double> scale) {
  double s = scale.value_or(1.0);
  return {{"a", {1 * s, 2 * s}}, {"b", {}}};
}
TRACTOR_EXPOSE(portal_test, table);

void fail(kj::String why) { throw std::runtime_error(why.cStr()); }
TRACTOR_EXPOSE(portal_test, fail);

uint64_t length(std::string text) { return text.size(); }
TRACTOR_EXPOSE(portal_test, length);

int64_t hidden(int64_t x) { return x; }
// Not exposed.

Task<int64_t> slowDouble(int64_t x) {
  co_await tractor::Actor::current().timer().afterDelay(10 * kj::MILLISECONDS);
  co_return x * 2;
}
TRACTOR_EXPOSE(portal_test, slowDouble);

kj::String whoAmI() {
  auto& actor = tractor::Actor::current();
  return kj::str(actor.id().name, ' ', actor.id().uuid.size(), ' ',
                 actor.isRoot() ? "root" : "child",
                 ' ', actor.parent() == nullptr ? "orphan" : "has-parent");
}
TRACTOR_EXPOSE(portal_test, whoAmI);

int64_t cancelledCount = 0;
// In a child: how many `sleepForever` calls were cancelled (their frames destroyed).

Task<void> sleepForever() {
  struct Counter {
    ~Counter() { cancelledCount++; }
  } counter;
  co_await tractor::Actor::current().timer().afterDelay(3600 * kj::SECONDS);
}
TRACTOR_EXPOSE(portal_test, sleepForever);

int64_t getCancelledCount() { return cancelledCount; }
TRACTOR_EXPOSE(portal_test, getCancelledCount);

int64_t parentAdd(int64_t a, int64_t b) { return a + b + 1000; }
TRACTOR_EXPOSE(portal_parent, parentAdd);

Task<int64_t> callParent(int64_t a) {
  // Runs in a child: calls back into the root through the parent portal.
  KJ_IF_MAYBE(parent, tractor::Actor::current().parent()) {
    co_return co_await parent->run(parentAdd, a, 1);
  }
  KJ_FAIL_REQUIRE("no parent");
}
TRACTOR_EXPOSE(portal_test, callParent);

template <typename Func>
void inRoot(Func&& body) {
  tractor::test::LeakAudit audit;
  tractor::runAsRoot(kj::fwd<Func>(body), tractor::RootOptions().enable("portal_parent"));
  audit.check();
}

kj::Exception remoteFailure(kj::Function<kj::Promise<void>(Portal&)> call) {
  // Runs `call` against a fresh daemon and returns the error it raised.
  kj::Maybe<kj::Exception> caught;
  inRoot([&]() {
    return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("errs", tractor::enable("portal_test"));
      caught = co_await call(p).then([]() -> kj::Maybe<kj::Exception> { return nullptr; },
                                     [](kj::Exception&& e) -> kj::Maybe<kj::Exception> {
                                       return kj::mv(e);
                                     });
    });
  });
  KJ_IF_MAYBE(e, caught) {
    return kj::mv(*e);
  }
  FAIL("the call did not fail");
  KJ_UNREACHABLE;
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("portal run returns values of several types") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("worker", tractor::enable("portal_test"));
        CHECK(co_await p.run(add, 40, 2) == 42);
        CHECK(co_await p.run(greet, "ann", oneTwoThree()) == "hello ann x6");
        auto t = co_await p.run(table, 2.0);
        CHECK(t["a"] == std::vector<double>{2.0, 4.0});
        CHECK(t["b"].empty());
        CHECK(co_await p.run(slowDouble, 21) == 42);
        int64_t childPid = co_await p.run(pid);
        CHECK(childPid != getpid());
        CHECK(p.actorId().pid == static_cast<uint32_t>(childPid));
        CHECK(co_await p.run(whoAmI) == "worker 36 child has-parent");
      });
    });
  }

  TEST_CASE("portal run by module and function name") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("byname", tractor::enable("portal_test"));
        tractor::Value v = co_await p.run("portal_test", "add", 1, 2);
        CHECK(v.as<int64_t>() == 3);
        CHECK(co_await p.run<int64_t>("portal_test", "add", 5, 5) == 10);
      });
    });
  }

  TEST_CASE("many calls in flight at once") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("busy", tractor::enable("portal_test"));
        kj::Vector<kj::Promise<int64_t>> calls;
        for (int64_t i = 0; i < 200; i++) calls.add(p.run(add, i, i));
        auto results = co_await kj::joinPromises(calls.releaseAsArray());
        for (auto i: kj::indices(results)) CHECK(results[i] == static_cast<int64_t>(2 * i));
      });
    });
  }

  TEST_CASE("a remote exception comes back as a RemoteActorError") {
    auto e = remoteFailure([](Portal& p) { return p.run(fail, "kaboom"); });
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(e)) {
      CHECK(r->boxedType == "std::runtime_error");
      CHECK(r->srcType == "std::runtime_error");
      CHECK(r->message == "kaboom");
      CHECK(r->src.name == "errs");
      CHECK(r->src.pid != static_cast<uint32_t>(getpid()));
      CHECK(r->src.uuid.size() == 36);
      CHECK(r->relayPath.size() == 1);
      CHECK(r->remoteStack.size() > 0);
      CHECK(!r->isInception());
    } else {
      FAIL("not a remote error: ", e.getDescription().cStr());
    }
  }

  TEST_CASE("calling a module that is not enabled raises ModuleNotExposed") {
    auto e = remoteFailure([](Portal& p) { return p.run(parentAdd, 1, 2).ignoreResult(); });
    CHECK(tractor::isRemoteError(e, tractor::MODULE_NOT_EXPOSED));
    CHECK(contains(e.getDescription(), "portal_parent"));
  }

  TEST_CASE("calling an unknown function raises FunctionNotFound") {
    auto e = remoteFailure([](Portal& p) { return p.run("portal_test", "nope").ignoreResult(); });
    CHECK(tractor::isRemoteError(e, tractor::FUNCTION_NOT_FOUND));
    CHECK(contains(e.getDescription(), "nope"));
  }

  TEST_CASE("arguments that do not convert raise BadArguments naming the argument") {
    auto e = remoteFailure(
        [](Portal& p) { return p.run("portal_test", "add", 1, "two").ignoreResult(); });
    CHECK(tractor::isRemoteError(e, tractor::BAD_ARGUMENTS));
    CHECK(contains(e.getDescription(), "argument 2"));
    auto wrongCount = remoteFailure(
        [](Portal& p) { return p.run("portal_test", "add", 1).ignoreResult(); });
    CHECK(tractor::isRemoteError(wrongCount, tractor::BAD_ARGUMENTS));
    CHECK(contains(wrongCount.getDescription(), "takes 2 argument"));
  }

  TEST_CASE("BadArguments spells standard types as they are written") {
    auto text = remoteFailure(
        [](Portal& p) { return p.run("portal_test", "length", 5).ignoreResult(); });
    CHECK_MESSAGE(contains(text.getDescription(), "argument 1 (std::string) of portal_test.length"),
                  text.getDescription().cStr());
    auto list = remoteFailure(
        [](Portal& p) { return p.run("portal_test", "greet", "Kim", "many").ignoreResult(); });
    CHECK_MESSAGE(contains(list.getDescription(), "(std::vector<long>)"),
                  list.getDescription().cStr());
    for (const kj::Exception* e: {&text, &list}) {
      CHECK(!contains(e->getDescription(), "__cxx11"));
      CHECK(!contains(e->getDescription(), "allocator"));
    }
  }

  TEST_CASE("running a function that was never exposed names its type") {
    auto e = remoteFailure(
        [](Portal& p) { return kj::evalNow([&]() { return p.run(hidden, 1).ignoreResult(); }); });
    CHECK(tractor::isError(e, tractor::FUNCTION_NOT_FOUND));
    CHECK_MESSAGE(
        contains(e.getDescription(), "the function of type long (*)(long) is not exposed"),
        e.getDescription().cStr());
  }

  TEST_CASE("starting an actor with bad options fails clearly and leaves nothing behind") {
    kj::Vector<kj::String> errors;
    inRoot([&]() {
      return tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        auto describe = [](kj::Exception&& e) { return kj::str(e.getDescription()); };
        auto ok = [](Portal&&) { return kj::str("started"); };
        errors.add(co_await n.startActor("unknown", tractor::enable("no_such_module"))
                       .then(ok, describe));
        errors.add(co_await n.startActor("bad name").then(ok, describe));
        errors.add(co_await n.startActor(
            "loud", tractor::enable("portal_test").withLogLevel("shouting")).then(ok, describe));
      });
    });
    REQUIRE(errors.size() == 3);
    CHECK(contains(errors[0], "no_such_module"));
    CHECK(contains(errors[1], "actor name"));
    CHECK(contains(errors[2], "unknown log level"));
  }

  TEST_CASE("a result that does not convert is a clear error at the caller") {
    auto e = remoteFailure(
        [](Portal& p) { return p.run<kj::String>("portal_test", "add", 1, 2).ignoreResult(); });
    CHECK(tractor::isError(e, tractor::BAD_RESULT));
    CHECK(!tractor::isError(e, tractor::BAD_ARGUMENTS));
    CHECK_MESSAGE(contains(e.getDescription(), "the result of portal_test.add is not a kj::String"),
                  e.getDescription().cStr());
  }

  TEST_CASE("run in actor result and waitForResult after the scope ended") {
    inRoot([]() -> Task<void> {
      kj::Maybe<Portal> kept;
      co_await tractor::openNursery([&](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.runInActor(add, 20, 22);
        CHECK(co_await p.waitForResult<int64_t>() == 42);
        kept = p;
      });
      KJ_IF_MAYBE(p, kept) {
        CHECK(co_await p->waitForResult<int64_t>() == 42);
        // The actor is gone: calls fail cleanly.
        auto failed = co_await p->run(add, 1, 1).then([](int64_t) { return false; },
                                                      [](kj::Exception&&) { return true; });
        CHECK(failed);
      }
    });
  }

  TEST_CASE("a child calls back into its parent") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("caller", tractor::enable("portal_test"));
        CHECK(co_await p.run(callParent, 5) == 1006);
      });
    });
  }

  TEST_CASE("dropping a call cancels the remote function") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("sleeper", tractor::enable("portal_test"));
        auto& timer = tractor::Actor::current().timer();
        bool finished = co_await tractor::moveOnAfter(timer, 50 * kj::MILLISECONDS,
                                                      p.run(sleepForever));
        CHECK(!finished);
        // The cancellation reaches the child before the next call on the same connection.
        CHECK(co_await p.run(getCancelledCount) == 1);
      });
    });
  }

  TEST_CASE("cancelActor is acknowledged and later calls fail") {
    inRoot([]() {
      return tractor::openNursery([](ActorNursery& n) -> Task<void> {
        Portal p = co_await n.startActor("victim", tractor::enable("portal_test"));
        auto pending = p.run(sleepForever).then([]() { return kj::str("finished"); },
                                                [](kj::Exception&& e) {
                                                  return kj::str(e.getDescription());
                                                });
        CHECK(co_await p.cancelActor());
        auto outcome = co_await kj::mv(pending);
        CHECK(contains(outcome, "ContextCancelled"));
        auto after = co_await p.run(add, 1, 1).then(
            [](int64_t) { return kj::str("ok"); },
            [](kj::Exception&& e) { return kj::str(e.getDescription()); });
        CHECK(contains(after, "ContextCancelled"));
      });
    });
  }
}
