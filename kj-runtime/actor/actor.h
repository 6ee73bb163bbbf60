// The actor runtime: what one process is while it runs as an actor.

#pragma once

#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/vector.h>
#include "tractor/kj-runtime/net/address.h"
#include "tractor/kj-runtime/wire/identity.h"
#include "tractor/kj-runtime/async/log.h"
#include "tractor/kj-runtime/actor/descendants.h"
#include "tractor/kj-runtime/actor/env.h"
#include "tractor/kj-runtime/actor/portal.h"
#include "tractor/kj-runtime/wire/revoker.h"
#include "tractor/kj-runtime/async/task-group.h"

namespace tractor {

class Listener;
class PeerConnection;

struct ActorOptions {
  // How to start a child actor. Built by chaining, which also works inside coroutines (g++ 12
  // cannot put braced lists of strings into a coroutine frame); each setter returns the options
  // by value, so `options = kj::mv(options).enable("io")` keeps what `options` held:
  //
  //     n.startActor("worker", tractor::enable("math", "io").withLogLevel("debug"))

  kj::Vector<kj::String> enableModules;
  // The modules (TRACTOR_EXPOSE names) the child serves; its capability list.
  kj::Maybe<kj::String> logLevel;
  // Defaults to the parent's level.

  ActorOptions enable(kj::StringPtr module) && {
    enableModules.add(kj::str(module));
    return kj::mv(*this);
  }
  ActorOptions withLogLevel(kj::StringPtr level) && {
    logLevel = kj::str(level);
    return kj::mv(*this);
  }
};

template <typename... Names>
ActorOptions enable(Names&&... modules) {
  // Options that enable the named modules.
  ActorOptions options;
  (options.enableModules.add(kj::str(modules)), ...);
  return options;
}

class Actor final: public ActorEnv {
  // The one actor this process is: its identity, its event loop and timer, the modules it serves,
  // and the tasks it runs on behalf of peers. Created by `tractor::main()` (the root) or by the
  // child entry point; reachable from anywhere in the actor's code through `Actor::current()`.
  //
  // Every function a peer runs here is wrapped so that `cancel()` can end it; what must still
  // finish after a cancellation (tearing down child actors, shielded cleanup) goes through the
  // actor's shield keeper, which `cancel()` and the process exit wait for.
public:
  Actor(kj::AsyncIoContext& io, ActorId id, bool isRoot);
  ~Actor() noexcept(false);
  KJ_DISALLOW_COPY(Actor);

  static Actor& current();
  // The actor running in this thread; raises `tractor::NoRuntime` if there is none.
  static kj::Maybe<Actor&> tryCurrent();

  const ActorId& id() const override { return id_; }
  kj::Maybe<const ActorId&> parentId() const override;
  bool isRoot() const { return isRoot_; }
  kj::Timer& timer() override { return io_.provider->getTimer(); }
  kj::AsyncIoContext& io() override { return io_; }

  kj::Maybe<Portal> parent() const;
  // A portal to the parent actor (null in the root). Calls through it run in the parent's
  // enabled modules.

  void enableModules(kj::ArrayPtr<const kj::String> modules);
  // Adds modules this actor serves; each must have functions registered in this executable.
  bool isModuleEnabled(kj::StringPtr module) const;
  kj::ArrayPtr<const kj::String> enabledModules() const { return modules; }

  schema::Actor::Client serve(kj::Maybe<ActorId> peer) override;
  // A new capability to this actor, for `peer` (used in logs and as the canceller's identity).

  kj::Promise<Value> invoke(schema::Call::Reader call);
  // Runs one call from a peer as a task of this actor (see `runTask()`): refuses modules that are
  // not enabled (ModuleNotExposed), unknown functions (FunctionNotFound) and context or stream
  // functions (ContextError). Dropping the promise (the peer dropped its call) cancels the task.

  kj::Promise<void> openContext(schema::Actor::OpenContextParams::Reader params,
                                const ActorId& peer);
  // Runs the callee's side of a context `peer` opened (see context.h): the same refusals as
  // `invoke()`, delivered to the caller as the dialogue's outcome.

  kj::Promise<void> cancel(const ActorId& requester);
  // Cancels every task of this actor (see `runTask()`) — each open context ends with a
  // ContextCancelled naming `requester` — waits until each has ended (a shielded section holds
  // its task's cancellation back), then for the shielded cleanup they leave behind (child actors
  // being torn down, outcomes being delivered). Idempotent: later calls wait for the same
  // teardown.
  bool cancelCalled() const { return cancelled != nullptr; }

  template <typename Func>
  auto runTask(Func&& start, kj::Function<kj::Exception()> abandoned);
  // Runs `start()` (returning a kj::Promise<T> or Task<T>) as a task of this actor, in a
  // CancelScope of its own nested in the actor's (task-group.h): `cancel()` ends it with a
  // ContextCancelled; dropping the returned promise abandons it (cancelled with `abandoned()`).
  kj::Promise<void> wrapTask(kj::Promise<void> task);
  // The same for a promise made elsewhere (its coroutines do not run in the task's scope, so a
  // shield inside them does not hold the cancellation back).
  kj::Own<CancelScope> newTaskScope();
  // A scope nested in the actor's, for a task the runtime starts itself (a context's side).

  ShieldKeeper& shieldKeeper() { return keeper; }

  void setDescendantLedger(DescendantLedger& ledger) { descendants = ledger; }
  // In the root: where the tree's processes are recorded (spawn/'s OrphanReaper).
  void reportDescendant(pid_t pid, bool started, kj::StringPtr socketPath = nullptr);
  // Records that a process of this actor's subtree started or was reaped: locally in the root,
  // else relayed to the parent (in order, without waiting).

  // ---- listening and discovery (address.h, connection.h, registrar.h) ------------------------
  void listen(const Address& address);
  // Starts accepting peers at `address` (once per actor).
  kj::Maybe<const Address&> address() const;
  // Where this actor listens, once it does.
  Address childAddress(const ActorId& child) const;
  // Where a child of this actor listens: a fresh socket file, or the same TCP host on a random
  // port.
  bool isRegistrar() const override { return isRegistrar_; }
  void becomeRegistrar(schema::Registrar::Client registry);
  // Serves `registry` (registrar.h's `newRegistrar()`) to the tree as its registrar.
  void useRegistrar(schema::Registrar::Client registrar);
  kj::Maybe<schema::Registrar::Client> registrar();
  kj::Promise<void> registerSelf();
  // Registers this actor's name, uuid and address with its registrar.
  kj::Promise<void> unregisterSelf();
  // The reverse, bounded by UNREGISTER_TIMEOUT; never fails.
  capnp::Capability::Client bootstrapService(uint64_t interfaceId);
  // This actor's server of a user-defined interface (TRACTOR_SERVICE), made on first request,
  // behind a membrane that `cancel()` revokes. Raises ModuleNotExposed when its module is not
  // enabled here, ServiceNotFound when no service has that interface.
  Revoker& revoker() override { return *revocation; }
  // The membrane policy `cancel()` revokes: services and capabilities in function results.

  Portal selfPortal();
  // A portal to this actor that needs no connection.
  void adoptPeer(kj::Own<PeerConnection> connection) override;
  // Keeps a peer connection until it disconnects or this actor ends.
  kj::Maybe<PeerConnection&> findPeer(kj::StringPtr uuid);
  void runInBackground(kj::Promise<void> work) override;
  // Fire-and-forget work whose failure is only logged.

  // ---- the child's side of the spawn handshake ----------------------------------------------
  ActorId start(schema::SpawnSpec::Reader spec, schema::Actor::Client parent);
  // Becomes the actor `spec` describes. Raises if the actor was already started or an enabled
  // module is unknown to this executable.
  kj::Promise<void> mainTaskOutcome(schema::Outcome::Builder outcome);
  // Fills `outcome` with the main task's result once it is done (NoResult if there is none).

private:
  const FunctionInfo& lookup(schema::Call::Reader call, FunctionKind kind);
  // The function `call` names, or raises why it cannot be called as `kind`.

  kj::AsyncIoContext& io_;
  ActorId id_;
  bool isRoot_;
  bool started = false;
  kj::Vector<kj::String> modules;
  kj::Maybe<Portal> parent_;
  ShieldKeeper keeper;
  kj::Own<CancelScope> tasks;
  // The scope every task of the actor is nested in; `cancel()` cancels it.
  kj::Maybe<kj::ForkedPromise<void>> cancelled;
  kj::Maybe<DescendantLedger&> descendants;
  TaskErrorLog logErrors{"background message failed"};
  kj::TaskSet background;
  // Fire-and-forget messages (descendant reports); a failure is logged.
  kj::Maybe<kj::ForkedPromise<void>> mainTask;
  kj::Own<capnp::MallocMessageBuilder> mainCall;
  // The main task's call, kept from the spawn spec until the task started.
  kj::Maybe<Value> mainValue;
  kj::Maybe<kj::Exception> mainError;

  kj::Own<Revoker> revocation;
  // Revoked by `cancel()`: every service capability, and every capability in a result.
  struct Service {
    uint64_t interfaceId;
    capnp::Capability::Client client;
  };
  kj::Vector<Service> services;

  kj::Own<Listener> listener;
  bool isRegistrar_ = false;
  bool registered = false;
  kj::Maybe<schema::Registrar::Client> registrar_;
  kj::Vector<kj::Own<PeerConnection>> peers;
};

constexpr kj::Duration UNREGISTER_TIMEOUT = 500 * kj::MILLISECONDS;
// How long an ending actor waits for its registrar to take it off the registry.

// =======================================================================================
// inline implementation

template <typename Func>
auto Actor::runTask(Func&& start, kj::Function<kj::Exception()> abandoned) {
  auto scope = newTaskScope();
  return scope->run(kj::fwd<Func>(start), kj::mv(abandoned));
}

}  // namespace tractor
