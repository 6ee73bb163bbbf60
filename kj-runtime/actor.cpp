// The actor runtime and its capability server. See actor.h.

#include "kj-runtime/actor.h"

#include <kj/debug.h>
#include <unistd.h>
#include "devx/proctitle.h"

namespace tractor {

namespace {

thread_local Actor* currentActor = nullptr;

class ActorServer final: public schema::Actor::Server {
  // The `Actor` interface of one actor, as handed to one peer.
public:
  ActorServer(Actor& actor, kj::Maybe<ActorId> peer): actor(actor), peer(kj::mv(peer)) {}

  kj::Promise<void> start(StartContext context) override {
    auto params = context.getParams();
    auto id = actor.start(params.getSpec(), params.getParent());
    peer = ActorId::fromReader(params.getSpec().getParent());
    id.copyTo(context.getResults().initId());
    return kj::READY_NOW;
  }

  kj::Promise<void> run(RunContext context) override {
    // Remote cancellation only reaches a server method that opts in.
    context.allowCancellation();
    auto call = context.getParams().getCall();
    TRACTOR_LOG(TRACE, peerName(), " runs ", call.getModule(), '.', call.getFunction());
    return actor.invoke(call).then(
        [context](Value&& value) mutable {
          context.getResults().initOutcome().setValue(value.reader());
        },
        [this, context](kj::Exception&& e) mutable {
          TRACTOR_LOG(DEBUG, "call from ", peerName(), " failed: ", e.getDescription());
          boxError(context.getResults().initOutcome().initError(), e, actor.id());
        });
  }

  kj::Promise<void> waitForResult(WaitForResultContext context) override {
    context.allowCancellation();
    return actor.mainTaskOutcome(context.getResults().initOutcome());
  }

  kj::Promise<void> cancel(CancelContext context) override {
    auto requester = peerName();
    TRACTOR_LOG(RUNTIME, "cancel requested by ", requester);
    return actor.cancel(requester).then(
        [context]() mutable { context.getResults().setAcknowledged(true); });
  }

  kj::Promise<void> descendantStarted(DescendantStartedContext context) override {
    actor.reportDescendant(static_cast<pid_t>(context.getParams().getPid()), true);
    return kj::READY_NOW;
  }

  kj::Promise<void> descendantReaped(DescendantReapedContext context) override {
    actor.reportDescendant(static_cast<pid_t>(context.getParams().getPid()), false);
    return kj::READY_NOW;
  }

  kj::Promise<void> getId(GetIdContext context) override {
    actor.id().copyTo(context.getResults().initId());
    return kj::READY_NOW;
  }

private:
  Actor& actor;
  kj::Maybe<ActorId> peer;

  kj::String peerName() {
    KJ_IF_MAYBE(p, peer) {
      return p->toString();
    }
    return kj::str("a peer");
  }
};

}  // namespace

Actor::Actor(kj::AsyncIoContext& io, ActorId id, bool isRoot)
    : io_(io), id_(kj::mv(id)), isRoot_(isRoot), started(isRoot), background(logErrors) {
  KJ_REQUIRE(currentActor == nullptr, "this thread already runs an actor");
  currentActor = this;
  setLogActor(id_.toString());
}

Actor::~Actor() noexcept(false) {
  currentActor = nullptr;
}

Actor& Actor::current() {
  if (currentActor == nullptr) {
    kj::throwFatalException(typedError(
        NO_RUNTIME, "no actor runs in this thread: start the program with tractor::main()"));
  }
  return *currentActor;
}

kj::Maybe<Actor&> Actor::tryCurrent() {
  if (currentActor == nullptr) return nullptr;
  return *currentActor;
}

kj::Maybe<Portal> Actor::parent() const {
  return parent_.map([](const Portal& p) { return p; });
}

void Actor::enableModules(kj::ArrayPtr<const kj::String> names) {
  for (auto& name: names) {
    KJ_REQUIRE(moduleExists(name),
               "cannot enable a module with no functions registered (TRACTOR_EXPOSE) in this "
               "executable", name);
    if (!isModuleEnabled(name)) modules.add(kj::str(name));
  }
}

bool Actor::isModuleEnabled(kj::StringPtr module) const {
  for (auto& m: modules) {
    if (m == module) return true;
  }
  return false;
}

schema::Actor::Client Actor::serve(kj::Maybe<ActorId> peer) {
  return kj::heap<ActorServer>(*this, kj::mv(peer));
}

kj::Promise<Value> Actor::invoke(schema::Call::Reader call) {
  auto module = call.getModule();
  auto function = call.getFunction();
  if (!started) {
    return typedError(CONTEXT_CANCELLED, kj::str("actor ", id_.toString(), " is not started"));
  }
  if (cancelCalled()) {
    return typedError(CONTEXT_CANCELLED,
                      kj::str("actor ", id_.toString(), " is shutting down: it was cancelled"));
  }
  if (!isModuleEnabled(module)) {
    return typedError(MODULE_NOT_EXPOSED, kj::str("module '", module, "' is not enabled in actor ",
                                                  id_.toString()));
  }
  KJ_IF_MAYBE(info, findFunction(module, function)) {
    return canceler.wrap(info->invoke(*info, call.getArgs()));
  }
  return typedError(FUNCTION_NOT_FOUND, kj::str("module '", module, "' has no function '",
                                                function, "' in actor ", id_.toString()));
}

kj::Promise<void> Actor::wrapTask(kj::Promise<void> task) { return canceler.wrap(kj::mv(task)); }

void Actor::LogErrors::taskFailed(kj::Exception&& e) {
  TRACTOR_LOG(DEBUG, "background message failed: ", e.getDescription());
}

void Actor::reportDescendant(pid_t pid, bool started) {
  KJ_IF_MAYBE(reaper, orphanReaper) {
    if (started) {
      reaper->started(pid);
    } else {
      reaper->reaped(pid);
    }
  } else KJ_IF_MAYBE(p, parent_) {
    auto capability = p->capability();
    if (started) {
      auto request = capability.descendantStartedRequest();
      request.setPid(pid);
      background.add(request.send().ignoreResult());
    } else {
      auto request = capability.descendantReapedRequest();
      request.setPid(pid);
      background.add(request.send().ignoreResult());
    }
  }
}

kj::Promise<void> Actor::cancel(kj::StringPtr requester) {
  KJ_IF_MAYBE(c, cancelled) {
    return c->addBranch();
  }
  TRACTOR_LOG(RUNTIME, "actor ", id_.toString(), " cancelled by ", requester);
  canceler.cancel(typedError(CONTEXT_CANCELLED, kj::str("actor ", id_.toString(),
                                                        " was cancelled by ", requester)));
  // The cancelled tasks' nurseries handed their children's teardown to the keeper.
  auto& fork = cancelled.emplace(keeper.drain().fork());
  return fork.addBranch();
}

ActorId Actor::start(schema::SpawnSpec::Reader spec, schema::Actor::Client parentCap) {
  KJ_REQUIRE(!started, "actor already started");
  TRACTOR_LOG(TRACE, "spawn spec: ", spec);
  auto id = ActorId::fromReader(spec.getId());
  validateActorName(id.name);
  id.pid = getpid();
  id_ = kj::mv(id);
  setLogActor(id_.toString());
  setProcessTitle(kj::str("tractor[", id_.name, "] child of ", spec.getParent().getName(), '@',
                          spec.getParent().getPid()));
  if (spec.getLogLevel().size() > 0) {
    KJ_IF_MAYBE(level, parseLogLevel(spec.getLogLevel())) {
      setLogLevel(*level);
    }
  }
  kj::Vector<kj::String> names;
  for (auto m: spec.getEnableModules()) names.add(kj::str(m));
  enableModules(names);
  parent_ = Portal(kj::mv(parentCap), ActorId::fromReader(spec.getParent()));
  started = true;
  TRACTOR_LOG(RUNTIME, "started, serving modules [", kj::strArray(modules, ", "), "]");

  if (spec.getMainTask().isCall()) {
    auto task = invoke(spec.getMainTask().getCall()).then(
        [this](Value&& value) { mainValue = kj::mv(value); },
        [this](kj::Exception&& e) { mainError = kj::mv(e); });
    mainTask = task.fork();
  }
  return id_.clone();
}

kj::Promise<void> Actor::mainTaskOutcome(schema::Outcome::Builder outcome) {
  KJ_IF_MAYBE(task, mainTask) {
    return task->addBranch().then([this, outcome]() mutable {
      KJ_IF_MAYBE(e, mainError) {
        boxError(outcome.initError(), *e, id_);
      } else KJ_IF_MAYBE(v, mainValue) {
        outcome.setValue(v->reader());
      }
    });
  }
  boxError(outcome.initError(),
           typedError(NO_RESULT, kj::str("actor ", id_.toString(), " has no main task")), id_);
  return kj::READY_NOW;
}

}  // namespace tractor
