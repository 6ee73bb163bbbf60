// Portal: the handle through which one actor calls into another.

#pragma once

#include <kj/async.h>
#include <kj/refcount.h>
#include <kj/time.h>
#include "tractor/kj-runtime/wire/errors.h"
#include "tractor/kj-runtime/actor/env.h"
#include "tractor/kj-runtime/actor/module.h"
#include "tractor/kj-runtime/actor/peer.h"
#include "tractor/kj-runtime/wire/payload.h"
#include "tractor/schema/actor.capnp.h"

namespace tractor {


namespace _ {  // private

template <typename T>
struct IsStringLike_: std::false_type {};
template <>
struct IsStringLike_<kj::String>: std::true_type {};
template <>
struct IsStringLike_<kj::StringPtr>: std::true_type {};
template <>
struct IsStringLike_<std::string>: std::true_type {};
template <>
struct IsStringLike_<const char*>: std::true_type {};
template <>
struct IsStringLike_<char*>: std::true_type {};

template <typename Param, typename Arg>
constexpr bool ARGUMENT_FITS =
    std::is_constructible_v<std::decay_t<Param>, Arg> ||
    (IsStringLike_<std::decay_t<Param>>::value && IsStringLike_<std::decay_t<Arg>>::value);

template <typename... Args>
void encodeCall(schema::Call::Builder call, kj::StringPtr module, kj::StringPtr function,
                Args&&... args) {
  // Fills in one call: its address and its arguments, each encoded with its own codec.
  call.setModule(module);
  call.setFunction(function);
  auto list = call.initArgs(sizeof...(Args));
  uint i = 0;
  (encodeValue<std::decay_t<Args>>(list[i++], args), ...);
  (void)i;
  (void)list;
}

template <typename Tuple, size_t... I>
void encodeCallFrom(schema::Call::Builder call, kj::StringPtr module, kj::StringPtr function,
                    Tuple&& args, std::index_sequence<I...>) {
  // `encodeCall` with the first elements of `args` (the last one is a block, not an argument).
  encodeCall(call, module, function, std::get<I>(args)...);
}

template <typename ParamsTuple, typename ArgsTuple, size_t... I>
constexpr bool argumentsFit(std::index_sequence<I...>) {
  // The compile-time check of `Portal::run()` for the dialogue forms, whose arguments are
  // followed by a block.
  return (ARGUMENT_FITS<std::tuple_element_t<I, ParamsTuple>, std::tuple_element_t<I, ArgsTuple>> &&
          ...);
}

template <typename ParamsTuple, typename... ArgsAndBlock>
constexpr void checkArgumentsAndBlock() {
  // What `openContext(fn, args..., block)` and `openStreamFrom(fn, args..., block)` check.
  constexpr size_t PARAMS = std::tuple_size_v<ParamsTuple>;
  static_assert(sizeof...(ArgsAndBlock) == PARAMS + 1,
                "(fn, args..., block): wrong number of arguments");
  static_assert(argumentsFit<ParamsTuple, std::tuple<ArgsAndBlock&&...>>(
                    std::make_index_sequence<PARAMS>()),
                "an argument does not convert to the function's parameter type");
}

template <typename T, typename Describe>
T decodeResult(Value&& value, Describe&& what) {
  // `what()` names the call for the error message; it is only called on failure, so the happy
  // path of a call allocates no description.
  if constexpr (std::is_void_v<T>) {
    (void)value;
    (void)what;
  } else if constexpr (std::is_same_v<T, Value>) {
    (void)what;
    return kj::mv(value);
  } else {
    try {
      return value.as<T>();
    } catch (const kj::Exception& e) {
      kj::throwFatalException(
          typedError(BAD_RESULT, kj::str("the result of ", what(), " is not a ",
                                         demangledTypeName(typeid(T)), ": ",
                                         e.getDescription())));
    }
  }
}

}  // namespace _

class Portal {
  // A handle to a remote actor: a client of its `Actor` capability plus its identity. Copies
  // share state, in particular the cached result of `waitForResult()`. A Portal stays usable after
  // its actor is gone: calls then fail with `tractor::TransportClosed`.
  //
  // Errors raised by a remote function arrive as remote errors (`RemoteActorError::from(e)` unpacks
  // them) with the original type name, message, source actor and remote stack.
public:
  Portal(ActorEnv& env, schema::Actor::Client capability, ActorId id);
  // Made by the runtime: a portal of the actor `env` to the actor `id`, reached through
  // `capability`.
  Portal(ActorEnv& env, schema::Actor::Client capability, ActorId id,
         kj::Own<kj::Refcounted> connection);
  // A portal over a peer connection (connection.h), which it keeps open.

  const ActorId& actorId() const { return state->id; }
  schema::Actor::Client capability() { return state->capability; }

  template <typename R, typename... Params, typename... Args>
  kj::Promise<typename _::Unpromised_<R>::Type> run(R (*fn)(Params...), Args&&... args);
  // Runs an exposed function (TRACTOR_EXPOSE) in the remote actor and returns its result.
  // The function's module must be enabled in the remote actor.

  template <typename T = Value, typename... Args>
  kj::Promise<T> run(kj::StringPtr module, kj::StringPtr function, Args&&... args);
  // The same, addressed by name: for a program that does not link the function. The result is
  // converted to T (a dynamic `Value` by default).

  template <typename T = Value>
  kj::Promise<T> waitForResult();
  // The result of a `runInActor` actor's main task. Cached: may be called again, also after the
  // nursery that ran the actor has closed.

  kj::Promise<bool> cancelActor(kj::Duration timeout = CANCEL_TIMEOUT,
                                bool raiseOnTimeout = false);
  // Asks the remote actor runtime to cancel all its tasks and shut down. Every context open
  // with it (from any actor) ends with a ContextCancelled naming this actor as the canceller.
  // The wait is shielded: a scope that this cancellation interrupts still gets the answer.

  template <typename Interface>
  typename Interface::Client bootstrap();
  // A typed client of the remote actor's service of `Interface` (TRACTOR_SERVICE, module.h):
  // ordinary Cap'n Proto calls, promise pipelining included, go straight to the actor's server.
  // Usable at once (the request is pipelined); if the actor refuses (ModuleNotExposed,
  // ServiceNotFound), calls fail with that error. Revoked when the actor is cancelled: calls in
  // flight and later ones fail with the ContextCancelled.

  template <typename R, typename... Params, typename... ArgsAndBlock>
  kj::Promise<void> openContext(R (*fn)(Context&, Params...), ArgsAndBlock&&... argsAndBlock);
  template <typename R, typename... Params, typename... ArgsAndBlock>
  kj::Promise<void> openContext(StreamOptions receiving, R (*fn)(Context&, Params...),
                                ArgsAndBlock&&... argsAndBlock);
  // Opens a context with the TRACTOR_CONTEXT function `fn` in the remote actor: the arguments,
  // then the block, `block(Context& ctx, Value first)` returning `kj::Promise<void>` (or
  // `Task<void>`), which runs once the callee called `started(first)`. Resolves when the block is
  // done and the callee's task has ended; see context.h for the outcome rules. `receiving`
  // applies to stream items that arrive before this side opens its stream.

  template <typename R, typename Spec, typename... Params, typename... ArgsAndBlock>
  kj::Promise<void> openContext(R (*fn)(CalleeContext<Spec>&, Params...),
                                ArgsAndBlock&&... argsAndBlock);
  template <typename R, typename Spec, typename... Params, typename... ArgsAndBlock>
  kj::Promise<void> openContext(StreamOptions receiving, R (*fn)(CalleeContext<Spec>&, Params...),
                                ArgsAndBlock&&... argsAndBlock);
  // The same with a typed context function (typed-context.h): the block is
  // `block(CallerContext<Spec>& ctx, SlotType<Started> first)`, with the function's own spec (a
  // block declaring another does not compile).

  template <typename... ArgsAndBlock>
  kj::Promise<void> openContext(kj::StringPtr module, kj::StringPtr function,
                                ArgsAndBlock&&... argsAndBlock);
  // The same, addressed by name. A block taking `CallerContext<Spec>&` opens a typed dialogue
  // with that spec, checked against the callee's at run time.

  template <typename R, typename... Params, typename... ArgsAndBlock>
  kj::Promise<void> openStreamFrom(R (*fn)(MsgStream&, Params...),
                                   ArgsAndBlock&&... argsAndBlock);
  template <typename... ArgsAndBlock>
  kj::Promise<void> openStreamFrom(kj::StringPtr module, kj::StringPtr function,
                                   ArgsAndBlock&&... argsAndBlock);
  // Tractor's legacy one-way stream: runs the TRACTOR_STREAM function `fn` and gives its items to
  // `block(MsgStream& stream)`. If the block returns before the stream ended, the remote function
  // is cancelled (and the cancellation absorbed).
  // Asks the remote actor runtime to cancel all its tasks and shut down. Returns true once it
  // acknowledged; false if it was already gone or did not answer within `timeout` (or raises
  // `tractor::ActorTooSlowError` then, with `raiseOnTimeout`).

private:
  struct State: public kj::Refcounted {
    schema::Actor::Client capability;
    ActorId id;
    kj::Maybe<kj::ForkedPromise<void>> result;
    kj::Maybe<Value> resultValue;
    kj::Maybe<kj::Exception> resultError;
    ActorEnv& env;
    // The actor this portal belongs to (its identity as a caller, its timer).
    kj::Own<kj::Refcounted> connection;
    // The peer connection this portal keeps open; null for the parent-child socketpair, which
    // the nursery owns.
    State(ActorEnv& env, schema::Actor::Client capability, ActorId id,
          kj::Own<kj::Refcounted> connection);
    ~State() noexcept(false);
  };
  kj::Own<State> state;

  kj::Promise<Value> send(capnp::Request<schema::Actor::RunParams, schema::Actor::RunResults>&&
                              request);
  kj::Promise<Value> resultValue();

  using OpenContextRequest =
      capnp::Request<schema::Actor::OpenContextParams, schema::Actor::OpenContextResults>;
  kj::Promise<void> openContextWith(OpenContextRequest&& request, StreamOptions receiving,
                                    kj::Function<kj::Promise<void>(Context&, Value)> block,
                                    PayloadSpec spec = PayloadSpec());
  kj::Promise<void> openStreamWith(OpenContextRequest&& request,
                                   kj::Function<kj::Promise<void>(MsgStream&)> block);
  template <bool STREAM_FROM, typename... ArgsAndBlock>
  kj::Promise<void> openByName(kj::StringPtr module, kj::StringPtr function,
                               StreamOptions receiving, ArgsAndBlock&&... argsAndBlock);

public:
  // Copies share the state, which is mutable by design (the result cache).
  Portal(const Portal& other): state(share(other)) {}
  Portal(Portal&&) = default;
  Portal& operator=(const Portal& other) {
    state = share(other);
    return *this;
  }
  static kj::Own<State> share(const Portal& other) {
    return kj::addRef(*const_cast<State*>(other.state.get()));
  }
  Portal& operator=(Portal&&) = default;
};


// =======================================================================================
// inline implementation

template <typename R, typename... Params, typename... Args>
kj::Promise<typename _::Unpromised_<R>::Type> Portal::run(R (*fn)(Params...), Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "wrong number of arguments");
  static_assert((_::ARGUMENT_FITS<Params, Args> && ...),
                "an argument does not convert to the function's parameter type");
  using T = typename _::Unpromised_<R>::Type;
  const FunctionInfo& info = requireExposed(fn);
  auto request = state->capability.runRequest();
  _::encodeCall(request.initCall(), info.module, info.name, kj::fwd<Args>(args)...);
  // Registrations live as long as the program.
  const FunctionInfo* called = &info;
  return send(kj::mv(request)).then([called](Value&& v) {
    return _::decodeResult<T>(kj::mv(v),
                              [called]() { return kj::str(called->module, '.', called->name); });
  });
}

template <typename T, typename... Args>
kj::Promise<T> Portal::run(kj::StringPtr module, kj::StringPtr function, Args&&... args) {
  auto request = state->capability.runRequest();
  _::encodeCall(request.initCall(), module, function, kj::fwd<Args>(args)...);
  // The caller's strings need not outlive this call.
  auto what = kj::str(module, '.', function);
  return send(kj::mv(request)).then([what = kj::mv(what)](Value&& v) {
    return _::decodeResult<T>(kj::mv(v), [&what]() { return kj::str(what); });
  });
}

template <typename Interface>
typename Interface::Client Portal::bootstrap() {
  auto request = state->capability.bootstrapServiceRequest();
  request.setInterfaceId(capnp::typeId<Interface>());
  return request.send().getService().template castAs<Interface>();
}

template <typename R, typename... Params, typename... ArgsAndBlock>
kj::Promise<void> Portal::openContext(R (*fn)(Context&, Params...),
                                      ArgsAndBlock&&... argsAndBlock) {
  return openContext(StreamOptions(), fn, kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <typename R, typename... Params, typename... ArgsAndBlock>
kj::Promise<void> Portal::openContext(StreamOptions receiving, R (*fn)(Context&, Params...),
                                      ArgsAndBlock&&... argsAndBlock) {
  _::checkArgumentsAndBlock<std::tuple<Params...>, ArgsAndBlock...>();
  const FunctionInfo& info = requireExposed(fn);
  return openByName<false>(info.module, info.name, kj::mv(receiving),
                           kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <typename R, typename Spec, typename... Params, typename... ArgsAndBlock>
kj::Promise<void> Portal::openContext(R (*fn)(CalleeContext<Spec>&, Params...),
                                      ArgsAndBlock&&... argsAndBlock) {
  return openContext(StreamOptions(), fn, kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <typename R, typename Spec, typename... Params, typename... ArgsAndBlock>
kj::Promise<void> Portal::openContext(StreamOptions receiving,
                                      R (*fn)(CalleeContext<Spec>&, Params...),
                                      ArgsAndBlock&&... argsAndBlock) {
  _::checkArgumentsAndBlock<std::tuple<Params...>, ArgsAndBlock...>();
  using Block = std::tuple_element_t<sizeof...(Params), std::tuple<ArgsAndBlock...>>;
  static_assert(std::is_same_v<_::BlockSpec<Block>, Spec>,
                "the block must take (CallerContext<Spec>&, SlotType<Started>) with the context "
                "function's own Spec");
  const FunctionInfo& info = requireExposed(fn);
  return openByName<false>(info.module, info.name, kj::mv(receiving),
                           kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <typename... ArgsAndBlock>
kj::Promise<void> Portal::openContext(kj::StringPtr module, kj::StringPtr function,
                                      ArgsAndBlock&&... argsAndBlock) {
  return openByName<false>(module, function, StreamOptions(),
                           kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <typename R, typename... Params, typename... ArgsAndBlock>
kj::Promise<void> Portal::openStreamFrom(R (*fn)(MsgStream&, Params...),
                                         ArgsAndBlock&&... argsAndBlock) {
  _::checkArgumentsAndBlock<std::tuple<Params...>, ArgsAndBlock...>();
  const FunctionInfo& info = requireExposed(fn);
  return openByName<true>(info.module, info.name, StreamOptions(),
                          kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <typename... ArgsAndBlock>
kj::Promise<void> Portal::openStreamFrom(kj::StringPtr module, kj::StringPtr function,
                                         ArgsAndBlock&&... argsAndBlock) {
  return openByName<true>(module, function, StreamOptions(),
                          kj::fwd<ArgsAndBlock>(argsAndBlock)...);
}

template <bool STREAM_FROM, typename... ArgsAndBlock>
kj::Promise<void> Portal::openByName(kj::StringPtr module, kj::StringPtr function,
                                     StreamOptions receiving, ArgsAndBlock&&... argsAndBlock) {
  static_assert(sizeof...(ArgsAndBlock) >= 1, "the last argument must be the block");
  constexpr size_t ARGS = sizeof...(ArgsAndBlock) - 1;
  auto all = std::forward_as_tuple(kj::fwd<ArgsAndBlock>(argsAndBlock)...);
  auto request = state->capability.openContextRequest();
  _::encodeCallFrom(request.initCall(), module, function, all, std::make_index_sequence<ARGS>());
  // Taken from the tuple as it was passed: a temporary block is moved into the dialogue (which
  // outlives this statement), a named one is referenced (kj::Function's rule).
  auto&& block = std::get<ARGS>(kj::mv(all));
  if constexpr (STREAM_FROM) {
    request.initOptions().setKind(schema::DialogueKind::STREAM_FROM);
    return openStreamWith(kj::mv(request), kj::fwd<decltype(block)>(block));
  } else {
    using Spec = _::BlockSpec<decltype(block)>;
    if constexpr (std::is_void_v<Spec>) {
      return openContextWith(kj::mv(request), kj::mv(receiving), kj::fwd<decltype(block)>(block));
    } else {
      return openContextWith(kj::mv(request), kj::mv(receiving),
                             _::typedCallerBlock<Spec>(kj::fwd<decltype(block)>(block)),
                             payloadSpecOf<Spec>());
    }
  }
}

template <typename T>
kj::Promise<T> Portal::waitForResult() {
  auto what = kj::str("the main task of ", state->id.toString());
  return resultValue().then([what = kj::mv(what)](Value&& v) {
    return _::decodeResult<T>(kj::mv(v), [&what]() { return kj::str(what); });
  });
}

}  // namespace tractor
