// Coroutine support: the conversion of foreign exceptions. See coro.h.

#include "tractor/kj-runtime/async/coro.h"

#include <cxxabi.h>
#include <stdlib.h>
#include <exception>
#include <string>
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

void replaceAll(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

void dropAllocators(std::string& text) {
  // "std::vector<long, std::allocator<long> >" -> "std::vector<long>": the default allocator
  // argument, which every standard container spells out, says nothing to a reader.
  const std::string marker = ", std::allocator<";
  for (size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, at)) {
    size_t end = at + marker.size();
    for (int depth = 1; end < text.size() && depth > 0; end++) {
      if (text[end] == '<') depth++;
      if (text[end] == '>') depth--;
    }
    // Also the space g++ puts before the closing bracket of the container ("> >").
    if (end < text.size() && text[end] == ' ') end++;
    text.erase(at, end - at);
  }
}

kj::String demangle(const char* mangled) {
  // The type as its user wrote it: "std::string", not "std::__cxx11::basic_string<char,
  // std::char_traits<char>, std::allocator<char> >".
  int status = 0;
  char* name = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || name == nullptr) return kj::str(mangled);
  std::string text = name;
  free(name);
  replaceAll(text, "std::__cxx11::", "std::");
  replaceAll(text, "std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
             "std::string");
  replaceAll(text, "std::basic_string_view<char, std::char_traits<char> >", "std::string_view");
  dropAllocators(text);
  return kj::str(text.c_str());
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
