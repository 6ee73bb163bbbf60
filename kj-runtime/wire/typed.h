// Typed payloads: structs of the user's own Cap'n Proto schema carried as themselves, and the
// payload specs that say which struct each message of a dialogue must be.
//
// A `Typed<T>` owns one struct of type T (a generated Cap'n Proto struct). On the wire it is a
// `Value` of kind `typed`: the struct itself plus its type id, never converted through the
// dynamic codec. User code handles builders and readers:
//
//     tractor::Typed<calc::Point> p;
//     p.builder().setX(1);
//     co_await stream.send(kj::mv(p));
//     ...
//     KJ_IF_MAYBE(q, co_await stream.receive()) { use(q->reader().getX()); }
//
// A typed struct may hold capabilities (interface fields). The runtime wraps every capability a
// dialogue sends in a membrane that is revoked when that dialogue ends (context.h).
//
// A `PayloadSpec` names the struct type of each kind of message of a context: the `started`
// value, the stream items in each direction and the result; a slot left null accepts any
// `Value` (the dynamic payload). Typed context endpoints (typed-context.h) derive theirs from a
// `DialogueSpec<...>` declaration shared by both sides. The runtime checks every payload against
// it before sending and on arrival; a mismatch is `tractor::MsgTypeError`.

#pragma once

#include <capnp/any.h>
#include <capnp/schema.h>
#include <kj/debug.h>
#include "tractor/kj-runtime/wire/payload.h"

namespace tractor {

struct PayloadType {
  // A struct type a payload spec names.
  uint64_t id;
  // The Cap'n Proto type id.
  kj::StringPtr name;
  // The schema's display name ("calc.capnp:Point"); static storage.

  template <typename T>
  static PayloadType of();
  // T's type, registered so that error messages can name it (payloadTypeName()).

  bool operator==(const PayloadType& other) const { return id == other.id; }
  bool operator!=(const PayloadType& other) const { return id != other.id; }
};

kj::Maybe<kj::String> payloadMismatch(kj::Maybe<const PayloadType&> expected,
                                      ValueReader value);
// Null when `value` fits `expected` (a null expectation accepts anything); otherwise what is
// wrong, as "expected calc.capnp:Point, got int64 42".

enum class PayloadKind: uint8_t { STARTED, ITEM, RESULT };
kj::StringPtr KJ_STRINGIFY(PayloadKind kind);
// "started value", "stream item", "result".

struct PayloadSpec {
  // What each message of a context must carry; null slots accept any Value.
  kj::Maybe<PayloadType> started;
  kj::Maybe<PayloadType> callerItems;
  // Stream items from the caller to the callee.
  kj::Maybe<PayloadType> calleeItems;
  // Stream items from the callee to the caller.
  kj::Maybe<PayloadType> result;
};

namespace _ {  // private
template <typename T>
struct Slot_;
}  // namespace _

template <typename T>
class Typed {
  // One struct of the user's schema type T, owned, ready to send or received. Movable; copy
  // explicitly with `Typed<T>(other.reader())`. Readers and builders stay valid across moves.
public:
  Typed(): value() { root = initContent(value); }
  // A new struct with every field at its default.
  explicit Typed(typename T::Reader content): value() {
    auto typed = value.builder().initTyped();
    typed.setTypeId(PayloadType::of<T>().id);
    typed.getContent().template setAs<T>(content);
    root = typed.getContent().template getAs<T>();
  }
  // A copy of `content` (capabilities included).

  Typed(Typed&&) = default;
  Typed& operator=(Typed&&) = default;

  static Typed fromValue(Value value) {
    // Takes over a received Value; throws (FAILED, "expected ..., got ...") if it is not a T.
    KJ_IF_MAYBE(why, payloadMismatch(PayloadType::of<T>(), value.reader())) {
      kj::throwFatalException(KJ_EXCEPTION(FAILED, kj::mv(*why)));
    }
    Typed result(kj::mv(value), nullptr);
    return result;
  }

  typename T::Builder builder() { return root; }
  typename T::Reader reader() const { return root.asReader(); }

  const Value& asValue() const { return value; }
  Value release() && { return kj::mv(value); }
  // The payload as the runtime sends it (a Value of kind `typed`).

private:
  Value value;
  typename T::Builder root = nullptr;

  template <typename U>
  friend struct _::Slot_;
  // The runtime hands over received values it already checked against the spec.

  Typed(Value&& v, decltype(nullptr)): value(kj::mv(v)) {
    root = value.builder().getTyped().getContent().template getAs<T>();
  }
  static typename T::Builder initContent(Value& v) {
    auto typed = v.builder().initTyped();
    typed.setTypeId(PayloadType::of<T>().id);
    return typed.getContent().template initAs<T>();
  }
};

template <typename T>
struct ValueCodec<Typed<T>> {
  // A typed struct may also be a function's argument or result.
  static void encode(ValueBuilder builder, const Typed<T>& value) {
    auto typed = builder.initTyped();
    typed.setTypeId(PayloadType::of<T>().id);
    typed.getContent().template setAs<T>(value.reader());
  }
  static Typed<T> decode(ValueReader reader) { return Typed<T>::fromValue(Value(reader)); }
};

// =======================================================================================
// inline implementation

template <typename T>
PayloadType PayloadType::of() {
  static_assert(capnp::kind<T>() == capnp::Kind::STRUCT,
                "a typed payload is a struct of a Cap'n Proto schema");
  static const PayloadType TYPE = []() {
    PayloadType type{capnp::typeId<T>(), capnp::Schema::from<T>().getProto().getDisplayName()};
    registerPayloadType(type.id, type.name);
    return type;
  }();
  return TYPE;
}

}  // namespace tractor
