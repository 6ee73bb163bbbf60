@0xe97e6b53ed05d1ee;
# The default dynamic payload of tractor for C++: what msgpack carries for Python tractor.
# Function arguments, results and stream items travel as `Value`s; a typed payload (a struct of
# the user's schema) is a Value of kind `typed`.

$import "/capnp/c++.capnp".namespace("tractor::schema");

struct Value {
  union {
    null @0 :Void;
    bool @1 :Bool;
    int64 @2 :Int64;
    uint64 @3 :UInt64;
    float64 @4 :Float64;
    text @5 :Text;
    data @6 :Data;
    list @7 :List(Value);
    map @8 :List(Entry);
    # A map keeps its entries in the order they were encoded; keys are Values themselves.
    typed :group {
      # A struct of a user's own schema, carried as itself (kj-runtime/wire/typed.h). A group, so
      # that the struct is one pointer away from the Value.
      typeId @9 :UInt64;
      # The Cap'n Proto id of the struct type `content` was built as.
      content @10 :AnyPointer;
      # The struct. It may hold capabilities, which are revoked when the dialogue that sent
      # them ends (see context.h).
    }
  }

  struct Entry {
    key @0 :Value;
    value @1 :Value;
  }
}
