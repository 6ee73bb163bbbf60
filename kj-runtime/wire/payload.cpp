// The default dynamic payload codec: the non-template parts. See payload.h.

#include "tractor/kj-runtime/wire/payload.h"

#include <capnp/capability.h>
#include <capnp/membrane.h>
#include <capnp/message.h>
#include <kj/debug.h>
#include <kj/map.h>
#include <kj/mutex.h>
#include <kj/vector.h>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace tractor {

namespace {

constexpr uint FIRST_SEGMENT_WORDS = 32;
// Most payloads are a few scalars or short strings: a 256-byte first segment holds them, and
// bigger ones grow the message as usual.

constexpr size_t DESCRIBE_LIMIT = 60;
// The length `describeValue()` aims at before cutting things off.

constexpr size_t MAX_LIST_SIZE = (size_t(1) << 29) - 1;
// Cap'n Proto's limit on the element count of a list (and the byte count of text or data).

[[noreturn]] void throwDecodeError(kj::String description) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(description)));
}

kj::String describeActual(ValueReader reader) {
  // The "got ..." half of a mismatch message: the kind, then the value when it says more.
  switch (reader.which()) {
    case schema::Value::NULL_:
    case schema::Value::DATA:
      return describeValue(reader);
    default:
      return kj::str(kindName(reader), ' ', describeValue(reader));
  }
}

[[noreturn]] void throwMismatch(kj::StringPtr expected, ValueReader actual) {
  throwDecodeError(kj::str("expected ", expected, ", got ", describeActual(actual)));
}

kj::String integerTypeName(bool isSigned, uint bits) {
  return kj::str(isSigned ? "int" : "uint", bits, "_t");
}

[[noreturn]] void throwOutOfRange(kj::StringPtr number, bool isSigned, uint bits) {
  throwDecodeError(
      kj::str("integer ", number, " out of range for ", integerTypeName(isSigned, bits)));
}

kj::StringPtr elementsWord(size_t count) { return count == 1 ? "element" : "elements"; }

capnp::Text::Reader requireText(ValueReader reader) {
  if (!reader.isText()) throwMismatch("text", reader);
  return reader.getText();
}

class Describer {
  // Renders a value into a buffer, cutting texts, lists and maps off with "..." once the buffer
  // has reached the limit (so that describing a huge value costs no more than a small one).
public:
  explicit Describer(size_t limit): limit(limit) {}

  void add(ValueReader value) {
    switch (value.which()) {
      case schema::Value::NULL_:
        append("null");
        return;
      case schema::Value::BOOL:
        append(value.getBool() ? "true" : "false");
        return;
      case schema::Value::INT64:
        append(kj::str(value.getInt64()));
        return;
      case schema::Value::UINT64:
        append(kj::str(value.getUint64()));
        return;
      case schema::Value::FLOAT64:
        addFloat(value.getFloat64());
        return;
      case schema::Value::TEXT:
        addText(value.getText());
        return;
      case schema::Value::DATA: {
        size_t size = value.getData().size();
        append(kj::str("<data ", size, size == 1 ? " byte>" : " bytes>"));
        return;
      }
      case schema::Value::LIST: {
        auto list = value.getList();
        out.add('[');
        for (uint i = 0; i < list.size(); ++i) {
          if (i > 0) append(", ");
          if (full()) {
            append("...");
            break;
          }
          add(list[i]);
        }
        out.add(']');
        return;
      }
      case schema::Value::MAP: {
        auto entries = value.getMap();
        out.add('{');
        for (uint i = 0; i < entries.size(); ++i) {
          if (i > 0) append(", ");
          if (full()) {
            append("...");
            break;
          }
          add(entries[i].getKey());
          append(": ");
          add(entries[i].getValue());
        }
        out.add('}');
        return;
      }
      case schema::Value::TYPED:
        append(kj::str('<', payloadTypeName(value.getTyped().getTypeId()), '>'));
        return;
    }
    append("<unknown>");
  }

  kj::String finish() {
    out.add('\0');
    return kj::String(out.releaseAsArray());
  }

private:
  kj::Vector<char> out;
  size_t limit;

  bool full() const { return out.size() >= limit; }
  void append(kj::StringPtr text) { out.addAll(text); }

  void addFloat(double value) {
    // kj::str() prints 1.0 as "1"; keep floats recognisable as floats.
    auto text = kj::str(value);
    append(text);
    bool integral = true;
    for (char c: text) {
      if (c != '-' && (c < '0' || c > '9')) integral = false;
    }
    if (integral) append(".0");
  }

  void addText(kj::StringPtr text) {
    out.add('"');
    for (size_t i = 0; i < text.size(); ++i) {
      if (full()) {
        if ((static_cast<kj::byte>(text[i]) & 0xc0) == 0x80) {
          // We are inside a UTF-8 sequence: drop its first bytes rather than cut it in two.
          // (Bytes >= 0x80 are copied as they are, so `out` and `text` advance in step here.)
          do {
            out.removeLast();
            --i;
          } while (i > 0 && (static_cast<kj::byte>(text[i]) & 0xc0) == 0x80);
        }
        append("...");
        break;
      }
      addEscaped(text[i]);
    }
    out.add('"');
  }

  void addEscaped(char c) {
    switch (c) {
      case '"': append("\\\""); return;
      case '\\': append("\\\\"); return;
      case '\n': append("\\n"); return;
      case '\r': append("\\r"); return;
      case '\t': append("\\t"); return;
    }
    auto byte = static_cast<kj::byte>(c);
    if (byte < 0x20 || byte == 0x7f) {
      const char HEX[] = "0123456789abcdef";
      out.add('\\');
      out.add('x');
      out.add(HEX[byte >> 4]);
      out.add(HEX[byte & 0x0f]);
    } else {
      out.add(c);
    }
  }
};

void copyValue(ValueBuilder to, ValueReader from) {
  switch (from.which()) {
    case schema::Value::NULL_:
      to.setNull();
      return;
    case schema::Value::BOOL:
      to.setBool(from.getBool());
      return;
    case schema::Value::INT64:
      to.setInt64(from.getInt64());
      return;
    case schema::Value::UINT64:
      to.setUint64(from.getUint64());
      return;
    case schema::Value::FLOAT64:
      to.setFloat64(from.getFloat64());
      return;
    case schema::Value::TEXT:
      to.setText(from.getText());
      return;
    case schema::Value::DATA:
      to.setData(from.getData());
      return;
    case schema::Value::LIST: {
      auto source = from.getList();
      auto target = to.initList(source.size());
      for (uint i = 0; i < source.size(); ++i) {
        copyValue(target[i], source[i]);
      }
      return;
    }
    case schema::Value::MAP: {
      auto source = from.getMap();
      auto target = to.initMap(source.size());
      for (uint i = 0; i < source.size(); ++i) {
        target[i].setKey(source[i].getKey());
        target[i].setValue(source[i].getValue());
      }
      return;
    }
    case schema::Value::TYPED: {
      auto source = from.getTyped();
      auto target = to.initTyped();
      target.setTypeId(source.getTypeId());
      target.getContent().set(source.getContent());
      return;
    }
  }
  KJ_FAIL_REQUIRE("cannot copy a Value of a kind unknown to this program",
                  static_cast<uint>(from.which()));
}

bool valuesEqual(ValueReader a, ValueReader b) {
  if (a.which() != b.which()) return false;
  switch (a.which()) {
    case schema::Value::NULL_:
      return true;
    case schema::Value::BOOL:
      return a.getBool() == b.getBool();
    case schema::Value::INT64:
      return a.getInt64() == b.getInt64();
    case schema::Value::UINT64:
      return a.getUint64() == b.getUint64();
    case schema::Value::FLOAT64:
      return a.getFloat64() == b.getFloat64();
    case schema::Value::TEXT:
      return a.getText() == b.getText();
    case schema::Value::DATA:
      return a.getData() == b.getData();
    case schema::Value::LIST: {
      auto x = a.getList();
      auto y = b.getList();
      if (x.size() != y.size()) return false;
      for (uint i = 0; i < x.size(); ++i) {
        if (!valuesEqual(x[i], y[i])) return false;
      }
      return true;
    }
    case schema::Value::MAP: {
      auto x = a.getMap();
      auto y = b.getMap();
      if (x.size() != y.size()) return false;
      for (uint i = 0; i < x.size(); ++i) {
        if (!valuesEqual(x[i].getKey(), y[i].getKey()) ||
            !valuesEqual(x[i].getValue(), y[i].getValue())) {
          return false;
        }
      }
      return true;
    }
    case schema::Value::TYPED: {
      auto x = a.getTyped();
      auto y = b.getTyped();
      return x.getTypeId() == y.getTypeId() &&
             x.getContent().equals(y.getContent()) == capnp::Equality::EQUAL;
    }
  }
  return false;  // Kinds from a newer schema cannot be compared.
}

}  // namespace

// =======================================================================================
// Free functions

kj::StringPtr kindName(ValueReader reader) {
  switch (reader.which()) {
    case schema::Value::NULL_: return "null";
    case schema::Value::BOOL: return "bool";
    case schema::Value::INT64: return "int64";
    case schema::Value::UINT64: return "uint64";
    case schema::Value::FLOAT64: return "float64";
    case schema::Value::TEXT: return "text";
    case schema::Value::DATA: return "data";
    case schema::Value::LIST: return "list";
    case schema::Value::MAP: return "map";
    case schema::Value::TYPED: return "struct";
  }
  return "unknown";
}

namespace {

struct PayloadTypes {
  kj::HashMap<uint64_t, kj::StringPtr> names;
};
kj::MutexGuarded<PayloadTypes>& payloadTypes() {
  static kj::MutexGuarded<PayloadTypes> types;
  return types;
}

}  // namespace

void registerPayloadType(uint64_t typeId, kj::StringPtr name) {
  payloadTypes().lockExclusive()->names.upsert(typeId, name, [](auto&, auto&&) {});
}

kj::String payloadTypeName(uint64_t typeId) {
  KJ_IF_MAYBE(name, payloadTypes().lockShared()->names.find(typeId)) {
    return kj::str(*name);
  }
  return kj::str("struct @0x", kj::hex(typeId));
}

kj::String describeValue(ValueReader reader) {
  Describer describer(DESCRIBE_LIMIT);
  describer.add(reader);
  return describer.finish();
}

// =======================================================================================
// Value

struct Value::Storage {
  // A Value's message, with a capability table of its own so that `hasCapabilities()` can tell
  // whether the message holds any (the message builder's built-in table is not observable).
  capnp::MallocMessageBuilder message{FIRST_SEGMENT_WORDS};
  capnp::BuilderCapabilityTable capabilities;
};

Value::Value() = default;

Value::Value(ValueReader reader) {
  if (reader.isNull()) return;
  storage = kj::heap<Storage>();
  // Copied through the imbued root pointer, so that capabilities land in our table.
  storage->capabilities.imbue(storage->message.getRoot<capnp::AnyPointer>())
      .setAs<schema::Value>(reader);
  root = storage->capabilities.imbue(storage->message.getRoot<schema::Value>());
}

Value Value::withMembrane(kj::Own<capnp::MembranePolicy> policy) const {
  Value copy;
  if (storage.get() == nullptr) return copy;
  copy.storage = kj::heap<Storage>();
  auto& to = *copy.storage;
  auto orphanage = capnp::Orphanage::getForMessageContaining(
      to.capabilities.imbue(to.message.initRoot<schema::Value>()));
  to.message.adoptRoot(capnp::copyOutOfMembrane(reader(), orphanage, kj::mv(policy)));
  copy.root = to.capabilities.imbue(to.message.getRoot<schema::Value>());
  return copy;
}

Value::Value(Value&& other) noexcept: storage(kj::mv(other.storage)), root(other.root) {
  other.root = nullptr;
}

Value& Value::operator=(Value&& other) noexcept {
  storage = kj::mv(other.storage);
  root = other.root;
  other.root = nullptr;
  return *this;
}

Value::~Value() noexcept {}

ValueReader Value::reader() const {
  if (storage.get() == nullptr) return ValueReader();
  return root.asReader();
}

ValueBuilder Value::builder() {
  if (storage.get() == nullptr) {
    storage = kj::heap<Storage>();
    root = storage->capabilities.imbue(storage->message.initRoot<schema::Value>());
  }
  return root;
}

bool Value::hasCapabilities() const {
  if (storage.get() == nullptr) return false;
  for (auto& cap: const_cast<Storage&>(*storage).capabilities.getTable()) {
    if (cap != nullptr) return true;
  }
  return false;
}

Value Value::clone() const { return Value(reader()); }

bool Value::isNull() const { return reader().isNull(); }

kj::String Value::toString() const { return describeValue(reader()); }

bool Value::operator==(const Value& other) const {
  return valuesEqual(reader(), other.reader());
}

kj::String KJ_STRINGIFY(const Value& value) { return value.toString(); }

// =======================================================================================
// Codec helpers

namespace _ {  // private

int64_t decodeSigned(ValueReader reader, uint bits) {
  KJ_ASSERT(bits >= 8 && bits <= 64, bits);
  int64_t max = bits == 64 ? INT64_MAX : (int64_t(1) << (bits - 1)) - 1;
  int64_t min = -max - 1;
  switch (reader.which()) {
    case schema::Value::INT64: {
      int64_t value = reader.getInt64();
      if (value < min || value > max) throwOutOfRange(kj::str(value), true, bits);
      return value;
    }
    case schema::Value::UINT64: {
      uint64_t value = reader.getUint64();
      if (value > static_cast<uint64_t>(max)) throwOutOfRange(kj::str(value), true, bits);
      return static_cast<int64_t>(value);
    }
    default:
      throwMismatch("an integer", reader);
  }
}

uint64_t decodeUnsigned(ValueReader reader, uint bits) {
  KJ_ASSERT(bits >= 8 && bits <= 64, bits);
  uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t(1) << bits) - 1;
  switch (reader.which()) {
    case schema::Value::INT64: {
      int64_t value = reader.getInt64();
      if (value < 0 || static_cast<uint64_t>(value) > max) {
        throwOutOfRange(kj::str(value), false, bits);
      }
      return static_cast<uint64_t>(value);
    }
    case schema::Value::UINT64: {
      uint64_t value = reader.getUint64();
      if (value > max) throwOutOfRange(kj::str(value), false, bits);
      return value;
    }
    default:
      throwMismatch("an integer", reader);
  }
}

uint checkedListSize(size_t size) {
  KJ_REQUIRE(size <= MAX_LIST_SIZE, "list, text or data too long for a Value", size);
  return static_cast<uint>(size);
}

void encodeText(ValueBuilder builder, kj::ArrayPtr<const char> text) {
  auto target = builder.initText(checkedListSize(text.size()));
  if (text.size() > 0) memcpy(target.begin(), text.begin(), text.size());
}

ValueListReader requireList(ValueReader reader) {
  if (!reader.isList()) throwMismatch("a list", reader);
  return reader.getList();
}

ValueListReader requireListOfSize(ValueReader reader, uint size) {
  if (!reader.isList()) {
    throwMismatch(kj::str("a list of ", size, ' ', elementsWord(size)), reader);
  }
  auto list = reader.getList();
  if (list.size() != size) {
    throwDecodeError(kj::str("expected a list of ", size, ' ', elementsWord(size), ", got ",
                             list.size(), ' ', elementsWord(list.size()), ": ",
                             describeValue(reader)));
  }
  return list;
}

ValueEntriesReader requireMap(ValueReader reader) {
  if (!reader.isMap()) throwMismatch("a map", reader);
  return reader.getMap();
}

void throwDuplicateKey(ValueReader key) {
  throwDecodeError(kj::str("duplicate map key ", describeValue(key)));
}

void rethrowAt(kj::Exception&& exception, kj::StringPtr step) {
  auto description = exception.getDescription();
  // Steps join without a separator ("[2][\"port\"]"); the path ends with ": ".
  auto prefixed = description.startsWith("[") ? kj::str(step, description)
                                              : kj::str(step, ": ", description);
  kj::Exception result(exception.getType(), kj::str(exception.getFile()), exception.getLine(),
                       kj::mv(prefixed));
  for (void* frame: exception.getStackTrace()) {
    result.addTrace(frame);
  }
  if (exception.getRemoteTrace().size() > 0) {
    result.setRemoteTrace(kj::str(exception.getRemoteTrace()));
  }
  kj::throwFatalException(kj::mv(result));
}

}  // namespace _

// =======================================================================================
// Codecs

void ValueCodec<std::nullptr_t>::encode(ValueBuilder builder, const std::nullptr_t&) {
  builder.setNull();
}

std::nullptr_t ValueCodec<std::nullptr_t>::decode(ValueReader reader) {
  if (!reader.isNull()) throwMismatch("null", reader);
  return nullptr;
}

void ValueCodec<bool>::encode(ValueBuilder builder, const bool& value) {
  builder.setBool(value);
}

bool ValueCodec<bool>::decode(ValueReader reader) {
  if (!reader.isBool()) throwMismatch("a bool", reader);
  return reader.getBool();
}

void ValueCodec<double>::encode(ValueBuilder builder, const double& value) {
  builder.setFloat64(value);
}

double ValueCodec<double>::decode(ValueReader reader) {
  switch (reader.which()) {
    case schema::Value::FLOAT64:
      return reader.getFloat64();
    case schema::Value::INT64:
      return static_cast<double>(reader.getInt64());
    case schema::Value::UINT64:
      return static_cast<double>(reader.getUint64());
    default:
      throwMismatch("a number", reader);
  }
}

void ValueCodec<float>::encode(ValueBuilder builder, const float& value) {
  builder.setFloat64(value);
}

float ValueCodec<float>::decode(ValueReader reader) {
  double value = ValueCodec<double>::decode(reader);
  if (std::isfinite(value) && std::fabs(value) > FLT_MAX) {
    throwDecodeError(kj::str(describeActual(reader), " out of range for float"));
  }
  return static_cast<float>(value);
}

void ValueCodec<kj::String>::encode(ValueBuilder builder, const kj::String& value) {
  _::encodeText(builder, value.asArray());
}

kj::String ValueCodec<kj::String>::decode(ValueReader reader) {
  return kj::heapString(requireText(reader));
}

void ValueCodec<std::string>::encode(ValueBuilder builder, const std::string& value) {
  _::encodeText(builder, kj::arrayPtr(value.data(), value.size()));
}

std::string ValueCodec<std::string>::decode(ValueReader reader) {
  auto text = requireText(reader);
  return std::string(text.begin(), text.size());
}

void ValueCodec<kj::StringPtr>::encode(ValueBuilder builder, const kj::StringPtr& value) {
  _::encodeText(builder, value.asArray());
}

void ValueCodec<std::string_view>::encode(ValueBuilder builder, const std::string_view& value) {
  _::encodeText(builder, kj::arrayPtr(value.data(), value.size()));
}

void ValueCodec<const char*>::encode(ValueBuilder builder, const char* const& value) {
  // (Not KJ_REQUIRE(value != nullptr): it would stringify the null pointer as a C string.)
  if (value == nullptr) KJ_FAIL_REQUIRE("cannot encode a null `const char*` as text");
  _::encodeText(builder, kj::StringPtr(value).asArray());
}

void ValueCodec<kj::Array<kj::byte>>::encode(ValueBuilder builder,
                                             const kj::Array<kj::byte>& value) {
  builder.setData(value.asPtr());
}

kj::Array<kj::byte> ValueCodec<kj::Array<kj::byte>>::decode(ValueReader reader) {
  if (!reader.isData()) throwMismatch("data", reader);
  return kj::heapArray<kj::byte>(reader.getData());
}

void ValueCodec<kj::ArrayPtr<const kj::byte>>::encode(ValueBuilder builder,
                                                      const kj::ArrayPtr<const kj::byte>& value) {
  builder.setData(value);
}

void ValueCodec<Value>::encode(ValueBuilder builder, const Value& value) {
  copyValue(builder, value.reader());
}

Value ValueCodec<Value>::decode(ValueReader reader) { return Value(reader); }

}  // namespace tractor
