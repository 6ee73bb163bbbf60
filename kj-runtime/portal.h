// Portal: the handle through which one actor calls into another.

#pragma once

#include <kj/async.h>
#include <kj/refcount.h>
#include <kj/time.h>
#include "kj-runtime/errors.h"
#include "kj-runtime/module.h"
#include "kj-runtime/payload.h"
#include "schema/actor.capnp.h"

namespace tractor {

constexpr kj::Duration CANCEL_TIMEOUT = 500 * kj::MILLISECONDS;
// How long `Portal::cancelActor()` waits for the remote runtime to acknowledge, by default.

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
          typedError(BAD_ARGUMENTS, kj::str("result of ", what(), ": ", e.getDescription())));
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
  Portal(schema::Actor::Client capability, ActorId id);

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
    State(schema::Actor::Client capability, ActorId id)
        : capability(kj::mv(capability)), id(kj::mv(id)) {}
  };
  kj::Own<State> state;

  kj::Promise<Value> send(capnp::Request<schema::Actor::RunParams, schema::Actor::RunResults>&&
                              request);
  kj::Promise<Value> resultValue();

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

kj::Exception transportError(const kj::Exception& e, const ActorId& peer);
// The error a caller sees when the connection to `peer` failed under a call: DISCONNECTED
// exceptions become `tractor::TransportClosed`; anything else passes unchanged.

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

template <typename T>
kj::Promise<T> Portal::waitForResult() {
  auto what = kj::str("the main task of ", state->id.toString());
  return resultValue().then([what = kj::mv(what)](Value&& v) {
    return _::decodeResult<T>(kj::mv(v), [&what]() { return kj::str(what); });
  });
}

}  // namespace tractor
