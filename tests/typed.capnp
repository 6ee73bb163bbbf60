@0xc88a310f767a8d1e;
# A user's own schema for the typed-dialogue tests (tests/typed-test.cpp), compiled with
# tractor_add_schema(): the dialogue's message types and an interface sent inside them.

$import "/capnp/c++.capnp".namespace("typedtest");

interface Counter {
  # A capability an actor hands out inside a payload: each call counts up.
  next @0 () -> (n :Int64);
  hang @1 () -> ();
  # Never returns (until revoked or cancelled).
}

struct Hello {
  greeting @0 :Text;
  counter @1 :Counter;
}

struct Request {
  n @0 :Int64;
}

struct Reply {
  n @0 :Int64;
  text @1 :Text;
}

struct Summary {
  total @0 :Int64;
  counter @1 :Counter;
}

struct Other {
  # A type no dialogue of the tests declares: what a mismatched peer sends.
  x @0 :Float64;
}
