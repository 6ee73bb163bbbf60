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

#pragma once

#include <capnp/list.h>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include "kj-runtime/coro.h"
#include "kj-runtime/errors.h"
#include "kj-runtime/payload.h"

namespace tractor {

using ArgsReader = capnp::List<schema::Value>::Reader;
using ErasedFunction = void (*)();

struct FunctionInfo {
  // One exposed function.
  kj::StringPtr module;
  kj::StringPtr name;
  ErasedFunction address;
  kj::Promise<Value> (*invoke)(const FunctionInfo& self, ArgsReader args);
  // Converts the arguments, runs the function and encodes its result.
  uint arity;
};

kj::Maybe<const FunctionInfo&> findFunction(kj::StringPtr module, kj::StringPtr name);
kj::Maybe<const FunctionInfo&> findFunction(ErasedFunction address);
bool moduleExists(kj::StringPtr module);
// True when at least one function is registered under `module` in this executable.

namespace _ {  // private

void registerFunction(FunctionInfo info);

template <typename T>
struct Unpromised_ {
  using Type = T;
};
template <typename T>
struct Unpromised_<kj::Promise<T>> {
  using Type = T;
};
template <typename T>
struct Unpromised_<Task<T>> {
  using Type = T;
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

template <typename R, typename... Params, size_t... I>
kj::Promise<Value> invokeWith(R (*fn)(Params...), const FunctionInfo& info, ArgsReader args,
                              std::index_sequence<I...>) {
  // Braced initialisation converts the arguments left to right.
  std::tuple<std::decay_t<Params>...> decoded{decodeArgument<Params>(info, args, I)...};
  (void)decoded;
  (void)info;
  (void)args;
  if constexpr (std::is_void_v<R>) {
    fn(kj::mv(std::get<I>(decoded))...);
    return Value();
  } else {
    using T = typename Unpromised_<R>::Type;
    if constexpr (std::is_same_v<T, R>) {
      return Value::of(fn(kj::mv(std::get<I>(decoded))...));
    } else if constexpr (std::is_void_v<T>) {
      kj::Promise<void> promise = fn(kj::mv(std::get<I>(decoded))...);
      return promise.then([]() { return Value(); });
    } else {
      kj::Promise<T> promise = fn(kj::mv(std::get<I>(decoded))...);
      return promise.then([](T&& result) { return Value::of(result); });
    }
  }
}

template <typename R, typename... Params>
kj::Promise<Value> invoke(const FunctionInfo& info, ArgsReader args) {
  try {
    if (args.size() != sizeof...(Params)) {
      return typedError(BAD_ARGUMENTS, kj::str(info.module, '.', info.name, " takes ",
                                               sizeof...(Params), " argument(s), got ",
                                               args.size()));
    }
    return invokeWith(reinterpret_cast<R (*)(Params...)>(info.address), info, args,
                      std::index_sequence_for<Params...>());
  } catch (...) {
    return currentExceptionAsKj();
  }
}

class Registration {
  // A static object whose construction registers one function (see TRACTOR_EXPOSE).
public:
  template <typename R, typename... Params>
  Registration(const char* module, const char* name, R (*fn)(Params...)) {
    registerFunction({module, name, reinterpret_cast<ErasedFunction>(fn), &invoke<R, Params...>,
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
  KJ_FAIL_REQUIRE("function is not exposed: register it with TRACTOR_EXPOSE(module, function)");
}

}  // namespace tractor

#define TRACTOR_EXPOSE(module, function)                                          \
  static const ::tractor::_::Registration KJ_UNIQUE_NAME(tractorExposed_)(#module, \
                                                                          #function, &function)
