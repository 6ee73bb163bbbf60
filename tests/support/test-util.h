// Helpers shared by the multi-process test files: what a promise raised, checks on errors,
// and the Gauge handshake.

#pragma once

#include <doctest/doctest.h>
#include "tractor/supervise/main.h"

namespace tractor {
namespace test {

inline kj::Promise<kj::Maybe<kj::Exception>> errorOf(kj::Promise<void> promise) {
  // What `promise` raised; null once it succeeded.
  return promise.then([]() -> kj::Maybe<kj::Exception> { return nullptr; },
                      [](kj::Exception&& e) -> kj::Maybe<kj::Exception> { return kj::mv(e); });
}

using tractor::isError;

inline bool raised(const kj::Maybe<kj::Exception>& error, kj::StringPtr type) {
  KJ_IF_MAYBE(e, error) {
    return isError(*e, type);
  }
  return false;
}

inline bool raisedRemotely(const kj::Maybe<kj::Exception>& error, kj::StringPtr type) {
  // True when `error` came from another actor and is of `type` there.
  KJ_IF_MAYBE(e, error) {
    return tractor::RemoteActorError::from(*e) != nullptr && tractor::isRemoteError(*e, type);
  }
  return false;
}

inline kj::String describe(const kj::Maybe<kj::Exception>& error) {
  KJ_IF_MAYBE(e, error) {
    return kj::str(e->getDescription());
  }
  return kj::str("(no error)");
}

inline doctest::String shown(const kj::Maybe<kj::Exception>& error) {
  return doctest::String(describe(error).cStr());
}

inline kj::String typeOf(const kj::Maybe<kj::Exception>& error) {
  // The error's type name ("" when there is none): what a child reports back to the test.
  KJ_IF_MAYBE(e, error) {
    return tractor::errorTypeName(*e);
  }
  return kj::str();
}

inline kj::String cancellerUuid(const kj::Maybe<kj::Exception>& error) {
  // The uuid of the ContextCancelled's canceller ("" when there is none), read with
  // cancellerOf(); also checks that RemoteActorError::canceller agrees.
  KJ_IF_MAYBE(e, error) {
    KJ_IF_MAYBE(c, tractor::cancellerOf(*e)) {
      KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
        KJ_IF_MAYBE(rc, r->canceller) {
          CHECK(rc->uuid == c->uuid);
        } else {
          FAIL_CHECK("cancellerOf() names a canceller that RemoteActorError::canceller lacks");
        }
      }
      return kj::str(c->uuid);
    }
  }
  return kj::str();
}

inline kj::String cancellerName(const kj::Maybe<kj::Exception>& error) {
  KJ_IF_MAYBE(e, error) {
    KJ_IF_MAYBE(c, tractor::cancellerOf(*e)) {
      return kj::str(c->name);
    }
  }
  return kj::str();
}

inline kj::String senderUuid(const kj::Maybe<kj::Exception>& error) {
  // The uuid of a StreamOverrun's sender ("" when there is none).
  KJ_IF_MAYBE(e, error) {
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
      KJ_IF_MAYBE(s, r->sender) {
        return kj::str(s->uuid);
      }
    }
  }
  return kj::str();
}

inline kj::String sourceUuid(const kj::Maybe<kj::Exception>& error) {
  // The uuid of the actor a remote error was raised in ("" for a local error).
  KJ_IF_MAYBE(e, error) {
    KJ_IF_MAYBE(r, tractor::RemoteActorError::from(*e)) {
      return kj::str(r->src.uuid);
    }
  }
  return kj::str();
}

#define CHECK_CLEAN(error) CHECK_MESSAGE((error) == nullptr, shown(error))
#define CHECK_RAISED(error, type) CHECK_MESSAGE(raised(error, type), shown(error))
#define CHECK_RAISED_REMOTELY(error, type) \
  CHECK_MESSAGE(raisedRemotely(error, type), shown(error))

[[noreturn]] inline void rethrow(const kj::Exception& e) { kj::throwFatalException(kj::cp(e)); }

class Gauge {
  // A number in this process that tasks can wait for: the handshake behind the tests' "wait
  // until" calls. Each process has its own (the root's are reset by every test).
public:
  int64_t value() const { return value_; }

  void add(int64_t n = 1) {
    value_ += n;
    for (auto& waiter: waiters) waiter->fulfill();
    waiters.clear();
  }

  Task<void> atLeast(int64_t n) {
    // Resolves once the value is at least `n`.
    while (value_ < n) co_await changed();
  }

  void reset() {
    value_ = 0;
    waiters.clear();
  }

private:
  int64_t value_ = 0;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiters;

  kj::Promise<void> changed() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiters.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }
};

struct LoneActor {
  // A daemon in a nursery of its own, apart from the work that uses it: when a test kills it,
  // its nursery fails (one-cancels-all) without cancelling the work that observes the death.
  tractor::Portal portal;
  kj::Own<kj::PromiseFulfiller<void>> release;
  // Ends the nursery's block (and so tears the actor down, if it still runs).
  kj::Promise<kj::Maybe<kj::Exception>> supervision;
  // What the nursery raised.
};

inline kj::Promise<LoneActor> startLoneActor(kj::StringPtr name, kj::StringPtr module) {
  // Starts daemon `name` serving `module` in a nursery of its own (see LoneActor).
  auto started = kj::newPromiseAndFulfiller<tractor::Portal>();
  auto release = kj::newPromiseAndFulfiller<void>();
  auto block = [name = kj::str(name), module = kj::str(module),
                onStarted = kj::mv(started.fulfiller), released = kj::mv(release.promise)](
                   tractor::ActorNursery& n) mutable -> tractor::Task<void> {
    tractor::Portal p = co_await n.startActor(name, tractor::enable(module));
    onStarted->fulfill(kj::mv(p));
    co_await kj::mv(released);
  };
  auto supervision = errorOf(tractor::openNursery(kj::mv(block))).eagerlyEvaluate(nullptr);
  return started.promise.then(
      [release = kj::mv(release.fulfiller),
       supervision = kj::mv(supervision)](tractor::Portal&& portal) mutable {
        return LoneActor{kj::mv(portal), kj::mv(release), kj::mv(supervision)};
      });
}

inline doctest::String ds(kj::StringPtr text) {
  // For doctest messages (which print a char* as a pointer).
  return doctest::String(text.cStr());
}

}  // namespace test
}  // namespace tractor
