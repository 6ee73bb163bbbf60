@0xda995af0d945abe7;
# The schema of samples/typed_protocol.cpp, compiled with tractor_add_schema(): a warehouse actor's
# service, and the messages of a typed ordering session with it.

$import "/capnp/c++.capnp".namespace("typedproto");

# ---- the service (TRACTOR_SERVICE), reached with portal.bootstrap<Warehouse>() ---------------

interface Warehouse {
  stock @0 (item :Text) -> (count :Int64);
  shelf @1 (item :Text) -> (shelf :Shelf);
  # A capability made by the service: calls on it can be pipelined before this one returns.
}

interface Shelf {
  count @0 () -> (count :Int64);
}

# ---- the session (a typed context): DialogueSpec<Welcome, Order, Receipt, Summary> ----------

interface Basket {
  # Handed out in the Welcome: valid while the session lasts, revoked when it ends.
  put @0 (item :Text) -> (size :Int64);
}

struct Welcome {
  # The started value (warehouse to client).
  clerk @0 :Text;
  basket @1 :Basket;
}

struct Order {
  # Stream items from the client.
  item @0 :Text;
  quantity @1 :Int64;
}

struct Receipt {
  # Stream items from the warehouse: one per Order.
  item @0 :Text;
  shipped @1 :Int64;
  left @2 :Int64;
}

struct Summary {
  # The session's result.
  orders @0 :Int64;
  units @1 :Int64;
  basketSize @2 :Int64;
}
