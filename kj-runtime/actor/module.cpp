// The function registry. See module.h.

#include "tractor/kj-runtime/actor/module.h"

#include <kj/map.h>

namespace tractor {

namespace {

struct Registry {
  kj::Vector<kj::Own<FunctionInfo>> functions;
  kj::HashMap<kj::String, const FunctionInfo*> byName;
  // Keyed "module\0function"-style as "module.function".
  kj::HashMap<uintptr_t, const FunctionInfo*> byAddress;
  kj::Vector<ServiceInfo> services;
};

Registry& registry() {
  // Constructed on first use, so registrations from any translation unit's static initialisers
  // find it ready.
  static Registry instance;
  return instance;
}

}  // namespace

namespace _ {

void registerFunction(FunctionInfo info) {
  auto& reg = registry();
  auto key = kj::str(info.module, '.', info.name);
  KJ_REQUIRE(reg.byName.find(key) == nullptr, "function exposed twice", key);
  auto owned = kj::heap<FunctionInfo>(info);
  reg.byName.insert(kj::mv(key), owned.get());
  reg.byAddress.upsert(reinterpret_cast<uintptr_t>(info.address), owned.get(),
                       [](const FunctionInfo*&, const FunctionInfo*) {});
  reg.functions.add(kj::mv(owned));
}

void registerService(ServiceInfo info) {
  auto& reg = registry();
  for (auto& s: reg.services) {
    KJ_REQUIRE(s.interfaceId != info.interfaceId, "service exposed twice", info.interfaceName);
  }
  reg.services.add(info);
}

kj::Maybe<kj::Exception> checkArity(const FunctionInfo& info, ArgsReader args) {
  if (args.size() == info.arity) return nullptr;
  return typedError(BAD_ARGUMENTS, kj::str(info.module, '.', info.name, " takes ", info.arity,
                                           " argument(s), got ", args.size()));
}

}  // namespace _

kj::Maybe<const FunctionInfo&> findFunction(kj::StringPtr module, kj::StringPtr name) {
  KJ_IF_MAYBE(info, registry().byName.find(kj::str(module, '.', name))) {
    return **info;
  }
  return nullptr;
}

kj::Maybe<const FunctionInfo&> findFunction(ErasedFunction address) {
  KJ_IF_MAYBE(info, registry().byAddress.find(reinterpret_cast<uintptr_t>(address))) {
    return **info;
  }
  return nullptr;
}

kj::StringPtr KJ_STRINGIFY(FunctionKind kind) {
  switch (kind) {
    case FunctionKind::FUNCTION:
      return "function";
    case FunctionKind::CONTEXT:
      return "context function";
    case FunctionKind::STREAM:
      return "stream function";
  }
  KJ_UNREACHABLE;
}

bool moduleExists(kj::StringPtr module) {
  for (auto& f: registry().functions) {
    if (f->module == module) return true;
  }
  for (auto& s: registry().services) {
    if (s.module == module) return true;
  }
  return false;
}

kj::Maybe<const ServiceInfo&> findService(uint64_t interfaceId) {
  for (auto& s: registry().services) {
    if (s.interfaceId == interfaceId) return s;
  }
  return nullptr;
}

kj::Promise<Value> _::runStreamFunction(Context& ctx,
                                        kj::Function<kj::Promise<void>(MsgStream&)> body) {
  return ctx.started()
      .then([&ctx, body = kj::mv(body)]() mutable { return ctx.openStream(kj::mv(body)); })
      .then([]() { return Value(); });
}

}  // namespace tractor
