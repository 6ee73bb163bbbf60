// Tests for the default dynamic payload codec (kj-runtime/wire/payload.h).

#include "tractor/kj-runtime/wire/payload.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <doctest/doctest.h>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace doctest {
template <>
struct StringMaker<tractor::Value> {
  static String convert(const tractor::Value& value) { return value.toString().cStr(); }
};
}  // namespace doctest

namespace tractor {
namespace {

struct NoCodec {};

static_assert(HAS_VALUE_CODEC<int>);
static_assert(HAS_VALUE_CODEC<size_t>);
static_assert(HAS_VALUE_CODEC<Value>);
static_assert(HAS_VALUE_CODEC<std::vector<std::map<std::string, std::optional<int>>>>);
static_assert(HAS_VALUE_CODEC<std::tuple<int, kj::String, Value>>);
static_assert(!HAS_VALUE_CODEC<NoCodec>);
static_assert(!HAS_VALUE_CODEC<std::vector<NoCodec>>);
static_assert(!HAS_VALUE_CODEC<std::map<std::string, NoCodec>>);
static_assert(!HAS_VALUE_CODEC<std::tuple<int, NoCodec>>);
static_assert(!HAS_VALUE_CODEC<char>);
static_assert(!HAS_VALUE_CODEC<long double>);

template <typename T>
T roundTrip(const T& value) {
  return Value::of(value).template as<T>();
}

template <typename T>
std::string decodeError(const Value& value) {
  // The description of the exception that decoding `value` as T throws.
  try {
    (void)value.as<T>();
  } catch (kj::Exception& e) {
    CHECK(e.getType() == kj::Exception::Type::FAILED);
    return e.getDescription().cStr();
  }
  FAIL("decoding " << value.toString().cStr() << " did not throw");
  return "";
}

std::string describe(const Value& value) { return value.toString().cStr(); }

template <typename T>
void checkIntegerLimits() {
  constexpr T LOW = std::numeric_limits<T>::min();
  constexpr T HIGH = std::numeric_limits<T>::max();
  CHECK(roundTrip<T>(LOW) == LOW);
  CHECK(roundTrip<T>(HIGH) == HIGH);
  CHECK(roundTrip<T>(T(0)) == T(0));
  CHECK(Value::of(T(7)).reader().which() ==
        (std::is_signed_v<T> ? schema::Value::INT64 : schema::Value::UINT64));
}

TEST_SUITE("unit") {

TEST_CASE("payload: bool and null round trip") {
  CHECK(roundTrip(true) == true);
  CHECK(roundTrip(false) == false);
  CHECK(Value::of(true).reader().isBool());
  CHECK(Value::of(nullptr).isNull());
  CHECK(Value::of(nullptr).as<std::nullptr_t>() == nullptr);
}

TEST_CASE("payload: integers round trip at their limits") {
  checkIntegerLimits<int8_t>();
  checkIntegerLimits<int16_t>();
  checkIntegerLimits<int32_t>();
  checkIntegerLimits<int64_t>();
  checkIntegerLimits<uint8_t>();
  checkIntegerLimits<uint16_t>();
  checkIntegerLimits<uint32_t>();
  checkIntegerLimits<uint64_t>();
  checkIntegerLimits<signed char>();
  checkIntegerLimits<unsigned char>();
  checkIntegerLimits<short>();
  checkIntegerLimits<int>();
  checkIntegerLimits<long>();
  checkIntegerLimits<long long>();
  checkIntegerLimits<unsigned>();
  checkIntegerLimits<unsigned long>();
  checkIntegerLimits<unsigned long long>();
  checkIntegerLimits<size_t>();
  checkIntegerLimits<ptrdiff_t>();
}

TEST_CASE("payload: integers decode from either integer kind when they fit") {
  CHECK(Value::of(uint64_t(5)).as<int8_t>() == 5);
  CHECK(Value::of(int64_t(5)).as<uint8_t>() == 5);
  CHECK(Value::of(uint64_t(INT64_MAX)).as<int64_t>() == INT64_MAX);
  CHECK(Value::of(int64_t(INT64_MAX)).as<uint64_t>() == uint64_t(INT64_MAX));
  CHECK(Value::of(-128).as<int8_t>() == -128);
  CHECK(Value::of(255).as<uint8_t>() == 255);
}

TEST_CASE("payload: integer range errors") {
  CHECK(decodeError<uint8_t>(Value::of(300)) == "integer 300 out of range for uint8_t");
  CHECK(decodeError<uint32_t>(Value::of(-1)) == "integer -1 out of range for uint32_t");
  CHECK(decodeError<int64_t>(Value::of(UINT64_MAX)) ==
        "integer 18446744073709551615 out of range for int64_t");
  CHECK(decodeError<int8_t>(Value::of(128)) == "integer 128 out of range for int8_t");
  CHECK(decodeError<int8_t>(Value::of(-129)) == "integer -129 out of range for int8_t");
  CHECK(decodeError<int32_t>(Value::of(INT64_MIN)) ==
        "integer -9223372036854775808 out of range for int32_t");
  CHECK(decodeError<uint16_t>(Value::of(uint64_t(65536))) ==
        "integer 65536 out of range for uint16_t");
  CHECK(decodeError<unsigned long>(Value::of(INT64_MIN)) ==
        "integer -9223372036854775808 out of range for uint64_t");
}

TEST_CASE("payload: type mismatch messages name both kinds") {
  CHECK(decodeError<int>(Value::of("abc")) == "expected an integer, got text \"abc\"");
  CHECK(decodeError<int>(Value::of(1.5)) == "expected an integer, got float64 1.5");
  CHECK(decodeError<int>(Value::of(2.0)) == "expected an integer, got float64 2.0");
  CHECK(decodeError<int>(Value::of(true)) == "expected an integer, got bool true");
  CHECK(decodeError<uint8_t>(Value()) == "expected an integer, got null");
  CHECK(decodeError<bool>(Value::of(1)) == "expected a bool, got int64 1");
  CHECK(decodeError<std::string>(Value::of(42)) == "expected text, got int64 42");
  CHECK(decodeError<kj::String>(Value::of(42u)) == "expected text, got uint64 42");
  CHECK(decodeError<double>(Value::of("1.5")) == "expected a number, got text \"1.5\"");
  CHECK(decodeError<std::nullptr_t>(Value::of(0)) == "expected null, got int64 0");
  CHECK(decodeError<kj::Array<kj::byte>>(Value::of("x")) == "expected data, got text \"x\"");
  CHECK(decodeError<std::vector<int>>(Value::of(std::map<int, int>{{1, 2}})) ==
        "expected a list, got map {1: 2}");
  CHECK(decodeError<std::map<int, int>>(Value::of(std::vector<int>{1, 2})) ==
        "expected a map, got list [1, 2]");
  CHECK(decodeError<int>(Value::of(kj::heapArray<kj::byte>(3))) ==
        "expected an integer, got <data 3 bytes>");
}

TEST_CASE("payload: floats round trip and decode from integers") {
  CHECK(roundTrip(1.5) == 1.5);
  CHECK(roundTrip(-0.25f) == -0.25f);
  CHECK(roundTrip(std::numeric_limits<double>::max()) == std::numeric_limits<double>::max());
  CHECK(std::isnan(roundTrip(std::nan(""))));
  CHECK(roundTrip(INFINITY) == INFINITY);
  CHECK(Value::of(-3).as<double>() == -3.0);
  CHECK(Value::of(uint64_t(1) << 40).as<double>() == 1099511627776.0);
  CHECK(Value::of(7u).as<float>() == 7.0f);
  CHECK(Value::of(1.5f).reader().isFloat64());
  CHECK(std::isinf(Value::of(-INFINITY).as<float>()));
  CHECK(decodeError<float>(Value::of(1e300)) == "float64 1e300 out of range for float");
}

TEST_CASE("payload: text round trips") {
  CHECK(roundTrip(kj::str("hello")) == "hello");
  CHECK(roundTrip(std::string("héllo wörld")) == "héllo wörld");
  CHECK(roundTrip(std::string()) == "");
  CHECK(roundTrip(std::string("a\0b", 3)) == std::string("a\0b", 3));
  CHECK(Value::of(kj::StringPtr("ptr")).as<std::string>() == "ptr");
  CHECK(Value::of(std::string_view("view")).as<std::string>() == "view");
  const char* pointer = "pointer";
  CHECK(Value::of(pointer).as<std::string>() == "pointer");
  CHECK(Value::of("literal").as<kj::String>() == "literal");
  CHECK(Value::of("literal").reader().getText().size() == 7);
  const char* null = nullptr;
  CHECK_THROWS_AS(Value::of(null), kj::Exception);
}

TEST_CASE("payload: data round trips") {
  auto bytes = kj::heapArray<kj::byte>({0, 1, 2, 255});
  auto back = roundTrip(bytes);
  CHECK(back.asPtr() == bytes.asPtr());
  CHECK(Value::of(bytes).reader().isData());
  CHECK(roundTrip(kj::heapArray<kj::byte>(0)).size() == 0);
  kj::ArrayPtr<const kj::byte> pointer = bytes;
  CHECK(Value::of(pointer).as<kj::Array<kj::byte>>().asPtr() == bytes.asPtr());
  // A vector of bytes is a list of integers, not data.
  std::vector<uint8_t> numbers = {1, 2, 3};
  CHECK(Value::of(numbers).reader().isList());
  CHECK(roundTrip(numbers) == numbers);
}

TEST_CASE("payload: lists round trip") {
  CHECK(roundTrip(std::vector<int>{}).empty());
  CHECK(roundTrip(std::vector<int>{1, -2, 3}) == std::vector<int>{1, -2, 3});
  CHECK(roundTrip(std::vector<bool>{true, false}) == std::vector<bool>{true, false});
  CHECK(roundTrip(std::vector<std::vector<std::string>>{{"a"}, {}, {"b", "c"}}) ==
        std::vector<std::vector<std::string>>{{"a"}, {}, {"b", "c"}});

  auto builder = kj::heapArrayBuilder<kj::String>(2);
  builder.add(kj::str("x"));
  builder.add(kj::str("y"));
  auto strings = builder.finish();
  auto back = roundTrip(strings);
  REQUIRE(back.size() == 2);
  CHECK(back[0] == "x");
  CHECK(back[1] == "y");

  std::vector<const char*> pointers = {"p", "q"};
  CHECK(Value::of(pointers).as<std::vector<std::string>>() ==
        std::vector<std::string>{"p", "q"});
}

TEST_CASE("payload: maps round trip") {
  std::map<std::string, int> ordered = {{"b", 2}, {"a", 1}};
  CHECK(roundTrip(ordered) == ordered);
  CHECK(describe(Value::of(ordered)) == "{\"a\": 1, \"b\": 2}");

  std::unordered_map<int, std::string> hashed = {{1, "one"}, {2, "two"}, {3, "three"}};
  CHECK(roundTrip(hashed) == hashed);

  std::map<std::tuple<int, int>, double> tupleKeys = {{{1, 2}, 0.5}};
  CHECK(roundTrip(tupleKeys) == tupleKeys);
  CHECK(roundTrip(std::map<int, int>{}).empty());
}

TEST_CASE("payload: optionals round trip") {
  CHECK(roundTrip(std::optional<int>(5)) == 5);
  CHECK(roundTrip(std::optional<int>()) == std::nullopt);
  CHECK(Value::of(std::optional<int>()).isNull());
  CHECK(Value().as<std::optional<std::string>>() == std::nullopt);

  auto some = roundTrip(kj::Maybe<kj::String>(kj::str("x")));
  KJ_IF_MAYBE(s, some) {
    CHECK(*s == "x");
  } else {
    FAIL("expected a value");
  }
  CHECK(roundTrip(kj::Maybe<int>(nullptr)) == nullptr);
  CHECK(decodeError<std::optional<int>>(Value::of("x")) == "expected an integer, got text \"x\"");
}

TEST_CASE("payload: tuples and pairs round trip") {
  auto tuple = std::make_tuple(1, std::string("two"), 3.0, true);
  CHECK(roundTrip(tuple) == tuple);
  CHECK(describe(Value::of(tuple)) == "[1, \"two\", 3.0, true]");
  auto pair = std::make_pair(uint8_t(1), std::optional<std::string>());
  CHECK(roundTrip(pair) == pair);
  CHECK(roundTrip(std::tuple<>()) == std::tuple<>());
  CHECK(describe(Value::of(std::tuple<>())) == "[]");
}

TEST_CASE("payload: tuple length mismatch") {
  auto three = Value::of(std::vector<int>{1, 2, 3});
  CHECK(decodeError<std::tuple<int, int>>(three) ==
        "expected a list of 2 elements, got 3 elements: [1, 2, 3]");
  CHECK(decodeError<std::pair<int, int>>(Value::of(std::vector<int>{1})) ==
        "expected a list of 2 elements, got 1 element: [1]");
  CHECK(decodeError<std::tuple<int>>(Value::of(1)) ==
        "expected a list of 1 element, got int64 1");
}

TEST_CASE("payload: nested containers round trip") {
  using Nested = std::vector<std::map<std::string, std::optional<int>>>;
  Nested nested = {{{"a", 1}, {"b", std::nullopt}}, {}, {{"c", -3}}};
  CHECK(roundTrip(nested) == nested);
  CHECK(describe(Value::of(nested)) == "[{\"a\": 1, \"b\": null}, {}, {\"c\": -3}]");

  std::map<std::string, std::vector<std::tuple<int, std::string>>> deep = {
      {"k", {{1, "x"}, {2, "y"}}}};
  CHECK(roundTrip(deep) == deep);
}

TEST_CASE("payload: nested errors carry the path") {
  using Nested = std::vector<std::map<std::string, int>>;
  std::vector<std::map<std::string, Value>> items(2);
  items[0].emplace("a", Value::of(1));
  items[1].emplace("a", Value::of(2));
  items[1].emplace("b", Value::of("x"));
  auto value = Value::of(items);
  CHECK(decodeError<Nested>(value) == "[1][\"b\"]: expected an integer, got text \"x\"");

  auto badKey = Value::of(std::vector<std::map<std::string, int>>{{{"k", 1}}});
  CHECK(decodeError<std::vector<std::map<int, int>>>(badKey) ==
        "[0]: map key: expected an integer, got text \"k\"");

  auto tuple = Value::of(std::make_tuple(1, "two"));
  CHECK(decodeError<std::tuple<int, int>>(tuple) ==
        "[1]: expected an integer, got text \"two\"");

  CHECK(decodeError<std::vector<uint8_t>>(Value::of(std::vector<int>{1, 256})) ==
        "[1]: integer 256 out of range for uint8_t");
  CHECK(decodeError<kj::Array<int>>(Value::of(std::vector<double>{1.0})) ==
        "[0]: expected an integer, got float64 1.0");
}

TEST_CASE("payload: duplicate map keys are rejected") {
  Value value;
  auto entries = value.builder().initMap(2);
  for (auto entry: entries) {
    encodeValue(entry.initKey(), "same");
    encodeValue(entry.initValue(), 1);
  }
  CHECK(decodeError<std::map<std::string, int>>(value) == "duplicate map key \"same\"");
  CHECK(decodeError<std::unordered_map<std::string, int>>(value) ==
        "duplicate map key \"same\"");
}

TEST_CASE("payload: Value embeds verbatim") {
  auto inner = Value::of(std::map<std::string, int>{{"x", 1}});
  auto outer = Value::of(std::vector<Value>{});
  std::vector<Value> items;
  items.push_back(inner.clone());
  items.push_back(Value::of("text"));
  items.push_back(Value());
  outer = Value::of(items);
  CHECK(describe(outer) == "[{\"x\": 1}, \"text\", null]");

  auto back = outer.as<std::vector<Value>>();
  REQUIRE(back.size() == 3);
  CHECK(back[0] == inner);
  CHECK(back[2].isNull());
  CHECK(Value::of(inner) == inner);
  CHECK(inner.as<Value>() == inner);
  CHECK(roundTrip(std::map<std::string, Value>{}).empty());
}

TEST_CASE("payload: Value basics") {
  Value null;
  CHECK(null.isNull());
  CHECK(null.reader().isNull());
  CHECK(null == Value());
  CHECK(describe(null) == "null");

  auto number = Value::of(42);
  CHECK(!number.isNull());
  CHECK(number.as<int>() == 42);
  CHECK(number.toString() == "42");
  CHECK(kj::str(number) == "42");
  CHECK(kj::str("value: ", number) == "value: 42");

  auto reader = number.reader();
  Value moved = kj::mv(number);
  CHECK(number.isNull());  // NOLINT(bugprone-use-after-move): moved-from Values are null.
  CHECK(moved.as<int>() == 42);
  CHECK(reader.getInt64() == 42);  // Readers survive moves.

  Value overwritten = Value::of(std::vector<int>{1, 2, 3});
  encodeValue(overwritten.builder(), "now text");
  CHECK(overwritten.as<std::string>() == "now text");

  Value copy(Value::of(1.5).reader());
  CHECK(copy.as<double>() == 1.5);
  CHECK(Value(ValueReader()).isNull());
}

TEST_CASE("payload: Value clone is independent") {
  auto original = Value::of(std::vector<std::string>{"a", "b"});
  auto copy = original.clone();
  CHECK(copy == original);
  copy.builder().getList()[0].setText("changed");
  CHECK(copy != original);
  CHECK(original.as<std::vector<std::string>>() == std::vector<std::string>{"a", "b"});
  CHECK(Value().clone().isNull());
}

TEST_CASE("payload: Value equality is structural") {
  CHECK(Value::of(5) == Value::of(int64_t(5)));
  CHECK(Value::of(5) != Value::of(5u));  // int64 and uint64 are different kinds.
  CHECK(Value::of(5) != Value::of(5.0));
  CHECK(Value::of(0.0) == Value::of(-0.0));
  CHECK(Value::of(std::nan("")) != Value::of(std::nan("")));
  CHECK(Value::of("a") != Value::of("b"));
  CHECK(Value::of(kj::heapArray<kj::byte>({1, 2})) == Value::of(kj::heapArray<kj::byte>({1, 2})));
  CHECK(Value::of(std::vector<int>{1, 2}) == Value::of(std::make_tuple(1, 2)));
  CHECK(Value::of(std::vector<int>{1, 2}) != Value::of(std::vector<int>{1, 2, 3}));
  CHECK(Value::of(std::map<int, std::string>{{1, "a"}}) ==
        Value::of(std::unordered_map<int, std::string>{{1, "a"}}));
  CHECK(Value::of(std::map<int, int>{{1, 2}}) != Value::of(std::map<int, int>{{1, 3}}));
  CHECK(Value::of(std::vector<std::optional<int>>{std::nullopt}) ==
        Value::of(std::vector<std::nullptr_t>{nullptr}));
}

TEST_CASE("payload: kindName names every kind") {
  CHECK(kindName(Value().reader()) == "null");
  CHECK(kindName(Value::of(true).reader()) == "bool");
  CHECK(kindName(Value::of(-1).reader()) == "int64");
  CHECK(kindName(Value::of(1u).reader()) == "uint64");
  CHECK(kindName(Value::of(1.0).reader()) == "float64");
  CHECK(kindName(Value::of("t").reader()) == "text");
  CHECK(kindName(Value::of(kj::heapArray<kj::byte>(1)).reader()) == "data");
  CHECK(kindName(Value::of(std::vector<int>{}).reader()) == "list");
  CHECK(kindName(Value::of(std::map<int, int>{}).reader()) == "map");
}

TEST_CASE("payload: describeValue renders every kind") {
  CHECK(describe(Value::of(42)) == "42");
  CHECK(describe(Value::of(-1)) == "-1");
  CHECK(describe(Value::of(UINT64_MAX)) == "18446744073709551615");
  CHECK(describe(Value::of(1.5)) == "1.5");
  CHECK(describe(Value::of(1.0)) == "1.0");
  CHECK(describe(Value::of(-0.0)) == "-0.0");
  CHECK(describe(Value::of(1e300)) == "1e300");
  CHECK(describe(Value::of(INFINITY)) == "inf");
  CHECK(describe(Value::of(false)) == "false");
  CHECK(describe(Value::of("abc")) == "\"abc\"");
  CHECK(describe(Value::of("q\"b\\n\n\t\x01\x7f")) == "\"q\\\"b\\\\n\\n\\t\\x01\\x7f\"");
  CHECK(describe(Value::of(kj::heapArray<kj::byte>(12))) == "<data 12 bytes>");
  CHECK(describe(Value::of(kj::heapArray<kj::byte>(1))) == "<data 1 byte>");
  CHECK(describe(Value::of(std::make_tuple(1, 2, "x"))) == "[1, 2, \"x\"]");
  CHECK(describe(Value::of(std::map<std::string, int>{{"a", 1}})) == "{\"a\": 1}");
  CHECK(describe(Value::of(std::vector<int>{})) == "[]");
  CHECK(describe(Value::of(std::map<int, int>{})) == "{}");
}

TEST_CASE("payload: describeValue truncates long values") {
  auto text = describe(Value::of(std::string(1000, 'a')));
  CHECK(text.size() <= 70);
  CHECK(text.substr(0, 10) == "\"aaaaaaaaa");
  CHECK(text.substr(text.size() - 5) == "a...\"");

  std::vector<int> many(10000, 7);
  auto list = describe(Value::of(many));
  CHECK(list.size() <= 70);
  CHECK(list.substr(0, 7) == "[7, 7, ");
  CHECK(list.substr(list.size() - 6) == ", ...]");

  std::map<int, std::string> wide;
  for (int i = 0; i < 100; ++i) wide[i] = "value";
  auto map = describe(Value::of(wide));
  CHECK(map.size() <= 80);
  CHECK(map.substr(map.size() - 6) == ", ...}");

  // Nested long texts share the budget with their container.
  auto nested = describe(Value::of(std::vector<std::string>{std::string(100, 'x'), "y"}));
  CHECK(nested.size() <= 70);
  CHECK(nested.substr(nested.size() - 11) == "x...\", ...]");

  // A multi-byte UTF-8 character is never cut in two.
  std::string accents;
  for (int i = 0; i < 100; ++i) accents += "é";
  auto utf8 = describe(Value::of(accents));
  CHECK(utf8.substr(utf8.size() - 6) == "é...\"");
  CHECK((utf8.size() - 5) % 2 == 0);  // The quote, then whole two-byte characters.

  // Long error messages stay short too.
  auto error = decodeError<int>(Value::of(std::string(1000, 'z')));
  CHECK(error.size() <= 100);
}

TEST_CASE("payload: values survive serialisation") {
  using Payload = std::tuple<std::string, std::vector<std::optional<double>>,
                             std::map<std::string, kj::Array<kj::byte>>>;
  std::map<std::string, kj::Array<kj::byte>> blobs;
  blobs.emplace("blob", kj::heapArray<kj::byte>({9, 8, 7}));
  Payload payload(std::string("name"), std::vector<std::optional<double>>{1.5, std::nullopt},
                  kj::mv(blobs));

  capnp::MallocMessageBuilder message;
  encodeValue(message.initRoot<schema::Value>(), payload);
  auto words = capnp::messageToFlatArray(message);
  capnp::FlatArrayMessageReader reader(words);
  auto back = decodeValue<Payload>(reader.getRoot<schema::Value>());

  CHECK(std::get<0>(back) == "name");
  CHECK(std::get<1>(back) == std::vector<std::optional<double>>{1.5, std::nullopt});
  REQUIRE(std::get<2>(back).count("blob") == 1);
  CHECK(std::get<2>(back).at("blob").asPtr() == kj::heapArray<kj::byte>({9, 8, 7}).asPtr());
  CHECK(Value(reader.getRoot<schema::Value>()) == Value::of(payload));
}

}  // TEST_SUITE

}  // namespace
}  // namespace tractor
