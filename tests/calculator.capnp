@0xa8e02d270a5abf12;
# A user's own schema, compiled with tractor_add_schema(): the services test serves it.

$import "/capnp/c++.capnp".namespace("calc");

interface Calculator {
  add @0 (a :Int64, b :Int64) -> (sum :Int64);
  adder @1 (base :Int64) -> (adder :Adder);
  # A capability made by the service: pipelined calls reach it before this call returns.
  fail @2 (why :Text) -> ();
  wait @3 () -> ();
  # Never returns (until cancelled or revoked).
}

interface Adder {
  add @0 (x :Int64) -> (sum :Int64);
}
