// An ActorEnv for unit tests of an actor's parts (contexts) that run without an actor, without
// processes and without I/O: an identity, a timer moved by hand, a revoker, a background set.

#pragma once

#include <kj/debug.h>
#include <kj/timer.h>
#include "tractor/kj-runtime/actor/env.h"
#include "tractor/kj-runtime/async/log.h"

namespace tractor {
namespace test {

class FakeEnv final: public ActorEnv {
  // What a part asks of its actor, with nothing behind the I/O: `io()`, `serve()` and
  // `adoptPeer()` fail the test that reaches them.
public:
  explicit FakeEnv(ActorId id): id_(kj::mv(id)) {}

  const ActorId& id() const override { return id_; }
  kj::Maybe<const ActorId&> parentId() const override { return nullptr; }
  bool isRegistrar() const override { return false; }
  kj::AsyncIoContext& io() override { KJ_FAIL_REQUIRE("a unit test's actor has no I/O"); }
  kj::Timer& timer() override { return timer_; }
  Revoker& revoker() override { return *revoker_; }
  void runInBackground(kj::Promise<void> work) override { background.add(kj::mv(work)); }
  schema::Actor::Client serve(kj::Maybe<ActorId>) override {
    KJ_FAIL_REQUIRE("a unit test's actor serves nobody");
  }
  void adoptPeer(kj::Own<PeerConnection>) override {
    KJ_FAIL_REQUIRE("a unit test's actor has no peers");
  }

  kj::TimerImpl& manualTimer() { return timer_; }

private:
  ActorId id_;
  kj::TimerImpl timer_{kj::origin<kj::TimePoint>()};
  kj::Own<Revoker> revoker_ = kj::refcounted<Revoker>();
  TaskErrorLog errors{"background work of a unit test failed"};
  kj::TaskSet background{errors};
};

}  // namespace test
}  // namespace tractor
