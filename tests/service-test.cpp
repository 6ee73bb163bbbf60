// User capabilities: an actor serving an interface from the user's own schema
// (tests/calculator.capnp, compiled with tractor_add_schema), reached with Portal::bootstrap<T>():
// calls, promise pipelining, errors, refusals, and revocation when the actor is cancelled.

#include <doctest/doctest.h>
#include <stdexcept>
#include "tractor/supervise/main.h"
#include "tests/support/calculator-server.h"
#include "tests/support/leak-audit.h"
#include "tests/support/test-util.h"

namespace {

using tractor::ActorNursery;
using tractor::Portal;
using tractor::Task;
using namespace tractor::test;

kj::Own<CalculatorServer> makeCalculator() { return kj::heap<CalculatorServer>(); }
TRACTOR_SERVICE(service_test, calc::Calculator, makeCalculator);

int64_t nothing() { return 0; }
TRACTOR_EXPOSE(service_other, nothing);

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("service calls, pipelining and errors reach the actor's server") {
    int64_t sum = 0;
    int64_t pipelined = 0;
    kj::Maybe<kj::Exception> failed;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("calculator", tractor::enable("service_test"));
      auto calculator = p.bootstrap<calc::Calculator>();
      auto add = calculator.addRequest();
      add.setA(2);
      add.setB(3);
      sum = (co_await add.send()).getSum();
      // The adder is called before the call that makes it has returned.
      auto make = calculator.adderRequest();
      make.setBase(10);
      auto adder = make.send().getAdder();
      auto call = adder.addRequest();
      call.setX(5);
      pipelined = (co_await call.send()).getSum();
      auto fail = calculator.failRequest();
      fail.setWhy("no way");
      failed = co_await errorOf(fail.send().ignoreResult());
    });
    CHECK_CLEAN(error);
    CHECK(sum == 5);
    CHECK(pipelined == 15);
    CHECK(contains(describe(failed), "no way"));
  }

  TEST_CASE("service refused when its module is not enabled or the interface is not served") {
    kj::Maybe<kj::Exception> notEnabled;
    kj::Maybe<kj::Exception> notServed;
    int64_t stillAnswers = -1;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("other", tractor::enable("service_other"));
      auto calculator = p.bootstrap<calc::Calculator>();
      auto add = calculator.addRequest();
      notEnabled = co_await errorOf(add.send().ignoreResult());
      auto adder = p.bootstrap<calc::Adder>();
      auto call = adder.addRequest();
      notServed = co_await errorOf(call.send().ignoreResult());
      stillAnswers = co_await p.run(nothing);
    });
    CHECK_CLEAN(error);
    CHECK(contains(describe(notEnabled), tractor::MODULE_NOT_EXPOSED));
    CHECK(contains(describe(notServed), tractor::SERVICE_NOT_FOUND));
    CHECK(stillAnswers == 0);
  }

  TEST_CASE("service capabilities are revoked when the actor is cancelled") {
    kj::Maybe<kj::Exception> inFlight;
    kj::Maybe<kj::Exception> later;
    kj::Maybe<kj::Exception> viaAdder;
    int64_t before = 0;
    auto error = runAuditedTree([&](ActorNursery& n) -> Task<void> {
      Portal p = co_await n.startActor("calculator", tractor::enable("service_test"));
      auto calculator = p.bootstrap<calc::Calculator>();
      auto make = calculator.adderRequest();
      make.setBase(1);
      auto adder = make.send().getAdder();
      auto first = adder.addRequest();
      first.setX(1);
      before = (co_await first.send()).getSum();
      auto waiting = errorOf(calculator.waitRequest().send().ignoreResult()).fork();
      CHECK(co_await p.cancelActor());
      inFlight = co_await waiting.addBranch();
      auto add = calculator.addRequest();
      later = co_await errorOf(add.send().ignoreResult());
      auto second = adder.addRequest();
      viaAdder = co_await errorOf(second.send().ignoreResult());
    });
    CHECK_CLEAN(error);
    CHECK(before == 2);
    CHECK(contains(describe(inFlight), tractor::CONTEXT_CANCELLED));
    CHECK(contains(describe(later), tractor::CONTEXT_CANCELLED));
    CHECK(contains(describe(viaAdder), tractor::CONTEXT_CANCELLED));
  }
}
