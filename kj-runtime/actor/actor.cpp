// The actor runtime and its capability server. See actor.h.

#include "tractor/kj-runtime/actor/actor.h"

#include <kj/debug.h>
#include <unistd.h>
#include "tractor/devx/proctitle.h"
#include "tractor/kj-runtime/actor/connection-internal.h"

namespace tractor {

namespace {

thread_local Actor* currentActor = nullptr;

}  // namespace

namespace {

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
        [this, context](Value&& value) mutable {
          // Capabilities in a result are revoked when this actor is cancelled.
          context.getResults().initOutcome().setValue(
              actor.revoker().guard(kj::mv(value)).reader());
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
    TRACTOR_LOG(RUNTIME, "cancel requested by ", peerName());
    return actor.cancel(peerId()).then(
        [context]() mutable { context.getResults().setAcknowledged(true); });
  }

  kj::Promise<void> openContext(OpenContextContext context) override {
    // Dropping the call (the caller's scope ended early, the connection was lost) cancels the
    // task.
    context.allowCancellation();
    return actor.openContext(context.getParams(), peerId());
  }

  kj::Promise<void> descendantStarted(DescendantStartedContext context) override {
    auto params = context.getParams();
    actor.reportDescendant(static_cast<pid_t>(params.getPid()), true, params.getSocketPath());
    return kj::READY_NOW;
  }

  kj::Promise<void> descendantReaped(DescendantReapedContext context) override {
    actor.reportDescendant(static_cast<pid_t>(context.getParams().getPid()), false);
    return kj::READY_NOW;
  }

  kj::Promise<void> getRegistrar(GetRegistrarContext context) override {
    KJ_IF_MAYBE(r, actor.registrar()) {
      context.getResults().setRegistrar(*r);
      return kj::READY_NOW;
    }
    return typedError(NO_REGISTRAR, kj::str("actor ", actor.id().toString(),
                                            " has no registrar"));
  }

  kj::Promise<void> bootstrapService(BootstrapServiceContext context) override {
    context.getResults().setService(
        actor.bootstrapService(context.getParams().getInterfaceId()));
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

  ActorId peerId() {
    KJ_IF_MAYBE(p, peer) {
      return p->clone();
    }
    return ActorId{kj::str("unknown-peer"), kj::str(), 0};
  }
};

}  // namespace

Actor::Actor(kj::AsyncIoContext& io, ActorId id, bool isRoot)
    : io_(io), id_(kj::mv(id)), isRoot_(isRoot), started(isRoot),
      tasks(kj::refcounted<CancelScope>()), background(logErrors),
      revocation(kj::refcounted<Revoker>()) {
  KJ_REQUIRE(currentActor == nullptr, "this thread already runs an actor");
  currentActor = this;
  setLogActor(id_.toString());
}

Actor::~Actor() noexcept(false) {
  // Connections and the listener (which removes its socket file) before the actor they serve.
  peers.clear();
  listener = nullptr;
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

kj::Maybe<const ActorId&> Actor::parentId() const {
  KJ_IF_MAYBE(p, parent_) {
    return p->actorId();
  }
  return nullptr;
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

const FunctionInfo& Actor::lookup(schema::Call::Reader call, FunctionKind kind) {
  auto module = call.getModule();
  auto function = call.getFunction();
  if (!started) {
    kj::throwFatalException(
        typedError(CONTEXT_CANCELLED, kj::str("actor ", id_.toString(), " is not started")));
  }
  if (cancelCalled()) {
    kj::throwFatalException(typedError(
        CONTEXT_CANCELLED,
        kj::str("actor ", id_.toString(), " is shutting down: it was cancelled")));
  }
  if (!isModuleEnabled(module)) {
    kj::throwFatalException(typedError(
        MODULE_NOT_EXPOSED,
        kj::str("module '", module, "' is not enabled in actor ", id_.toString())));
  }
  KJ_IF_MAYBE(info, findFunction(module, function)) {
    if (info->kind != kind) {
      kj::StringPtr how = info->kind == FunctionKind::FUNCTION ? "call it with Portal::run()"_kj
          : info->kind == FunctionKind::CONTEXT ? "open it with Portal::openContext()"_kj
                                                : "open it with Portal::openStreamFrom()"_kj;
      kj::throwFatalException(typedError(
          CONTEXT_ERROR, kj::str(module, '.', function, " is a ", info->kind, ": ", how)));
    }
    return *info;
  }
  kj::throwFatalException(typedError(
      FUNCTION_NOT_FOUND,
      kj::str("module '", module, "' has no function '", function, "' in actor ", id_.toString())));
}

kj::Own<CancelScope> Actor::newTaskScope() {
  return kj::refcounted<CancelScope>(static_cast<TaskScope&>(*tasks));
}

kj::Promise<Value> Actor::invoke(schema::Call::Reader call) {
  // A refusal is the call's outcome too.
  return kj::evalNow([&]() {
    auto& info = lookup(call, FunctionKind::FUNCTION);
    // A function returning a plain value has ended once `invoke` returns: a cancel scope would
    // have nothing to cancel, and costs a call about a tenth of its round trip (BENCHMARKS.md).
    if (info.synchronous) return info.invoke(info, call.getArgs());
    // Nobody sees the outcome of a dropped call: its reason need not name the peer (which would
    // cost a copy on every call).
    return runTask([&]() { return info.invoke(info, call.getArgs()); }, [this]() {
      return contextCancelled(id_, id_, "the call was dropped by its caller");
    });
  });
}

kj::Promise<void> Actor::openContext(schema::Actor::OpenContextParams::Reader params,
                                     const ActorId& peer) {
  auto kind = params.getOptions().getKind() == schema::DialogueKind::STREAM_FROM
      ? FunctionKind::STREAM
      : FunctionKind::CONTEXT;
  // The context function's task; the context's own scope nests in it, so that the function's
  // coroutines find both (currentContext(), and the cancellation a shield holds back).
  auto task = newTaskScope();
  auto ctx = kj::refcounted<Context>(Context::Side::CALLEE, *this, peer.clone(),
                                     StreamOptions(),
                                     windowOptions(params.getOptions().getWindow()), *task);
  // The call's parameters stay valid while the call runs, which outlives the task's start.
  auto call = params.getCall();
  return runCalleeContext(kj::mv(ctx), kj::mv(task), params.getCaller(),
                          [this, call, kind](Context& ctx) {
                            auto& info = lookup(call, kind);
                            return info.invokeInContext(info, ctx, call.getArgs());
                          });
}

kj::Promise<void> Actor::wrapTask(kj::Promise<void> task) {
  return runTask([&]() { return kj::mv(task); }, [this]() {
    return contextCancelled(id_, id_, kj::str("a task of ", id_, " was abandoned"));
  });
}


void Actor::reportDescendant(pid_t pid, bool started, kj::StringPtr socketPath) {
  KJ_IF_MAYBE(ledger, descendants) {
    if (started) {
      ledger->started(pid, socketPath);
    } else {
      ledger->reaped(pid);
    }
  } else KJ_IF_MAYBE(p, parent_) {
    auto capability = p->capability();
    if (started) {
      auto request = capability.descendantStartedRequest();
      request.setPid(pid);
      request.setSocketPath(socketPath);
      background.add(request.send().ignoreResult());
    } else {
      auto request = capability.descendantReapedRequest();
      request.setPid(pid);
      background.add(request.send().ignoreResult());
    }
  }
}

kj::Promise<void> Actor::cancel(const ActorId& requester) {
  KJ_IF_MAYBE(c, cancelled) {
    return c->addBranch();
  }
  auto who = requester == id_ ? kj::str("itself") : requester.toString();
  TRACTOR_LOG(RUNTIME, "actor ", id_.toString(), " cancelled by ", who);
  auto why = contextCancelled(id_, requester,
                              kj::str("actor ", id_.toString(), " was cancelled by ", who));
  tasks->cancel(kj::cp(why));
  revocation->revoke(why);
  // Off the registry at once (not awaited: the message leaves before the acknowledgement does,
  // while the connection to the registrar, often the parent's, still stands).
  background.add(unregisterSelf());
  // Every task ends (a shielded section first finishes), with the cleanup its end set off; then
  // what else was shielded (outcomes being delivered) drains.
  auto& fork = cancelled.emplace(tasks->whenNestedDone()
                                     .then([this]() {
                                       return kj::evalLast([this]() { return keeper.drain(); });
                                     })
                                     .fork());
  return fork.addBranch();
}

void Actor::listen(const Address& address) {
  KJ_REQUIRE(listener.get() == nullptr, "an actor listens on one address only");
  listener = Listener::listen(*this, address);
}

kj::Maybe<const Address&> Actor::address() const {
  if (listener.get() == nullptr) return nullptr;
  return listener->address();
}

Address Actor::childAddress(const ActorId& child) const {
  KJ_IF_MAYBE(own, address()) {
    if (own->transport == Transport::TCP) {
      Address a;
      a.transport = Transport::TCP;
      a.host = kj::str(own->host);
      return a;
    }
  }
  return defaultAddress(Transport::UDS, child);
}

void Actor::becomeRegistrar(schema::Registrar::Client registry) {
  isRegistrar_ = true;
  registrar_ = kj::mv(registry);
  TRACTOR_LOG(RUNTIME, "this actor is the registrar");
}

void Actor::useRegistrar(schema::Registrar::Client registrar) { registrar_ = kj::mv(registrar); }

kj::Maybe<schema::Registrar::Client> Actor::registrar() {
  return registrar_.map([](schema::Registrar::Client& r) { return r; });
}

kj::Promise<void> Actor::registerSelf() {
  KJ_IF_MAYBE(r, registrar_) {
    KJ_IF_MAYBE(a, address()) {
      auto request = r->registerActorRequest();
      auto entry = request.initEntry();
      id_.copyTo(entry.initId());
      entry.setAddress(a->toString());
      registered = true;
      return request.send().ignoreResult();
    }
  }
  return kj::READY_NOW;
}

kj::Promise<void> Actor::unregisterSelf() {
  if (!registered) return kj::READY_NOW;
  registered = false;
  KJ_IF_MAYBE(r, registrar_) {
    auto request = r->unregisterActorRequest();
    request.setUuid(id_.uuid);
    auto done = request.send().ignoreResult().catch_([](kj::Exception&& e) {
      TRACTOR_LOG(DEBUG, "could not unregister: ", e.getDescription());
    });
    return done.exclusiveJoin(timer().afterDelay(UNREGISTER_TIMEOUT));
  }
  return kj::READY_NOW;
}

capnp::Capability::Client Actor::bootstrapService(uint64_t interfaceId) {
  KJ_REQUIRE(started, "actor not started");
  for (auto& s: services) {
    if (s.interfaceId == interfaceId) return s.client;
  }
  KJ_IF_MAYBE(info, findService(interfaceId)) {
    if (!isModuleEnabled(info->module)) {
      kj::throwFatalException(typedError(
          MODULE_NOT_EXPOSED, kj::str("module '", info->module, "' (service ",
                                      info->interfaceName, ") is not enabled in actor ",
                                      id_.toString())));
    }
    if (cancelCalled()) {
      kj::throwFatalException(typedError(
          CONTEXT_CANCELLED, kj::str("actor ", id_.toString(), " is shutting down")));
    }
    auto client = revocation->wrap(info->make());
    services.add(Service{interfaceId, client});
    return client;
  }
  kj::throwFatalException(typedError(
      SERVICE_NOT_FOUND, kj::str("actor ", id_.toString(), " serves no interface with id ",
                                 kj::hex(interfaceId), " (register one with TRACTOR_SERVICE)")));
}

Portal Actor::selfPortal() { return Portal(*this, serve(id_.clone()), id_.clone()); }

void Actor::adoptPeer(kj::Own<PeerConnection> connection) {
  auto& c = *connection;
  peers.add(kj::mv(connection));
  background.add(c.onDisconnect().then([this, &c]() {
    // Dropped a turn later: the connection must not be destroyed from its own callback.
    return kj::evalLater([this, &c]() {
      kj::Vector<kj::Own<PeerConnection>> kept;
      for (auto& p: peers) {
        if (p.get() != &c) kept.add(kj::mv(p));
      }
      peers = kj::mv(kept);
    });
  }));
}

kj::Maybe<PeerConnection&> Actor::findPeer(kj::StringPtr uuid) {
  for (auto& p: peers) {
    if (p->peer().uuid == uuid) return *p;
  }
  return nullptr;
}

void Actor::runInBackground(kj::Promise<void> work) { background.add(kj::mv(work)); }

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
  if (spec.hasBindAddress()) {
    listen(Address::parse(spec.getBindAddress()));
    // The registrar is reached through the parent (which reaches it through its own).
    useRegistrar(parentCap.getRegistrarRequest().send().getRegistrar());
    background.add(registerSelf());
  }
  parent_ = Portal(*this, kj::mv(parentCap), ActorId::fromReader(spec.getParent()));
  started = true;
  TRACTOR_LOG(RUNTIME, "started, serving modules [", kj::strArray(modules, ", "), "]");

  if (spec.getMainTask().isCall()) {
    // Started once the loop has nothing left to do, after the answer to `start` went out (a
    // timer fires only then): a main task that blocks its loop at once cannot hold up its
    // parent's `runInActor()`.
    mainCall = kj::heap<capnp::MallocMessageBuilder>();
    mainCall->setRoot(spec.getMainTask().getCall());
    auto task = timer().afterDelay(0 * kj::NANOSECONDS)
                    .then([this]() {
                      return invoke(mainCall->getRoot<schema::Call>().asReader());
                    })
                    .then([this](Value&& value) { mainValue = kj::mv(value); },
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
        outcome.setValue(revocation->guard(v->clone()).reader());
      }
    });
  }
  boxError(outcome.initError(),
           typedError(NO_RESULT, kj::str("actor ", id_.toString(), " has no main task")), id_);
  return kj::READY_NOW;
}

}  // namespace tractor
