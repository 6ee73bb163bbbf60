// Function modules: the functions an actor can be asked to run, registered by module name.
//
//     int64_t add(int64_t a, int64_t b) { return a + b; }
//     TRACTOR_EXPOSE(math, add);   // module "math", function "add"
//
// Registration happens at static-initialisation time in every process of the program, so a child
// (the same executable, re-executed) has the same table. An actor serves only the modules listed
// in its `enableModules`; that list is its capability list.
//
// A function may take any parameters and return any type the payload codec handles (payload.h),
// `void`, or a `kj::Promise<T>` / `Task<T>` of one. Arguments are converted from the call's
// dynamic values before the function runs; a failed conversion raises `tractor::BadArguments`
// naming the argument. Exceptions the function throws (synchronously or through its promise) are
// the call's error, boxed back to the caller.
//
// Two more kinds of endpoint take the dialogue as their first parameter (see context.h):
//
//     Task<int64_t> echo(tractor::Context& ctx, int64_t start);   // TRACTOR_CONTEXT(mod, echo)
//     Task<void> ticks(tractor::MsgStream& out, int64_t count);   // TRACTOR_STREAM(mod, ticks)
//
// A context function is opened with `Portal::openContext()`; a stream function (tractor's legacy
// one-way stream) only sends items and is consumed with `Portal::openStreamFrom()`. Parameters
// of coroutine endpoints should be taken by value: the decoded arguments live only until the
// function's first suspension.

#pragma once

#include <capnp/capability.h>
#include <capnp/list.h>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include "tractor/kj-runtime/actor/context.h"
#include "tractor/kj-runtime/async/coro.h"
#include "tractor/kj-runtime/wire/errors.h"
#include "tractor/kj-runtime/wire/payload.h"
#include "tractor/kj-runtime/actor/typed-context.h"

namespace tractor {

using ArgsReader = capnp::List<schema::Value>::Reader;
using ErasedFunction = void (*)();

enum class FunctionKind: uint8_t {
  FUNCTION,
  // TRACTOR_EXPOSE: called with `Portal::run()`.
  CONTEXT,
  // TRACTOR_CONTEXT: opened with `Portal::openContext()`.
  STREAM,
  // TRACTOR_STREAM: consumed with `Portal::openStreamFrom()`.
};

kj::StringPtr KJ_STRINGIFY(FunctionKind kind);
// "function", "context function" or "stream function".

struct FunctionInfo {
  // One exposed function.
  kj::StringPtr module;
  kj::StringPtr name;
  ErasedFunction address;
  FunctionKind kind;
  kj::Promise<Value> (*invoke)(const FunctionInfo& self, ArgsReader args);
  // FUNCTION: converts the arguments, runs the function and encodes its result.
  kj::Promise<Value> (*invokeInContext)(const FunctionInfo& self, Context& ctx, ArgsReader args);
  // CONTEXT and STREAM: the same, with the dialogue's callee-side context.
  uint arity;
  // Arguments the caller passes (the Context or MsgStream parameter not counted).
  bool synchronous = false;
  // FUNCTION returning a plain value (not a kj::Promise or Task): it runs to its end inside
  // `invoke`, so nothing can cancel it midway and no coroutine of its own can inherit a scope.
};

struct ServiceInfo {
  // One user-defined Cap'n Proto interface an actor can serve (TRACTOR_SERVICE).
  kj::StringPtr module;
  kj::StringPtr interfaceName;
  uint64_t interfaceId;
  capnp::Capability::Client (*make)();
  // Makes the actor's server; called once per actor, on the first request.
};

kj::Maybe<const ServiceInfo&> findService(uint64_t interfaceId);

kj::Maybe<const FunctionInfo&> findFunction(kj::StringPtr module, kj::StringPtr name);
kj::Maybe<const FunctionInfo&> findFunction(ErasedFunction address);
bool moduleExists(kj::StringPtr module);
// True when at least one function or service is registered under `module` in this executable.

namespace _ {  // private

void registerFunction(FunctionInfo info);
void registerService(ServiceInfo info);

class ServiceRegistration {
  // A static object whose construction registers one service (see TRACTOR_SERVICE).
public:
  ServiceRegistration(ServiceInfo info) { registerService(info); }
};

template <typename Param>
std::decay_t<Param> decodeArgument(const FunctionInfo& info, ArgsReader args, uint index) {
  using T = std::decay_t<Param>;
  static_assert(HAS_VALUE_CODEC<T>, "parameter type has no payload codec (see payload.h)");
  try {
    return decodeValue<T>(args[index]);
  } catch (const kj::Exception& e) {
    kj::throwFatalException(typedError(
        BAD_ARGUMENTS, kj::str("argument ", index + 1, " (", demangledTypeName(typeid(T)),
                               ") of ", info.module, '.', info.name, ": ", e.getDescription())));
  }
}

template <typename R, typename... Params, typename Call, size_t... I>
kj::Promise<Value> callDecoded(const FunctionInfo& info, ArgsReader args, Call&& call,
                               std::index_sequence<I...>) {
  // Converts the arguments and passes them to `call`, whose result (of type R) is encoded.
  // Braced initialisation converts the arguments left to right.
  std::tuple<std::decay_t<Params>...> decoded{decodeArgument<Params>(info, args, I)...};
  (void)decoded;
  (void)info;
  (void)args;
  if constexpr (std::is_void_v<R>) {
    call(kj::mv(std::get<I>(decoded))...);
    return Value();
  } else {
    using T = typename Unpromised_<R>::Type;
    if constexpr (std::is_same_v<T, R>) {
      return Value::of(call(kj::mv(std::get<I>(decoded))...));
    } else if constexpr (std::is_void_v<T>) {
      kj::Promise<void> promise = call(kj::mv(std::get<I>(decoded))...);
      return promise.then([]() { return Value(); });
    } else {
      kj::Promise<T> promise = call(kj::mv(std::get<I>(decoded))...);
      return promise.then([](T&& result) { return Value::of(result); });
    }
  }
}

kj::Maybe<kj::Exception> checkArity(const FunctionInfo& info, ArgsReader args);
// BadArguments when the call does not have `info.arity` arguments.

template <typename R, typename... Params>
kj::Promise<Value> invoke(const FunctionInfo& info, ArgsReader args) {
  try {
    KJ_IF_MAYBE(e, checkArity(info, args)) {
      return kj::mv(*e);
    }
    auto fn = reinterpret_cast<R (*)(Params...)>(info.address);
    return callDecoded<R, Params...>(info, args, fn, std::index_sequence_for<Params...>());
  } catch (...) {
    return currentExceptionAsKj();
  }
}

template <typename R, typename... Params>
kj::Promise<Value> invokeContext(const FunctionInfo& info, Context& ctx, ArgsReader args) {
  try {
    KJ_IF_MAYBE(e, checkArity(info, args)) {
      return kj::mv(*e);
    }
    auto fn = reinterpret_cast<R (*)(Context&, Params...)>(info.address);
    auto call = [fn, &ctx](auto&&... decoded) {
      return fn(ctx, kj::fwd<decltype(decoded)>(decoded)...);
    };
    return callDecoded<R, Params...>(info, args, call, std::index_sequence_for<Params...>());
  } catch (...) {
    return currentExceptionAsKj();
  }
}

template <typename Spec, typename R, typename... Params>
kj::Promise<Value> invokeTypedContext(const FunctionInfo& info, Context& ctx, ArgsReader args) {
  using T = typename Unpromised_<R>::Type;
  using Result = typename Spec::ResultType;
  static_assert(std::is_same_v<Result, Value> || std::is_same_v<T, SlotType<Result>>,
                "a typed context function returns its spec's result type, Typed<Result>");
  try {
    KJ_IF_MAYBE(e, checkArity(info, args)) {
      return kj::mv(*e);
    }
    // Before the function runs: the caller's first items may arrive once it called started().
    ctx.setSpec(payloadSpecOf<Spec>());
    auto fn = reinterpret_cast<R (*)(CalleeContext<Spec>&, Params...)>(info.address);
    auto typed = kj::heap<CalleeContext<Spec>>(ctx);
    auto& view = *typed;
    auto call = [fn, &view](auto&&... decoded) {
      return fn(view, kj::fwd<decltype(decoded)>(decoded)...);
    };
    return callDecoded<R, Params...>(info, args, call, std::index_sequence_for<Params...>())
        .attach(kj::mv(typed));
  } catch (...) {
    return currentExceptionAsKj();
  }
}

kj::Promise<Value> runStreamFunction(Context& ctx,
                                     kj::Function<kj::Promise<void>(MsgStream&)> body);
// A stream function's dialogue: `started()`, then `body` with the open stream, then a null
// result.

template <typename R, typename... Params, size_t... I>
kj::Promise<Value> invokeStreamWith(const FunctionInfo& info, Context& ctx, ArgsReader args,
                                    std::index_sequence<I...>) {
  static_assert(std::is_void_v<typename Unpromised_<R>::Type>,
                "a stream function returns void, kj::Promise<void> or Task<void>");
  auto fn = reinterpret_cast<R (*)(MsgStream&, Params...)>(info.address);
  (void)args;  // unused by a function with no parameters
  // The arguments are converted before the dialogue starts, so that bad ones fail the call.
  using Decoded = std::tuple<std::decay_t<Params>...>;
  auto decoded = kj::heap<Decoded>(Decoded{decodeArgument<Params>(info, args, I)...});
  return runStreamFunction(
      ctx, [fn, decoded = kj::mv(decoded)](MsgStream& stream) mutable -> kj::Promise<void> {
        (void)decoded;
        if constexpr (std::is_void_v<R>) {
          fn(stream, kj::mv(std::get<I>(*decoded))...);
          return kj::READY_NOW;
        } else {
          return fn(stream, kj::mv(std::get<I>(*decoded))...);
        }
      });
}

template <typename R, typename... Params>
kj::Promise<Value> invokeStream(const FunctionInfo& info, Context& ctx, ArgsReader args) {
  try {
    KJ_IF_MAYBE(e, checkArity(info, args)) {
      return kj::mv(*e);
    }
    return invokeStreamWith<R, Params...>(info, ctx, args, std::index_sequence_for<Params...>());
  } catch (...) {
    return currentExceptionAsKj();
  }
}

template <typename F>
struct KindOf_ {
  static constexpr FunctionKind VALUE = FunctionKind::FUNCTION;
};
template <typename R, typename... Params>
struct KindOf_<R (*)(Context&, Params...)> {
  static constexpr FunctionKind VALUE = FunctionKind::CONTEXT;
};
template <typename R, typename Spec, typename... Params>
struct KindOf_<R (*)(CalleeContext<Spec>&, Params...)> {
  static constexpr FunctionKind VALUE = FunctionKind::CONTEXT;
};
template <typename R, typename... Params>
struct KindOf_<R (*)(MsgStream&, Params...)> {
  static constexpr FunctionKind VALUE = FunctionKind::STREAM;
};

class Registration {
  // A static object whose construction registers one function (see TRACTOR_EXPOSE).
public:
  template <typename R, typename... Params>
  Registration(const char* module, const char* name, R (*fn)(Params...)) {
    registerFunction({module, name, reinterpret_cast<ErasedFunction>(fn), FunctionKind::FUNCTION,
                      &invoke<R, Params...>, nullptr, static_cast<uint>(sizeof...(Params)),
                      std::is_same_v<typename Unpromised_<R>::Type, R>});
  }
  template <typename R, typename... Params>
  Registration(const char* module, const char* name, R (*fn)(Context&, Params...)) {
    registerFunction({module, name, reinterpret_cast<ErasedFunction>(fn), FunctionKind::CONTEXT,
                      nullptr, &invokeContext<R, Params...>,
                      static_cast<uint>(sizeof...(Params))});
  }
  template <typename R, typename Spec, typename... Params>
  Registration(const char* module, const char* name, R (*fn)(CalleeContext<Spec>&, Params...)) {
    (void)payloadSpecOf<Spec>();  // registers the spec's type names for error messages
    registerFunction({module, name, reinterpret_cast<ErasedFunction>(fn), FunctionKind::CONTEXT,
                      nullptr, &invokeTypedContext<Spec, R, Params...>,
                      static_cast<uint>(sizeof...(Params))});
  }
  template <typename R, typename... Params>
  Registration(const char* module, const char* name, R (*fn)(MsgStream&, Params...)) {
    registerFunction({module, name, reinterpret_cast<ErasedFunction>(fn), FunctionKind::STREAM,
                      nullptr, &invokeStream<R, Params...>,
                      static_cast<uint>(sizeof...(Params))});
  }
};

}  // namespace _

template <typename R, typename... Params>
const FunctionInfo& requireExposed(R (*fn)(Params...)) {
  // The registration of `fn`; a clear error if it was never exposed.
  KJ_IF_MAYBE(info, findFunction(reinterpret_cast<ErasedFunction>(fn))) {
    return *info;
  }
  kj::throwFatalException(typedError(
      FUNCTION_NOT_FOUND,
      kj::str("the function of type ", demangledTypeName(typeid(fn)), " is not exposed: "
              "register it with TRACTOR_EXPOSE(module, function)")));
}

}  // namespace tractor

#define TRACTOR_SERVICE(module, Interface, factory)                                        \
  static const ::tractor::_::ServiceRegistration KJ_UNIQUE_NAME(tractorService_)(           \
      ::tractor::ServiceInfo{#module, #Interface, ::capnp::typeId<Interface>(),             \
                             []() -> ::capnp::Capability::Client {                          \
                               return typename Interface::Client(factory());                \
                             }})
// Registers a service: an actor that enables `module` serves the Cap'n Proto interface
// `Interface` (generated by `tractor_add_schema()` from the user's own schema) with the server
// `factory()` returns (a `kj::Own<Interface::Server>` or an `Interface::Client`). A parent gets
// a typed client with `portal.bootstrap<Interface>()`; see portal.h.

#define TRACTOR_CONTEXT(module, function)                                               \
  static_assert(::tractor::_::KindOf_<decltype(&function)>::VALUE ==                   \
                    ::tractor::FunctionKind::CONTEXT,                                  \
                "TRACTOR_CONTEXT needs R " #function "(tractor::Context& or "         \
                "tractor::CalleeContext<Spec>&, params...)");                          \
  TRACTOR_EXPOSE(module, function)
// Registers a context function `R function(tractor::Context&, Params...)` (see context.h), or a
// typed one, `Typed<Result> function(tractor::CalleeContext<Spec>&, Params...)` (or a promise
// of it; see typed-context.h).
#define TRACTOR_STREAM(module, function)                                                 \
  static_assert(::tractor::_::KindOf_<decltype(&function)>::VALUE ==                     \
                    ::tractor::FunctionKind::STREAM,                                     \
                "TRACTOR_STREAM needs R " #function "(tractor::MsgStream&, params...)"); \
  TRACTOR_EXPOSE(module, function)
// Registers a stream function `R function(tractor::MsgStream&, Params...)`; see context.h.

#define TRACTOR_EXPOSE(module, function)                                          \
  static const ::tractor::_::Registration KJ_UNIQUE_NAME(tractorExposed_)(#module, \
                                                                          #function, &function)
