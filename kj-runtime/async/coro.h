// C++20 coroutines on KJ 0.9.2 promises.
//
// KJ 0.9.2 has no coroutine support, and g++ 12 cannot compile a coroutine whose return type has a
// throwing destructor (which `kj::Promise<T>` has). So coroutines return `tractor::Task<T>`: a
// move-only handle with a `noexcept` destructor that converts to `kj::Promise<T>` and can itself
// be awaited. Inside a `Task` coroutine, `co_await` accepts any `kj::Promise<U>` or `Task<U>`, and
// `co_return` accepts a value or (for non-void T) a `kj::Promise<T>`.
//
//     tractor::Task<int> twice(kj::Promise<int> p) { co_return 2 * co_await p; }
//     kj::Promise<int> q = twice(kj::Promise<int>(21));   // starts the body
//
// Semantics, each one relied upon by the rest of the runtime:
// - The body starts when the Task is converted to a promise (or awaited) and runs synchronously up
//   to its first suspension. A Task dropped unconverted never runs. Past MAX_EAGER_START_DEPTH
//   nested starts (coroutines awaiting coroutines before any suspends), a body starts from the
//   event loop instead, so arbitrarily deep chains do not overflow the stack.
// - Dropping the promise destroys the coroutine frame: whatever it is awaiting is cancelled (the
//   awaited promise is destroyed) and its locals' destructors run. That is cancellation.
// - An exception escaping the body rejects the promise. Non-KJ exceptions become a
//   `kj::Exception` whose description starts with the demangled C++ type name (see
//   `currentExceptionAsKj()`), so the type survives the trip to another actor.
// - Every `co_await` of a promise resumes in a later event-loop turn, so long chains of awaits do
//   not grow the stack.
//
// g++ 12 miscompiles two constructs inside coroutine bodies (clang 14 is fine): a braced list
// of several elements (`std::vector<int>{1, 2}`, an array of strings) fails with "array used as
// initializer", and `co_await` in both arms of `?:` destroys the result twice. Several `co_await`s
// among one call's arguments misbehaved too. Build such values in an ordinary function, use
// `if`/`else`, and await into named locals first.
//
// Lifetimes: take coroutine parameters by value. Reference parameters and lambda captures dangle
// once the caller's full-expression ends, unless the caller outlives the frame (as in the
// runtime's callback-scoped APIs such as `openNursery(block)`, which keep `block` alive).
//
// Task-local scope: a coroutine inherits the `TaskScope` that was current where it was started
// (converted to a promise or awaited; trio's task context, Python's contextvars), and that scope
// is current again whenever its body runs. The runtime makes a scope current around the code it
// starts (a context function, an `openContext` block, a cancellable task), so every Task
// coroutine started from there finds it: that is how `currentContext()` knows its context and
// how `shield()` knows which cancellation it holds back. Plain `.then()` continuations inherit
// nothing.

#pragma once

#include <kj/async.h>
#include <kj/debug.h>
#include <kj/refcount.h>
#include <coroutine>
#include <type_traits>
#include <typeinfo>

namespace tractor {

template <typename T>
class Task;

kj::Exception currentExceptionAsKj();
// Converts the exception being handled (call only inside a `catch` block) into a kj::Exception.
// A kj::Exception is returned as is; any other type becomes FAILED with the description
// "<demangled type>: <what()>" and the file `CXX_EXCEPTION_FILE`, which lets error boxing recover
// the original type name.

kj::String demangledTypeName(const std::type_info& type);
// The readable name of a C++ type ("std::runtime_error").

extern const char CXX_EXCEPTION_FILE[];
// The `file` of every kj::Exception made from a non-KJ C++ exception by `currentExceptionAsKj()`.

constexpr unsigned MAX_EAGER_START_DEPTH = 32;
// How many coroutine starts may nest on the machine stack before one is deferred to the loop.

class TaskScope: public kj::Refcounted {
  // A scope that Task coroutines run in: whatever was current where a coroutine was started is
  // current whenever its body runs (see the file comment). Scopes nest: each one's parent is the
  // scope that was current when it was made. Subclasses say what a scope stands for (a context,
  // a cancel scope); `find<T>()` finds the innermost of a kind. Refcounted: a coroutine frame
  // keeps the scope it inherited alive, also a frame that outlives the work that made it (shielded
  // cleanup), so a scope must not refer to objects that may be gone by then without checking.
public:
  explicit TaskScope(const void* kind);
  // `kind` tells the subclasses apart: the address of a static object of the subclass. The
  // parent is the scope current now.
  TaskScope(const void* kind, TaskScope& parent);
  // With an explicit parent.
  virtual ~TaskScope() noexcept(false);
  KJ_DISALLOW_COPY(TaskScope);

  kj::Maybe<TaskScope&> parent() const;
  const void* kind() const { return kind_; }

  static kj::Maybe<TaskScope&> current();
  // The scope the running code belongs to; null outside every scope.

  template <typename T>
  static kj::Maybe<T&> find() {
    // The innermost current scope of subclass T (identified by `T::KIND`).
    kj::Maybe<TaskScope&> scope = current();
    while (scope != nullptr) {
      auto& s = KJ_ASSERT_NONNULL(scope);
      if (s.kind_ == &T::KIND) return static_cast<T&>(s);
      scope = s.parent();
    }
    return nullptr;
  }

  class Enter {
    // Makes `scope` current until destroyed: coroutines created meanwhile inherit it.
  public:
    explicit Enter(TaskScope& scope);
    ~Enter() noexcept;
    KJ_DISALLOW_COPY(Enter);

  private:
    TaskScope* saved;
  };

private:
  const void* kind_;
  kj::Maybe<kj::Own<TaskScope>> parent_;
};

namespace _ {  // private

extern thread_local TaskScope* currentTaskScope;

template <typename T>
struct IsPromise_: std::false_type {};
template <typename T>
struct IsPromise_<kj::Promise<T>>: std::true_type {};

class CoroutineBase {
  // State shared by every Task coroutine's promise type, whatever its result type.
public:
  void adoptCurrentScope() {
    // Called when the body is started: the scope current then is the coroutine's.
    if (currentTaskScope != nullptr) scope = kj::addRef(*currentTaskScope);
  }

  void retire(kj::Promise<void>&& node) { retired = kj::mv(node); }
  // Keeps the promise node of the await that just resumed the coroutine alive until the next
  // resumption (or the frame's destruction). The node's callback is still on the stack when the
  // awaiter is destroyed, so it must not be freed there (a use-after-free otherwise).

  void resume(std::coroutine_handle<> handle) {
    // Runs the body until its next suspension with the inherited scope current. The frame may
    // not be touched once the body ran: nothing here uses it afterwards.
    TaskScope* saved = currentTaskScope;
    currentTaskScope = scopePtr();
    handle.resume();
    currentTaskScope = saved;
  }

private:
  kj::Maybe<kj::Promise<void>> retired;
  kj::Maybe<kj::Own<TaskScope>> scope;
  // The scope current where the coroutine was started.

  TaskScope* scopePtr() {
    KJ_IF_MAYBE(s, scope) {
      return s->get();
    }
    return nullptr;
  }
};

template <typename U>
class PromiseAwaiter {
  // Awaits one kj::Promise<U> from inside a Task coroutine.
public:
  PromiseAwaiter(CoroutineBase& coroutine, kj::Promise<U>&& promise)
      : coroutine(coroutine), promise(kj::mv(promise)) {}
  PromiseAwaiter(PromiseAwaiter&&) = delete;

  bool await_ready() const noexcept { return false; }

  void await_suspend(std::coroutine_handle<> handle) {
    auto onError = [this, handle](kj::Exception&& e) {
      exception = kj::mv(e);
      coroutine.resume(handle);
    };
    if constexpr (std::is_void_v<U>) {
      node = promise.then([this, handle]() { value = kj::_::Void(); coroutine.resume(handle); },
                          kj::mv(onError)).eagerlyEvaluate(nullptr);
    } else {
      node = promise.then([this, handle](U&& v) { value = kj::mv(v); coroutine.resume(handle); },
                          kj::mv(onError)).eagerlyEvaluate(nullptr);
    }
  }

  U await_resume() {
    KJ_IF_MAYBE(n, node) {
      coroutine.retire(kj::mv(*n));
      node = nullptr;
    }
    KJ_IF_MAYBE(e, exception) {
      kj::throwFatalException(kj::mv(*e));
    }
    if constexpr (!std::is_void_v<U>) {
      KJ_IF_MAYBE(v, value) {
        return kj::mv(*v);
      }
      KJ_UNREACHABLE;
    }
  }

private:
  CoroutineBase& coroutine;
  kj::Promise<U> promise;
  kj::Maybe<kj::Promise<void>> node;
  // Destroyed with the awaiter only when the frame is torn down from outside (cancellation).
  kj::Maybe<kj::_::FixVoid<U>> value;
  kj::Maybe<kj::Exception> exception;
};

template <typename T>
class TaskPromiseBase: public CoroutineBase {
public:
  std::suspend_always initial_suspend() noexcept { return {}; }
  std::suspend_always final_suspend() noexcept { return {}; }
  // The frame stays suspended at its end until the adapter (the promise's owner) destroys it.

  void unhandled_exception() { fulfiller->reject(currentExceptionAsKj()); }

  template <typename U>
  PromiseAwaiter<U> await_transform(kj::Promise<U>&& promise) {
    return PromiseAwaiter<U>(*this, kj::mv(promise));
  }
  template <typename U>
  PromiseAwaiter<U> await_transform(Task<U>&& task) {
    return PromiseAwaiter<U>(*this, kj::mv(task).promise());
  }
  template <typename U>
  PromiseAwaiter<U> await_transform(kj::Promise<U>& promise) = delete;
  // Await promises by value (`co_await kj::mv(p)`): awaiting consumes them.

  void start(kj::PromiseFulfiller<T>& f) {
    fulfiller = &f;
    adoptCurrentScope();
  }

protected:
  kj::PromiseFulfiller<T>* fulfiller = nullptr;
  kj::Maybe<kj::Promise<void>> tail;
  // `co_return promise;` forwards that promise's outcome to the fulfiller from here.
};

template <typename T>
class TaskPromise: public TaskPromiseBase<T> {
public:
  Task<T> get_return_object();

  template <typename U>
  void return_value(U&& value) {
    if constexpr (IsPromise_<std::decay_t<U>>::value) {
      auto* f = this->fulfiller;
      this->tail = kj::Promise<T>(kj::fwd<U>(value))
                       .then([f](T&& v) { f->fulfill(kj::mv(v)); },
                             [f](kj::Exception&& e) { f->reject(kj::mv(e)); })
                       .eagerlyEvaluate(nullptr);
    } else {
      this->fulfiller->fulfill(T(kj::fwd<U>(value)));
    }
  }
};

template <>
class TaskPromise<void>: public TaskPromiseBase<void> {
public:
  Task<void> get_return_object();
  void return_void() { fulfiller->fulfill(); }
};

extern thread_local unsigned taskStartDepth;
// How many coroutine bodies are being started, one inside the other, on this thread right now.

template <typename T>
class TaskAdapter {
  // The kj::newAdaptedPromise adapter that owns a started coroutine frame.
public:
  TaskAdapter(kj::PromiseFulfiller<T>& fulfiller, std::coroutine_handle<TaskPromise<T>> handle)
      : handle(handle) {
    handle.promise().start(fulfiller);
    if (taskStartDepth < MAX_EAGER_START_DEPTH) {
      ++taskStartDepth;
      KJ_DEFER(--taskStartDepth);
      handle.promise().resume(handle);
    } else {
      // Starting here would nest this body's stack frames inside its caller's; start it from the
      // event loop instead.
      deferredStart = kj::evalLater([handle]() { handle.promise().resume(handle); })
                          .eagerlyEvaluate(nullptr);
    }
  }
  ~TaskAdapter() noexcept(false) {
    deferredStart = nullptr;
    handle.destroy();
  }
  KJ_DISALLOW_COPY(TaskAdapter);

private:
  std::coroutine_handle<TaskPromise<T>> handle;
  kj::Maybe<kj::Promise<void>> deferredStart;
};

}  // namespace _

template <typename T>
class [[nodiscard]] Task {
  // The return type of a coroutine producing T. Move-only; converts to kj::Promise<T>.
public:
  using promise_type = _::TaskPromise<T>;

  Task(Task&& other) noexcept: handle(other.handle) { other.handle = nullptr; }
  Task& operator=(Task&& other) noexcept {
    if (handle) handle.destroy();
    handle = other.handle;
    other.handle = nullptr;
    return *this;
  }
  ~Task() noexcept {
    // A Task that was never started holds a frame with only its parameters in it.
    if (handle) handle.destroy();
  }

  kj::Promise<T> promise() && {
    // Starts the coroutine. The returned promise owns the frame.
    KJ_REQUIRE(handle != nullptr, "this Task was already started");
    auto h = handle;
    handle = nullptr;
    return kj::newAdaptedPromise<T, _::TaskAdapter<T>>(h);
  }
  operator kj::Promise<T>() && { return kj::mv(*this).promise(); }

private:
  explicit Task(std::coroutine_handle<promise_type> handle): handle(handle) {}
  std::coroutine_handle<promise_type> handle;
  friend promise_type;
};

template <typename T>
Task<T> _::TaskPromise<T>::get_return_object() {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> _::TaskPromise<void>::get_return_object() {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

namespace _ {  // private

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
// T, for what a function returns: T, kj::Promise<T> or Task<T>.

}  // namespace _

template <typename T>
kj::Promise<T> toPromise(Task<T>&& task) {
  // Spelled-out conversion, for function templates that deduce `Promise<T>` (such as
  // `kj::Timer::timeoutAfter`, `kj::Canceler::wrap`, `exclusiveJoin`).
  return kj::mv(task).promise();
}

}  // namespace tractor
