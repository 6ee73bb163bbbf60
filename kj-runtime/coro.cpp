// Coroutine support: the conversion of foreign exceptions. See coro.h.

#include "tractor/kj-runtime/coro.h"

#include <cxxabi.h>
#include <stdlib.h>
#include <exception>
#include <typeinfo>

namespace tractor {

const char CXX_EXCEPTION_FILE[] = "(C++ exception)";

namespace _ {
thread_local unsigned taskStartDepth = 0;
thread_local TaskScope* currentTaskScope = nullptr;
}  // namespace _

TaskScope::TaskScope(const void* kind): kind_(kind) {
  if (_::currentTaskScope != nullptr) parent_ = kj::addRef(*_::currentTaskScope);
}

TaskScope::TaskScope(const void* kind, TaskScope& parent)
    : kind_(kind), parent_(kj::addRef(parent)) {}

TaskScope::~TaskScope() noexcept(false) {}

kj::Maybe<TaskScope&> TaskScope::parent() const {
  KJ_IF_MAYBE(p, parent_) {
    return *const_cast<TaskScope*>(p->get());
  }
  return nullptr;
}

kj::Maybe<TaskScope&> TaskScope::current() {
  if (_::currentTaskScope == nullptr) return nullptr;
  return *_::currentTaskScope;
}

TaskScope::Enter::Enter(TaskScope& scope): saved(_::currentTaskScope) {
  _::currentTaskScope = &scope;
}

TaskScope::Enter::~Enter() noexcept { _::currentTaskScope = saved; }

namespace {

kj::String demangle(const char* mangled) {
  int status = 0;
  char* name = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || name == nullptr) return kj::str(mangled);
  auto result = kj::str(name);
  free(name);
  return result;
}

}  // namespace

kj::String demangledTypeName(const std::type_info& type) { return demangle(type.name()); }

kj::Exception currentExceptionAsKj() {
  try {
    throw;
  } catch (kj::Exception& e) {
    return kj::mv(e);
  } catch (std::exception& e) {
    return kj::Exception(kj::Exception::Type::FAILED, CXX_EXCEPTION_FILE, 0,
                         kj::str(demangle(typeid(e).name()), ": ", e.what()));
  } catch (...) {
    auto* type = abi::__cxa_current_exception_type();
    auto name = type == nullptr ? kj::str("unknown") : demangle(type->name());
    return kj::Exception(kj::Exception::Type::FAILED, CXX_EXCEPTION_FILE, 0,
                         kj::str(name, ": (not derived from std::exception)"));
  }
}

}  // namespace tractor
