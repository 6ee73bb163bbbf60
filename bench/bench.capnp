@0xe138aace3072ebab;
# The typed payloads of tractor-bench (bench/bench.cpp), compiled with tractor_add_schema(): the
# typed counterparts of the benchmark's dynamic int64 and 1 KiB data items.

$import "/capnp/c++.capnp".namespace("benchschema");

struct Tick {
  # An 8-byte item: the typed counterpart of an int64 Value.
  seq @0 :UInt64;
}

struct Blob {
  # A 1 KiB item (`data`), numbered: the typed counterpart of a Data Value.
  seq @0 :UInt64;
  data @1 :Data;
}
