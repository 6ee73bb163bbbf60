// Typed dialogues: contexts whose messages are structs of the user's own schema, checked by type
// at both ends (tractor's msg-spec limiting, as a typed interface per context).
//
// Both sides share one declaration of the dialogue, naming the struct type of each message
// (`tractor::Value` leaves a slot dynamic):
//
//     using Session = tractor::DialogueSpec<
//         demo::Hello,      // the started value (callee to caller)
//         demo::Request,    // stream items from the caller
//         demo::Reply,      // stream items from the callee
//         demo::Summary>;   // the result
//
// The callee is a context function taking `CalleeContext<Session>&`; it returns the result type:
//
//     Task<Typed<demo::Summary>> serve(CalleeContext<Session>& ctx, int64_t limit) {
//       Typed<demo::Hello> hello;
//       hello.builder().setGreeting("ready");
//       co_await ctx.started(kj::mv(hello));
//       co_await ctx.openStream([&](auto& stream) -> Task<void> { ... });  // TypedStream
//       ...
//     }
//     TRACTOR_CONTEXT(demo, serve);
//
// The caller's block takes `CallerContext<Session>&` and the typed first value; a block whose
// spec differs from the function's does not compile:
//
//     co_await portal.openContext(serve, 10,
//         [&](CallerContext<Session>& ctx, Typed<demo::Hello> hello) -> Task<void> { ... });
//
// Opened by name (`portal.openContext("demo", "serve", 10, block)`), the spec is the one the
// block's parameter names, and a mismatch with the callee's is found at run time: every payload
// is checked before it is sent and when it arrives (context.h), and a mismatch is a
// `tractor::MsgTypeError` naming the message kind, the expected type and what arrived.

#pragma once

#include <type_traits>
#include "tractor/kj-runtime/actor/context.h"
#include "tractor/kj-runtime/wire/typed.h"

namespace tractor {

template <typename Started = Value, typename CallerItem = Value, typename CalleeItem = Value,
          typename Result = Value>
struct DialogueSpec {
  // The declaration of a typed dialogue: each parameter is a struct type of the user's schema,
  // or `tractor::Value` for a dynamic slot.
  using StartedType = Started;
  using CallerItemType = CallerItem;
  using CalleeItemType = CalleeItem;
  using ResultType = Result;
};

namespace _ {  // private

template <typename T>
struct Slot_ {
  // A struct slot: values are Typed<T>.
  using Type = Typed<T>;
  static kj::Maybe<PayloadType> payloadType() { return PayloadType::of<T>(); }
  static Value toValue(Type&& value) { return kj::mv(value).release(); }
  static Type fromValue(Value&& value) { return Type::fromValue(kj::mv(value)); }
  static Type fromChecked(Value&& value) { return Type(kj::mv(value), nullptr); }
  // A value the context already checked against the spec on arrival.
};

template <>
struct Slot_<Value> {
  // A dynamic slot: values are Values.
  using Type = Value;
  static kj::Maybe<PayloadType> payloadType() { return nullptr; }
  static Value toValue(Value&& value) { return kj::mv(value); }
  static Value fromValue(Value&& value) { return kj::mv(value); }
  static Value fromChecked(Value&& value) { return kj::mv(value); }
};

}  // namespace _

template <typename T>
using SlotType = typename _::Slot_<T>::Type;
// What user code handles for a spec slot: `Typed<T>` for a struct, `Value` for a dynamic slot.

template <typename Spec>
PayloadSpec payloadSpecOf() {
  // The runtime form of a DialogueSpec.
  PayloadSpec spec;
  spec.started = _::Slot_<typename Spec::StartedType>::payloadType();
  spec.callerItems = _::Slot_<typename Spec::CallerItemType>::payloadType();
  spec.calleeItems = _::Slot_<typename Spec::CalleeItemType>::payloadType();
  spec.result = _::Slot_<typename Spec::ResultType>::payloadType();
  return spec;
}

namespace _ {  // private

template <typename Stream>
kj::Promise<void> openTypedStream(Context& ctx, StreamOptions options,
                                  kj::Function<kj::Promise<void>(Stream&)> block) {
  // Context::openStream() with `block` given the typed view of the stream.
  return ctx.openStream(kj::mv(options), [block = kj::mv(block)](MsgStream& s) mutable {
    auto stream = kj::heap<Stream>(s);
    auto& ref = *stream;
    return kj::evalNow([&]() { return block(ref); }).attach(kj::mv(stream));
  });
}

}  // namespace _

template <typename Send, typename Receive>
class TypedStream {
  // One side's stream of a typed context: sends `SlotType<Send>`, receives
  // `SlotType<Receive>`. A view of the context's MsgStream, valid inside the `openStream()`
  // block; the flow control and end-of-stream rules are the MsgStream's (context.h).
public:
  explicit TypedStream(MsgStream& stream): stream(stream) {}
  KJ_DISALLOW_COPY(TypedStream);

  kj::Promise<void> send(SlotType<Send> item) {
    return stream.send(_::Slot_<Send>::toValue(kj::mv(item)));
  }
  // Raises MsgTypeError (nothing sent) only if the item is not of the spec's type, which the
  // types prevent unless the slot is dynamic and narrowed by the peer.

  kj::Promise<kj::Maybe<SlotType<Receive>>> receive() {
    return stream.receive().then([](kj::Maybe<Value>&& item) -> kj::Maybe<SlotType<Receive>> {
      KJ_IF_MAYBE(v, item) {
        return _::Slot_<Receive>::fromChecked(kj::mv(*v));
      }
      return nullptr;
    });
  }
  // The next item (already checked against the spec on arrival); null once the peer ended.

  kj::Promise<void> close() { return stream.close(); }
  bool closed() const { return stream.closed(); }
  bool ended() const { return stream.ended(); }
  MsgStream& untyped() { return stream; }

private:
  MsgStream& stream;
};

template <typename Spec>
class CalleeContext {
  // What a typed context function gets: the callee's side of the dialogue. A view of the
  // runtime's Context (valid for the function's run), with the spec's types.
public:
  using Stream = TypedStream<typename Spec::CalleeItemType, typename Spec::CallerItemType>;

  explicit CalleeContext(Context& ctx): ctx(ctx) {}
  KJ_DISALLOW_COPY(CalleeContext);

  kj::Promise<void> started(SlotType<typename Spec::StartedType> value) {
    return ctx.started(_::Slot_<typename Spec::StartedType>::toValue(kj::mv(value)));
  }
  // As Context::started(): once, before the stream.

  kj::Promise<void> openStream(kj::Function<kj::Promise<void>(Stream&)> block) {
    return openStream(StreamOptions(), kj::mv(block));
  }
  kj::Promise<void> openStream(StreamOptions options,
                               kj::Function<kj::Promise<void>(Stream&)> block) {
    return _::openTypedStream<Stream>(ctx, kj::mv(options), kj::mv(block));
  }

  template <typename T>
  PayloadLimit limitItems() { return ctx.limitItems<T>(); }
  // Narrows the items accepted from the caller (a dynamic slot only; see Context).

  kj::Promise<void> cancel() { return ctx.cancel(); }
  const ActorId& peer() const { return ctx.peer(); }
  Context& untyped() { return ctx; }

private:
  Context& ctx;
};

template <typename Spec>
class CallerContext {
  // What the block of a typed `Portal::openContext()` gets: the caller's side of the dialogue,
  // valid inside the block.
public:
  using Stream = TypedStream<typename Spec::CallerItemType, typename Spec::CalleeItemType>;
  using Result = SlotType<typename Spec::ResultType>;

  explicit CallerContext(Context& ctx): ctx(ctx) {}
  KJ_DISALLOW_COPY(CallerContext);

  kj::Promise<void> openStream(kj::Function<kj::Promise<void>(Stream&)> block) {
    return openStream(StreamOptions(), kj::mv(block));
  }
  kj::Promise<void> openStream(StreamOptions options,
                               kj::Function<kj::Promise<void>(Stream&)> block) {
    return _::openTypedStream<Stream>(ctx, kj::mv(options), kj::mv(block));
  }

  kj::Promise<Result> waitForResult() {
    if constexpr (std::is_same_v<Result, Value>) {
      return ctx.waitForResult();
    } else {
      return ctx.waitForResult().then([this](Value&& v) -> Result {
        if (v.isNull()) {
          // A cancellation this side asked for: a typed result has no null to stand for it.
          KJ_IF_MAYBE(o, ctx.outcome()) {
            if (o->template is<kj::Exception>()) {
              kj::throwFatalException(kj::cp(o->template get<kj::Exception>()));
            }
          }
        }
        return _::Slot_<typename Spec::ResultType>::fromChecked(kj::mv(v));
      });
    }
  }
  // The callee's result, checked against the spec on arrival. As Context::waitForResult(),
  // except that a ContextCancelled this side asked for is raised when the result is typed.

  template <typename T>
  PayloadLimit limitItems() { return ctx.limitItems<T>(); }
  // Narrows the items accepted from the callee (a dynamic slot only; see Context).

  kj::Promise<void> cancel() { return ctx.cancel(); }
  bool cancelCalled() const { return ctx.cancelCalled(); }
  kj::Maybe<const ActorId&> canceller() const { return ctx.canceller(); }
  const ActorId& peer() const { return ctx.peer(); }
  Context& untyped() { return ctx; }

private:
  Context& ctx;
};

namespace _ {  // private

template <typename M>
struct MemberBlockSpec_ {
  using Type = void;
};
template <typename C, typename R, typename Spec, typename First>
struct MemberBlockSpec_<R (C::*)(CallerContext<Spec>&, First) const> {
  using Type = Spec;
};
template <typename C, typename R, typename Spec, typename First>
struct MemberBlockSpec_<R (C::*)(CallerContext<Spec>&, First)> {
  using Type = Spec;
};

template <typename F, typename = void>
struct BlockSpec_ {
  using Type = void;
};
template <typename F>
struct BlockSpec_<F, std::void_t<decltype(&F::operator())>>
    : MemberBlockSpec_<decltype(&F::operator())> {};
template <typename R, typename Spec, typename First>
struct BlockSpec_<R (*)(CallerContext<Spec>&, First)> {
  using Type = Spec;
};

template <typename Block>
using BlockSpec = typename BlockSpec_<std::decay_t<Block>>::Type;
// The spec a caller's block declares with its `CallerContext<Spec>&` parameter; void for an
// untyped block (`Context&`).

template <typename Spec, typename Block>
kj::Function<kj::Promise<void>(Context&, Value)> typedCallerBlock(Block&& block) {
  // The untyped block the runtime runs for a typed one.
  return [block = kj::fwd<Block>(block)](Context& ctx, Value first) mutable {
    auto typed = kj::heap<CallerContext<Spec>>(ctx);
    auto& ref = *typed;
    return kj::evalNow([&]() -> kj::Promise<void> {
             return block(ref, Slot_<typename Spec::StartedType>::fromChecked(kj::mv(first)));
           })
        .attach(kj::mv(typed));
  };
}

}  // namespace _

}  // namespace tractor
