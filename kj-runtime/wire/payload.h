// The default dynamic payload codec: C++ values <-> `schema::Value` (schema/payload.capnp).
//
// Function arguments, results and untyped stream items travel as `schema::Value`s, the way
// msgpack objects do for Python tractor. `ValueCodec<T>` converts one C++ type; `encodeValue()`
// and `decodeValue<T>()` dispatch to it, and `Value` is an owning dynamic value for code that
// does not know the type statically.
//
// The mapping (both directions unless noted):
//
//     C++ type                                    Value kind
//     ------------------------------------------  -----------------------------------------------
//     std::nullptr_t                              null
//     bool                                        bool
//     signed integers (int8_t ... int64_t, int,   int64 (decodes from int64 or uint64 when the
//       long, long long, ...)                       number fits the target type)
//     unsigned integers (uint8_t ... uint64_t,    uint64 (same rule)
//       unsigned, size_t, ...)
//     float, double                               float64 (decodes from float64, int64, uint64)
//     kj::String, std::string                     text
//     kj::StringPtr, std::string_view,            text (encode only)
//       const char*, char[N]
//     kj::Array<kj::byte>                         data
//     kj::ArrayPtr<const kj::byte>                data (encode only)
//     std::vector<T>, kj::Array<T>                list
//     std::tuple<Ts...>, std::pair<A, B>          list of exactly that many elements
//     std::map<K, V>, std::unordered_map<K, V>    map (entries in iteration order)
//     std::optional<T>, kj::Maybe<T>              null, or whatever T maps to
//     tractor::Value                              copied verbatim
//
// Decoding never converts between unrelated kinds: a float or a bool is not an integer, a number
// is not text. Plain `char` (and wchar_t, char8_t, char16_t, char32_t) is a character, not an
// integer, so it has no codec; `signed char`/`unsigned char` (int8_t/uint8_t) do.
//
// A failed decode throws a FAILED kj::Exception whose description is short and self-contained,
// such as `expected an integer, got text "abc"` or `integer 300 out of range for uint8_t`. Errors
// inside lists, tuples and maps are prefixed with the path to the offending element, such as
// `[2]["port"]: expected an integer, got null`. Callers add their own context (a parameter name,
// say) by catching and rethrowing.
//
// To support another type, specialise `ValueCodec` (the second parameter is for `enable_if`):
//
//     template <>
//     struct ValueCodec<Point> {
//       static void encode(ValueBuilder builder, const Point& value);
//       static Point decode(ValueReader reader);
//     };

#pragma once

#include "tractor/schema/payload.capnp.h"
#include <kj/array.h>
#include <kj/common.h>
#include <kj/exception.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace capnp {
class MembranePolicy;
}

namespace tractor {

using ValueReader = schema::Value::Reader;
using ValueBuilder = schema::Value::Builder;

template <typename T, typename = void>
struct ValueCodec;
// Converts T to and from a Value. Specialisations provide
//     static void encode(ValueBuilder builder, const T& value);
//     static T decode(ValueReader reader);
// and may leave out `decode` for encode-only types.

namespace _ {  // private
template <typename T, typename = void>
struct HasValueCodec_: std::false_type {};
template <typename T>
struct HasValueCodec_<T, std::void_t<decltype(sizeof(ValueCodec<T>))>>: std::true_type {};
}  // namespace _

template <typename T>
inline constexpr bool HAS_VALUE_CODEC = _::HasValueCodec_<T>::value;
// True iff `ValueCodec<T>` is specialised (for containers: iff their elements have codecs too).

template <typename T>
void encodeValue(ValueBuilder builder, const T& value);
// Overwrites `builder` with `value`.

template <typename T>
T decodeValue(ValueReader reader);
// Converts `reader` to T, or throws a FAILED kj::Exception saying why it does not convert.

kj::StringPtr kindName(ValueReader reader);
// "null", "bool", "int64", "uint64", "float64", "text", "data", "list", "map" or "struct" (a
// typed payload, see typed.h); "unknown" for a kind from a newer schema.

void registerPayloadType(uint64_t typeId, kj::StringPtr name);
kj::String payloadTypeName(uint64_t typeId);
// The names of the struct types this program uses as typed payloads (typed.h registers them),
// for error messages: "calc.Point", or "struct @0x..." for a type this program does not know.

kj::String describeValue(ValueReader reader);
// A short human rendering for error messages and logs: `42`, `-1`, `1.5`, `"abc"` (escaped),
// `<data 12 bytes>`, `[1, 2, "x"]`, `{"a": 1}`, `<calc.capnp:Point>`. Long texts, lists and maps
// are cut off with
// `...` so that the result stays around 60 characters.

class Value {
  // An owning dynamic value: a `schema::Value` in a message of its own. Default-constructed (and
  // moved-from) Values are null and own no message until `builder()` is first called. Readers
  // and builders obtained from a Value stay valid while it lives, even across moves. Copy it
  // explicitly with `clone()`.
public:
  Value();
  explicit Value(ValueReader reader);
  // Deep copy of `reader`.

  Value(Value&& other) noexcept;
  Value& operator=(Value&& other) noexcept;
  KJ_DISALLOW_COPY(Value);
  ~Value() noexcept;

  template <typename T>
  static Value of(const T& value);
  // Encodes `value` with its ValueCodec.

  template <typename T>
  T as() const;
  // Decodes to T; throws as `decodeValue<T>()` does.

  ValueReader reader() const;
  ValueBuilder builder();
  // Each value written through `builder()` replaces the previous one. Space taken by an
  // overwritten list, text or data is not reclaimed until the Value is destroyed.

  Value clone() const;
  bool isNull() const;

  bool hasCapabilities() const;
  // True when the value holds a capability (in a typed payload): the runtime then wraps it in
  // the revocable membrane of the dialogue that sends it.
  Value withMembrane(kj::Own<capnp::MembranePolicy> policy) const;
  // A deep copy whose capabilities are wrapped in the membrane `policy` specifies (this value's
  // capabilities are inside it, the copy's holder outside).

  kj::String toString() const;
  // `describeValue(reader())`.

  bool operator==(const Value& other) const;
  // Structural equality: same kind and same contents, recursively. int64 5 and uint64 5 differ;
  // floats compare as doubles do (NaN is unequal to itself); map entries compare in order.

private:
  struct Storage;
  kj::Own<Storage> storage;
  // Null while the Value is null and `builder()` was never called.
  ValueBuilder root = nullptr;
  // The root struct of `storage`'s message, when there is one (it never moves once allocated).
};

kj::String KJ_STRINGIFY(const Value& value);
// Makes `kj::str(value)` work.

// =======================================================================================
// Implementation details

namespace _ {  // private

using ValueListReader = capnp::List<schema::Value>::Reader;
using ValueEntriesReader = capnp::List<schema::Value::Entry>::Reader;

template <typename T>
inline constexpr bool IS_CHARACTER = std::is_same_v<T, char> || std::is_same_v<T, wchar_t> ||
    std::is_same_v<T, char8_t> || std::is_same_v<T, char16_t> || std::is_same_v<T, char32_t>;

template <typename T>
inline constexpr bool IS_CODEC_INTEGER =
    std::is_integral_v<T> && !std::is_same_v<T, bool> && !IS_CHARACTER<T>;

int64_t decodeSigned(ValueReader reader, uint bits);
uint64_t decodeUnsigned(ValueReader reader, uint bits);
// Decode an integer that must fit `bits` bits (8, 16, 32 or 64).

uint checkedListSize(size_t size);
// `size` as a capnp list size; throws if it is too big for one.

void encodeText(ValueBuilder builder, kj::ArrayPtr<const char> text);
ValueListReader requireList(ValueReader reader);
ValueListReader requireListOfSize(ValueReader reader, uint size);
ValueEntriesReader requireMap(ValueReader reader);
[[noreturn]] void throwDuplicateKey(ValueReader key);

[[noreturn]] void rethrowAt(kj::Exception&& exception, kj::StringPtr step);
// Rethrows `exception` with `step` (such as "[3]") prepended to the path in its description.

template <typename T, typename StepFunc>
T decodeAt(ValueReader reader, StepFunc&& step) {
  // `decodeValue<T>(reader)`, naming the position `step()` in any error.
  try {
    return decodeValue<T>(reader);
  } catch (kj::Exception& e) {
    rethrowAt(kj::mv(e), step());
  }
}

template <typename T>
T decodeElement(ValueListReader list, uint index) {
  return decodeAt<T>(list[index], [index]() { return kj::str('[', index, ']'); });
}

template <typename Range>
void encodeList(ValueBuilder builder, const Range& range) {
  auto list = builder.initList(checkedListSize(range.size()));
  uint i = 0;
  for (const auto& item: range) {
    encodeValue(list[i++], item);
  }
}

template <typename Map>
void encodeMap(ValueBuilder builder, const Map& map) {
  auto entries = builder.initMap(checkedListSize(map.size()));
  uint i = 0;
  for (const auto& [key, value]: map) {
    auto entry = entries[i++];
    encodeValue(entry.initKey(), key);
    encodeValue(entry.initValue(), value);
  }
}

template <typename Map, typename K, typename V>
Map decodeMap(ValueReader reader) {
  Map result;
  for (auto entry: requireMap(reader)) {
    auto keyReader = entry.getKey();
    K key = decodeAt<K>(keyReader, []() { return kj::str("map key"); });
    V value = decodeAt<V>(entry.getValue(),
                          [&]() { return kj::str('[', describeValue(keyReader), ']'); });
    if (!result.emplace(kj::mv(key), kj::mv(value)).second) {
      throwDuplicateKey(keyReader);
    }
  }
  return result;
}

}  // namespace _

// =======================================================================================
// Codecs

template <>
struct ValueCodec<std::nullptr_t> {
  static void encode(ValueBuilder builder, const std::nullptr_t& value);
  static std::nullptr_t decode(ValueReader reader);
};

template <>
struct ValueCodec<bool> {
  static void encode(ValueBuilder builder, const bool& value);
  static bool decode(ValueReader reader);
};

template <typename T>
struct ValueCodec<T, std::enable_if_t<_::IS_CODEC_INTEGER<T>>> {
  static_assert(sizeof(T) <= sizeof(int64_t), "integers wider than 64 bits are not supported");

  static void encode(ValueBuilder builder, const T& value) {
    if constexpr (std::is_signed_v<T>) {
      builder.setInt64(value);
    } else {
      builder.setUint64(value);
    }
  }
  static T decode(ValueReader reader) {
    if constexpr (std::is_signed_v<T>) {
      return static_cast<T>(_::decodeSigned(reader, sizeof(T) * 8));
    } else {
      return static_cast<T>(_::decodeUnsigned(reader, sizeof(T) * 8));
    }
  }
};

template <>
struct ValueCodec<double> {
  static void encode(ValueBuilder builder, const double& value);
  static double decode(ValueReader reader);
};

template <>
struct ValueCodec<float> {
  static void encode(ValueBuilder builder, const float& value);
  static float decode(ValueReader reader);
  // Throws if a finite float64 is beyond float's range.
};

template <>
struct ValueCodec<kj::String> {
  static void encode(ValueBuilder builder, const kj::String& value);
  static kj::String decode(ValueReader reader);
};

template <>
struct ValueCodec<std::string> {
  static void encode(ValueBuilder builder, const std::string& value);
  static std::string decode(ValueReader reader);
};

template <>
struct ValueCodec<kj::StringPtr> {
  static void encode(ValueBuilder builder, const kj::StringPtr& value);
};

template <>
struct ValueCodec<std::string_view> {
  static void encode(ValueBuilder builder, const std::string_view& value);
};

template <>
struct ValueCodec<const char*> {
  static void encode(ValueBuilder builder, const char* const& value);
  // `value` must not be null.
};

template <size_t N>
struct ValueCodec<char[N]> {
  // String literals. The text ends at the first NUL, or after N characters if there is none.
  static void encode(ValueBuilder builder, const char (&value)[N]) {
    size_t size = 0;
    while (size < N && value[size] != '\0') ++size;
    _::encodeText(builder, kj::arrayPtr(value, size));
  }
};

template <>
struct ValueCodec<kj::Array<kj::byte>> {
  // This explicit specialisation takes precedence over the list codec for kj::Array<T>.
  static void encode(ValueBuilder builder, const kj::Array<kj::byte>& value);
  static kj::Array<kj::byte> decode(ValueReader reader);
};

template <>
struct ValueCodec<kj::ArrayPtr<const kj::byte>> {
  static void encode(ValueBuilder builder, const kj::ArrayPtr<const kj::byte>& value);
};

template <typename T>
struct ValueCodec<std::vector<T>, std::enable_if_t<HAS_VALUE_CODEC<T>>> {
  static void encode(ValueBuilder builder, const std::vector<T>& value) {
    _::encodeList(builder, value);
  }
  static std::vector<T> decode(ValueReader reader) {
    auto list = _::requireList(reader);
    std::vector<T> result;
    result.reserve(list.size());
    for (uint i = 0; i < list.size(); ++i) {
      result.push_back(_::decodeElement<T>(list, i));
    }
    return result;
  }
};

template <typename T>
struct ValueCodec<kj::Array<T>, std::enable_if_t<HAS_VALUE_CODEC<T>>> {
  static void encode(ValueBuilder builder, const kj::Array<T>& value) {
    _::encodeList(builder, value);
  }
  static kj::Array<T> decode(ValueReader reader) {
    auto list = _::requireList(reader);
    auto result = kj::heapArrayBuilder<T>(list.size());
    for (uint i = 0; i < list.size(); ++i) {
      result.add(_::decodeElement<T>(list, i));
    }
    return result.finish();
  }
};

template <typename... Ts>
struct ValueCodec<std::tuple<Ts...>, std::enable_if_t<(HAS_VALUE_CODEC<Ts> && ...)>> {
  static void encode(ValueBuilder builder, const std::tuple<Ts...>& value) {
    auto list = builder.initList(sizeof...(Ts));
    uint i = 0;
    std::apply([&](const Ts&... items) { (encodeValue(list[i++], items), ...); }, value);
  }
  static std::tuple<Ts...> decode(ValueReader reader) {
    return decodeElements(_::requireListOfSize(reader, sizeof...(Ts)),
                          std::index_sequence_for<Ts...>());
  }

private:
  template <size_t... INDEXES>
  static std::tuple<Ts...> decodeElements([[maybe_unused]] _::ValueListReader list,
                                          std::index_sequence<INDEXES...>) {
    // Braces: elements decode left to right, so the first bad one is the one reported.
    return std::tuple<Ts...>{_::decodeElement<Ts>(list, INDEXES)...};
  }
};

template <typename A, typename B>
struct ValueCodec<std::pair<A, B>, std::enable_if_t<HAS_VALUE_CODEC<A> && HAS_VALUE_CODEC<B>>> {
  static void encode(ValueBuilder builder, const std::pair<A, B>& value) {
    auto list = builder.initList(2);
    encodeValue(list[0], value.first);
    encodeValue(list[1], value.second);
  }
  static std::pair<A, B> decode(ValueReader reader) {
    auto list = _::requireListOfSize(reader, 2);
    return std::pair<A, B>{_::decodeElement<A>(list, 0), _::decodeElement<B>(list, 1)};
  }
};

template <typename K, typename V, typename... Rest>
struct ValueCodec<std::map<K, V, Rest...>,
                  std::enable_if_t<HAS_VALUE_CODEC<K> && HAS_VALUE_CODEC<V>>> {
  // Decoding throws on a duplicate key.
  static void encode(ValueBuilder builder, const std::map<K, V, Rest...>& value) {
    _::encodeMap(builder, value);
  }
  static std::map<K, V, Rest...> decode(ValueReader reader) {
    return _::decodeMap<std::map<K, V, Rest...>, K, V>(reader);
  }
};

template <typename K, typename V, typename... Rest>
struct ValueCodec<std::unordered_map<K, V, Rest...>,
                  std::enable_if_t<HAS_VALUE_CODEC<K> && HAS_VALUE_CODEC<V>>> {
  // Decoding throws on a duplicate key.
  static void encode(ValueBuilder builder, const std::unordered_map<K, V, Rest...>& value) {
    _::encodeMap(builder, value);
  }
  static std::unordered_map<K, V, Rest...> decode(ValueReader reader) {
    return _::decodeMap<std::unordered_map<K, V, Rest...>, K, V>(reader);
  }
};

template <typename T>
struct ValueCodec<std::optional<T>, std::enable_if_t<HAS_VALUE_CODEC<T>>> {
  static void encode(ValueBuilder builder, const std::optional<T>& value) {
    if (value) {
      encodeValue(builder, *value);
    } else {
      builder.setNull();
    }
  }
  static std::optional<T> decode(ValueReader reader) {
    if (reader.isNull()) return std::nullopt;
    return decodeValue<T>(reader);
  }
};

template <typename T>
struct ValueCodec<kj::Maybe<T>, std::enable_if_t<HAS_VALUE_CODEC<T>>> {
  static void encode(ValueBuilder builder, const kj::Maybe<T>& value) {
    KJ_IF_MAYBE(v, value) {
      encodeValue(builder, *v);
    } else {
      builder.setNull();
    }
  }
  static kj::Maybe<T> decode(ValueReader reader) {
    if (reader.isNull()) return nullptr;
    return decodeValue<T>(reader);
  }
};

template <>
struct ValueCodec<Value> {
  static void encode(ValueBuilder builder, const Value& value);
  static Value decode(ValueReader reader);
};

// =======================================================================================
// Inline implementation

template <typename T>
void encodeValue(ValueBuilder builder, const T& value) {
  static_assert(HAS_VALUE_CODEC<T>, "no ValueCodec<T> for this type (see kj-runtime/wire/payload.h)");
  ValueCodec<T>::encode(builder, value);
}

template <typename T>
T decodeValue(ValueReader reader) {
  static_assert(HAS_VALUE_CODEC<T>, "no ValueCodec<T> for this type (see kj-runtime/wire/payload.h)");
  return ValueCodec<T>::decode(reader);
}

template <typename T>
Value Value::of(const T& value) {
  Value result;
  encodeValue(result.builder(), value);
  return result;
}

template <typename T>
T Value::as() const {
  return decodeValue<T>(reader());
}

}  // namespace tractor
