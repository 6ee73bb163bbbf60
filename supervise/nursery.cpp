// The actor nursery. See nursery.h.

#include "tractor/supervise/nursery.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>
#include <kj/map.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tractor/kj-runtime/net/buffered-stream.h"
#include "tractor/kj-runtime/net/limits-internal.h"
#include "tractor/spawn/exec-spawn.h"
#include "tractor/spawn/forkserver.h"

namespace tractor {

struct ActorNursery::Child: public kj::Refcounted {
  // One child actor. Shared between the nursery and the (shielded) teardown that reaps it, so
  // whichever lives longer keeps the process, connection and portal alive.
  ActorId id;
  kj::Own<ChildProcess> process;
  kj::Own<kj::AsyncIoStream> connection;
  kj::Own<RpcConnection> rpc;
  kj::Maybe<Portal> portal;
  bool hasMainTask = false;
  bool closing = false;
  // Set once teardown began: an exit is expected from then on.
  bool exitReported = false;
  bool brokenReported = false;
  kj::Maybe<kj::ForkedPromise<void>> teardown;
  kj::Maybe<kj::ForkedPromise<void>> result;
  // A runInActor child's main task: resolves once its result arrived, after a failure was
  // recorded with the nursery. Refers to the nursery, so it is dropped before the nursery.
  kj::Maybe<kj::Promise<void>> watch;
  // Watches for an unexpected exit, a broken connection and the main task's failure; refers to
  // the nursery too.

  void forget() {
    // Drops everything that refers to the nursery.
    watch = nullptr;
    result = nullptr;
  }

  ~Child() noexcept(false) {
    // The RPC system before the stream it runs on.
    rpc = nullptr;
    connection = nullptr;
  }
};

namespace {

Task<void> climbTeardownLadder(kj::Own<ActorNursery::Child> child, bool hardKill);

}  // namespace

ActorNursery::ActorNursery(): failed(nullptr) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  failFulfiller = kj::mv(paf.fulfiller);
  failed = paf.promise.fork();
}

ActorNursery::~ActorNursery() noexcept(false) {}

void ActorNursery::endScope() {
  // Dropped before its scope finished (the enclosing task was cancelled): hand every child's
  // teardown to the actor's shield keeper so that it still completes, and whoever dropped the
  // scope waits for it (ShieldKeeper::collect()). Errors the nursery recorded but could not
  // raise are the teardown's outcome: no real error is lost because its scope was cancelled.
  closing = true;
  kj::Vector<kj::Promise<void>> teardowns;
  for (auto& child: children) {
    child->forget();
    if (child->teardown == nullptr && !child->closing) {
      child->closing = true;
      auto work = climbTeardownLadder(kj::addRef(*child), false);
      child->teardown = toPromise(kj::mv(work)).fork();
    }
    KJ_IF_MAYBE(t, child->teardown) {
      if (!raised) teardowns.add(t->addBranch());
    }
  }
  if (raised || (teardowns.empty() && errors.empty())) return;
  raised = true;
  // Dropping what shield() returns leaves the work running in the keeper.
  (void)shield(kj::joinPromises(teardowns.releaseAsArray())
                   .then([error = outcome()]() mutable -> kj::Promise<void> {
                     KJ_IF_MAYBE(e, error) {
                       return kj::mv(*e);
                     }
                     return kj::READY_NOW;
                   }));
}

void ActorNursery::fail() {
  if (failing) return;
  failing = true;
  // The nursery cancels its children now (tractor's implicit `cancel()` on an error).
  cancelCalled_ = true;
  cancelledCaught_ = true;
  failedAt = Actor::current().timer().now();
  // The block is cut off at once (a shielded section in it first finishes), and no child is
  // spawned from now on: one-cancels-all is eager.
  if (blockScope.get() != nullptr) {
    auto& self = Actor::current().id();
    blockScope->cancel(contextCancelled(self, self, "the nursery's block was cancelled: a "
                                                    "failure in the nursery"));
  }
  if (failFulfiller->isWaiting()) failFulfiller->fulfill();
}

void ActorNursery::blockFailed(kj::Exception&& error) {
  // The block's own error. One that is a runInActor child's failure raised again (from
  // `waitForResult()`) counts as that child's; anything else tears every child down at once.
  KJ_IF_MAYBE(r, RemoteActorError::from(error)) {
    // It came from (or through, relayed from its subtree) one of the runInActor children.
    auto& from = r->relayPath.back();
    for (auto& child: children) {
      if (child->hasMainTask && (child->id.uuid == r->src.uuid || child->id.uuid == from.uuid)) {
        errors.add(kj::mv(error));
        fail();
        return;
      }
    }
  }
  TRACTOR_LOG(RUNTIME, "nursery block failed: ", error.getDescription());
  kj::Vector<kj::Exception> all;
  all.add(kj::mv(error));
  for (auto& other: errors) all.add(kj::mv(other));
  errors = kj::mv(all);
  immediate = true;
  fail();
}

kj::Maybe<kj::Exception> ActorNursery::outcome() {
  // One error for each failure: the block raising a child's error again is that failure.
  kj::Vector<kj::Exception> distinct;
  kj::HashSet<kj::String> seen;
  for (auto& e: errors) {
    auto desc = kj::heapString(e.getDescription());
    if (seen.contains(desc)) continue;
    seen.insert(kj::mv(desc));
    distinct.add(kj::mv(e));
  }
  errors.clear();
  if (distinct.size() == 0) return nullptr;
  if (distinct.size() == 1) return kj::mv(distinct[0]);
  auto& self = Actor::current().id();
  return errorGroup(self, kj::str(distinct.size(), " errors in the nursery of ", self), distinct);
}

void ActorNursery::childFailed(kj::Exception&& error) {
  if (closing && (isRemoteError(error, CONTEXT_CANCELLED) ||
                  error.getType() == kj::Exception::Type::DISCONNECTED)) {
    return;  // caused by our own teardown: not an error
  }
  TRACTOR_LOG(RUNTIME, "child failed: ", error.getDescription());
  errors.add(kj::mv(error));
  fail();
}

void ActorNursery::reportExit(Child& c) {
  if (c.exitReported) return;
  c.exitReported = true;
  Actor::current().reportDescendant(c.process->pid(), false);
  bool clean = false;
  KJ_IF_MAYBE(s, c.process->exitStatus()) {
    clean = WIFEXITED(*s) && WEXITSTATUS(*s) == 0;
  }
  if (clean) {
    // It was cancelled (by anyone) and exited in order: nothing is left to tear down.
    TRACTOR_LOG(RUNTIME, c.id.toString(), " exited");
  } else if (!c.closing) {
    childFailed(typedError(ACTOR_FAILURE, kj::str("actor ", c.id.toString(),
                                                  " ended unexpectedly: ",
                                                  c.process->describeExit())));
  }
}

void ActorNursery::reportBrokenConnection(Child& c) {
  // An orderly end (the child exited, or we closed it) is no failure: the exit watch reports an
  // unexpected exit. A connection that broke was either side refusing the other's frames, which
  // our own teardown never causes, so it is reported even while the nursery closes (FAILED, as
  // childFailed() ignores disconnects then).
  if (c.brokenReported || c.rpc.get() == nullptr) return;
  KJ_IF_MAYBE(why, c.rpc->failure()) {
    c.brokenReported = true;
    childFailed(typedError(TRANSPORT_CLOSED, kj::str("connection to actor ", c.id.toString(),
                                                     " broke: ", why->getDescription())));
  }
}

kj::Promise<Portal> ActorNursery::startActor(kj::StringPtr name, ActorOptions options) {
  return spawn(name, kj::mv(options), nullptr);
}

kj::Promise<Portal> ActorNursery::spawn(kj::StringPtr name, ActorOptions options,
                                        kj::Maybe<schema::Call::Reader> mainTask) {
  // Errors, bad options included, arrive through the promise.
  return kj::evalNow([&]() { return spawnNow(name, kj::mv(options), mainTask); });
}

kj::Promise<Portal> ActorNursery::spawnNow(kj::StringPtr name, ActorOptions options,
                                           kj::Maybe<schema::Call::Reader> mainTask) {
  // Bad options are refused before a process exists.
  validateActorName(name);
  KJ_REQUIRE(!closing && !failing, "this nursery is closing: no new actors can be started in it");
  for (auto& m: options.enableModules) {
    KJ_REQUIRE(moduleExists(m), "cannot enable a module with no functions registered "
               "(TRACTOR_EXPOSE) in this executable", m);
  }
  KJ_IF_MAYBE(level, options.logLevel) {
    KJ_REQUIRE(parseLogLevel(*level) != nullptr, "unknown log level", *level);
  }
  auto& actor = Actor::current();
  auto& io = actor.io();
  SpawnedChild spawned;
  KJ_IF_MAYBE(server, ForkServer::current()) {
    spawned = forkServerSpawn(*server, *io.lowLevelProvider, io.unixEventPort, name);
  } else {
    spawned = execSpawn(*io.lowLevelProvider, io.unixEventPort, name);
  }
  auto child = kj::refcounted<Child>();
  child->id = ActorId{kj::str(name), newUuid(), static_cast<uint32_t>(spawned.process->pid())};
  child->process = kj::mv(spawned.process);
  child->connection = kj::heap<BufferedStream>(kj::mv(spawned.connection));
  child->rpc = kj::heap<RpcConnection>(*child->connection, capnp::rpc::twoparty::Side::CLIENT);
  auto capability = child->rpc->bootstrap().castAs<schema::Actor>();
  TRACTOR_LOG(RUNTIME, "spawned ", child->id.toString());
  auto address = actor.childAddress(child->id);
  kj::StringPtr socketPath;
  if (address.transport == Transport::UDS) {
    socketPath = address.path;
    child->process->removeAfterExit(kj::str(address.path));
  }
  actor.reportDescendant(child->process->pid(), true, socketPath);

  auto request = capability.startRequest();
  auto spec = request.initSpec();
  child->id.copyTo(spec.initId());
  actor.id().copyTo(spec.initParent());
  spec.setBindAddress(address.toString());
  kj::Vector<kj::StringPtr> modules;
  for (auto& m: options.enableModules) modules.add(m);
  KJ_IF_MAYBE(call, mainTask) {
    bool listed = false;
    for (auto m: modules) listed = listed || m == call->getModule();
    if (!listed) modules.add(call->getModule());
    spec.getMainTask().setCall(*call);
    child->hasMainTask = true;
  }
  auto list = spec.initEnableModules(modules.size());
  for (auto i: kj::indices(modules)) list.set(i, modules[i]);
  KJ_IF_MAYBE(level, options.logLevel) {
    spec.setLogLevel(*level);
  } else {
    spec.setLogLevel(logLevelName(logLevel()));
  }
  request.setParent(actor.serve(child->id.clone()));

  Portal portal(actor, capability, child->id.clone());
  child->portal = portal;
  // Sent before anything else on the capability: calls are delivered in order.
  auto started = request.send();

  // An exit before teardown is a failure; so is the main task's error.
  Child& c = *child;
  // Each watch is evaluated eagerly: joinPromises() runs its branches' continuations only once
  // all of them are ready.
  auto exitWatch = c.process->onExit().then([this, &c]() { reportExit(c); })
                       .eagerlyEvaluate(nullptr);
  // Never rejects: the connection may also be destroyed by the teardown before it breaks.
  auto connectionWatch = c.rpc->whenBroken()
                             .then([this, &c]() { reportBrokenConnection(c); },
                                   [](kj::Exception&&) {})
                             .eagerlyEvaluate(nullptr);
  if (c.hasMainTask) {
    auto& result = c.result.emplace(
        portal.waitForResult<Value>()
            .then([](Value&&) -> kj::Promise<void> { return kj::READY_NOW; },
                  [this, &c](kj::Exception&& e) -> kj::Promise<void> {
                    if (e.getType() != kj::Exception::Type::DISCONNECTED || c.closing) {
                      childFailed(kj::mv(e));
                      return kj::READY_NOW;
                    }
                    // The connection dropped: if the process died, its exit status says more
                    // (the exit watch reports it).
                    auto& timer = Actor::current().timer();
                    return moveOnAfter(timer, EXIT_TIMEOUT, c.process->onExit())
                        .then([this, &c, e = kj::mv(e)](bool exited) mutable {
                          if (exited) {
                            reportExit(c);
                          } else {
                            childFailed(kj::mv(e));
                          }
                        });
                  })
            .fork());
    c.watch = kj::joinPromises(kj::arr(kj::mv(exitWatch), kj::mv(connectionWatch),
                                       result.addBranch()))
                  .eagerlyEvaluate(nullptr);
  } else {
    c.watch = kj::joinPromises(kj::arr(kj::mv(exitWatch), kj::mv(connectionWatch)))
                  .eagerlyEvaluate(nullptr);
  }
  children.add(kj::mv(child));

  return started.then(
      [portal = kj::mv(portal)](
          capnp::Response<schema::Actor::StartResults>&&) mutable -> kj::Promise<Portal> {
        return kj::mv(portal);
      },
      // The record is shared: the promise may outlive the nursery.
      [c = kj::addRef(c)](kj::Exception&& e) mutable -> kj::Promise<Portal> {
        auto exited = c->process->onExit();
        bool died = e.getType() == kj::Exception::Type::DISCONNECTED;
        auto failed = [c = kj::mv(c), e = kj::mv(e)]() -> kj::Promise<Portal> {
          auto reason = c->process->hasExited() ? c->process->describeExit()
                                                : kj::str(e.getDescription());
          return typedError(ACTOR_FAILURE, kj::str("starting actor ", c->id.toString(),
                                                   " failed: ", reason));
        };
        if (!died) return failed();
        // It died while starting: wait (briefly) for its exit status, which says why.
        return moveOnAfter(Actor::current().timer(), EXIT_TIMEOUT, kj::mv(exited))
            .then([failed = kj::mv(failed)](bool) mutable { return failed(); });
      });
}

kj::Promise<void> ActorNursery::teardownAll(bool hardKill) {
  // A connection that broke before now is reported whatever order the news arrived in.
  for (auto& child: children) reportBrokenConnection(*child);
  closing = true;
  kj::Vector<kj::Promise<void>> all;
  for (auto& child: children) {
    child->closing = true;
    if (child->teardown == nullptr) {
      child->teardown = toPromise(climbTeardownLadder(kj::addRef(*child), hardKill)).fork();
    }
    KJ_IF_MAYBE(t, child->teardown) {
      // Shielded: if this scope is cancelled meanwhile, the teardown still completes.
      all.add(shield(t->addBranch()));
    }
  }
  return kj::joinPromises(all.releaseAsArray());
}

kj::Promise<void> ActorNursery::cancel(bool hardKill) {
  cancelCalled_ = true;
  cancelledCaught_ = true;
  immediate = true;
  TRACTOR_LOG(RUNTIME, "nursery cancelling ", children.size(), " children");
  return teardownAll(hardKill);
}

kj::Promise<void> ActorNursery::collectResults() {
  // Every runInActor child's result (each failure is recorded by the child's watch). Once a
  // failure happened, only those that end within FAILURE_GRACE of it are waited for (none when
  // the block failed or `cancel()` was called): a child's own failure counts whether it came
  // before the teardown or during it, and siblings failing at nearly the same time are all
  // reported, while one that runs on is cancelled.
  kj::Vector<kj::Promise<void>> results;
  for (auto& child: children) {
    if (!child->closing) {
      KJ_IF_MAYBE(r, child->result) {
        results.add(r->addBranch());
      }
    }
  }
  auto all = kj::joinPromises(results.releaseAsArray()).fork();
  return all.addBranch()
      .exclusiveJoin(failed.addBranch())
      .then([this, all = kj::mv(all)]() mutable -> kj::Promise<void> {
        if (!failing || immediate) return kj::READY_NOW;
        auto& timer = Actor::current().timer();
        auto left = failedAt + FAILURE_GRACE - timer.now();
        if (left <= 0 * kj::SECONDS) return kj::READY_NOW;
        return moveOnAfter(timer, left, all.addBranch()).ignoreResult();
      });
}

kj::Promise<void> ActorNursery::supervise(kj::Function<kj::Promise<void>()> block) {
  // The block runs in a cancel scope of its own, nested in the scope the nursery was opened in:
  // a failure (recorded in `errors`) cuts it off, as it ends the wait for the results.
  auto& self = Actor::current().id();
  blockScope = kj::refcounted<CancelScope>();
  auto body = blockScope->run(
      [&]() { return block(); },
      [id = self.clone()]() {
        return contextCancelled(id, id, "the scope around a nursery was cancelled");
      });
  return body.then([]() -> kj::Maybe<kj::Exception> { return nullptr; },
                   [](kj::Exception&& e) -> kj::Maybe<kj::Exception> { return kj::mv(e); })
      .then([this](kj::Maybe<kj::Exception>&& blockError) {
        KJ_IF_MAYBE(e, blockError) {
          // Cut off by a failure: the reason is no error of its own, but a real error of the
          // cleanup the cut set off is.
          KJ_IF_MAYBE(reason, blockScope->cancelReason()) {
            if (blockScope->cancelledCaught() &&
                reason->getDescription() == e->getDescription()) {
              return collectResults();
            }
          }
          blockFailed(kj::mv(*e));
        }
        return collectResults();
      })
      .then([this]() { return teardownAll(false); })
      .then([this]() -> kj::Promise<void> {
        for (auto& child: children) child->forget();
        raised = true;
        // Every child is reaped: what is left of them is only their count (a handle from
        // `addRef()` may outlive the scope).
        spawned = children.size();
        children.clear();
        KJ_IF_MAYBE(e, outcome()) {
          return kj::mv(*e);
        }
        return kj::READY_NOW;
      });
}

namespace {

Task<bool> exitsWithin(ActorNursery::Child& child, kj::Duration timeout) {
  co_return co_await moveOnAfter(Actor::current().timer(), timeout, child.process->onExit());
}

Task<void> climbTeardownLadder(kj::Own<ActorNursery::Child> child, bool hardKill) {
  auto name = child->id.toString();
  bool acked = false;
  if (!hardKill && !child->process->hasExited()) {
    KJ_IF_MAYBE(portal, child->portal) {
      acked = co_await portal->cancelActor();
      TRACTOR_LOG(RUNTIME, "cancel of ", name, acked ? " acknowledged" : " not acknowledged");
    }
  }
  // Closing our end of the connection tells the child to exit.
  child->rpc = nullptr;
  child->connection = nullptr;
  if (hardKill) {
    TRACTOR_LOG(RUNTIME, "hard-killing ", name);
    child->process->signal(SIGKILL);
  } else if (!acked && !child->process->hasExited()) {
    // It did not answer: its loop is blocked or it is hung, and closing the connection will not
    // reach it either.
    TRACTOR_LOG(WARNING, name, " did not acknowledge its cancellation: sending SIGTERM");
    child->process->signal(SIGTERM);
    if (!co_await exitsWithin(*child, TERM_TIMEOUT)) {
      TRACTOR_LOG(WARNING, name, " ignored SIGTERM for ", TERM_TIMEOUT, ": sending SIGKILL");
      child->process->signal(SIGKILL);
    }
  } else if (!co_await exitsWithin(*child, EXIT_TIMEOUT)) {
    TRACTOR_LOG(WARNING, name, " did not exit ", EXIT_TIMEOUT, " after its connection closed: "
                "sending SIGTERM");
    child->process->signal(SIGTERM);
    if (!co_await exitsWithin(*child, TERM_TIMEOUT)) {
      TRACTOR_LOG(WARNING, name, " ignored SIGTERM for ", TERM_TIMEOUT, ": sending SIGKILL");
      child->process->signal(SIGKILL);
    }
  }
  co_await child->process->onExit();
  TRACTOR_LOG(RUNTIME, "reaped ", name, ": ", child->process->describeExit());
  Actor::current().reportDescendant(child->process->pid(), false);
}

}  // namespace

}  // namespace tractor
