@0xbb280026bcf1ba94;
# The consumer project's own schema: the messages of a bookkeeping dialogue with a "bank" actor.
# It imports a schema of the runtime's (installed as include/tractor/schema/), as user schemas may.

$import "/capnp/c++.capnp".namespace("ledger");
using Payload = import "/tractor/schema/payload.capnp";

struct Opened {
  # The started value: who keeps the books.
  clerk @0 :Text;
}

struct Entry {
  # A stream item from the client.
  account @0 :Text;
  amount @1 :Int64;
  memo @2 :Payload.Value;
  # Any dynamic value, in the runtime's own encoding.
}

struct Balance {
  # A stream item from the bank: one per Entry.
  account @0 :Text;
  total @1 :Int64;
}

struct Closing {
  # The dialogue's result.
  entries @0 :Int64;
  total @1 :Int64;
  memos @2 :Text;
}
