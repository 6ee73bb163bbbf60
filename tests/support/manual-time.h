// An event loop with no I/O and a timer that moves only when told to: the unit tests that use it
// are deterministic and never sleep.

#pragma once

#include <doctest/doctest.h>
#include <kj/async.h>
#include <kj/timer.h>

namespace tractor {
namespace test {

struct ManualTime {
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};

  void advance(kj::Duration delay) {
    // Moves the clock forward and runs everything that became ready.
    timer.advanceTo(timer.now() + delay);
    waitScope.poll();
  }

  bool timerIdle() { return timer.nextEvent() == nullptr; }
  // True if no timer promise is pending (every one fired or was destroyed).

  kj::Maybe<kj::Exception> outcome(kj::Promise<void>& promise) {
    // Requires `promise` to be settled; returns its error, if any.
    REQUIRE(promise.poll(waitScope));
    return kj::runCatchingExceptions([&]() { promise.wait(waitScope); });
  }
};

}  // namespace test
}  // namespace tractor
