// A schema-first protocol: the messages and interfaces are the user's own Cap'n Proto schema
// (samples/typed_protocol.capnp, compiled by `tractor_add_schema()` in CMakeLists.txt).
//
// The "warehouse" actor offers two things:
// - a service, `Warehouse` (TRACTOR_SERVICE): the root gets a typed client of it with
//   `portal.bootstrap<Warehouse>()` and calls it like any Cap'n Proto object, pipelining
//   included; it lives as long as the actor;
// - a typed context, `session` (TRACTOR_CONTEXT taking `CalleeContext<Session>&`): a dialogue
//   whose every message has a declared struct type (`DialogueSpec`). Its started value hands the
//   root a capability, a `Basket`, which lives only as long as the session: once the session
//   ended, calls on it fail with `tractor::CapabilityRevoked`.
// Every payload is checked against the spec at both ends; a peer that declares another spec gets
// `tractor::MsgTypeError`.

#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <tractor/tractor.h>
#include "samples/typed_protocol.capnp.h"

using tractor::CallerContext;
using tractor::CalleeContext;
using tractor::Task;
using tractor::Typed;
using namespace typedproto;

using Session = tractor::DialogueSpec<Welcome, Order, Receipt, Summary>;
// The session's messages: started value, items from the root, items from the warehouse, result.
// Both sides name this one declaration; a root block declaring another spec does not compile.

// ---- in the warehouse actor ----------------------------------------------------------------

std::map<std::string, int64_t> shelves = {{"apples", 10}, {"pears", 5}, {"plums", 8}};
// The warehouse's stock (this process's own state, shared by the service and the sessions).

class ShelfServer final: public Shelf::Server {
public:
  explicit ShelfServer(std::string item): item(kj::mv(item)) {}
  kj::Promise<void> count(CountContext call) override {
    call.getResults().setCount(shelves[item]);
    return kj::READY_NOW;
  }

private:
  std::string item;
};

class WarehouseServer final: public Warehouse::Server {
public:
  kj::Promise<void> stock(StockContext call) override {
    call.getResults().setCount(shelves[call.getParams().getItem().cStr()]);
    return kj::READY_NOW;
  }
  kj::Promise<void> shelf(ShelfContext call) override {
    call.getResults().setShelf(kj::heap<ShelfServer>(call.getParams().getItem().cStr()));
    return kj::READY_NOW;
  }
};

kj::Own<WarehouseServer> makeWarehouse() { return kj::heap<WarehouseServer>(); }
TRACTOR_SERVICE(inventory, Warehouse, makeWarehouse);
// Served by every actor that enables the module "inventory"; made on the first bootstrap.

class BasketServer final: public Basket::Server {
public:
  kj::Promise<void> put(PutContext call) override {
    call.getResults().setSize(++size);
    return kj::READY_NOW;
  }

private:
  int64_t size = 0;
};

Task<Typed<Summary>> session(CalleeContext<Session>& ctx, kj::String clerk) {
  // A typed context function: it starts with a Welcome, answers each Order with a Receipt and
  // returns a Summary. The types come from `Session`; nothing else can be sent.
  Typed<Welcome> welcome;
  welcome.builder().setClerk(clerk);
  welcome.builder().setBasket(kj::heap<BasketServer>());  // a capability inside a payload
  co_await ctx.started(kj::mv(welcome));

  int64_t orders = 0;
  int64_t units = 0;
  co_await ctx.openStream([&](CalleeContext<Session>::Stream& stream) -> Task<void> {
    for (;;) {
      kj::Maybe<Typed<Order>> order = co_await stream.receive();  // null: the root closed
      KJ_IF_MAYBE(o, order) {
        auto& left = shelves[o->reader().getItem().cStr()];
        int64_t shipped = kj::min(o->reader().getQuantity(), left);
        left -= shipped;
        Typed<Receipt> receipt;
        receipt.builder().setItem(o->reader().getItem());
        receipt.builder().setShipped(shipped);
        receipt.builder().setLeft(left);
        co_await stream.send(kj::mv(receipt));
        orders++;
        units += shipped;
      } else {
        break;
      }
    }
  });

  Typed<Summary> summary;
  summary.builder().setOrders(orders);
  summary.builder().setUnits(units);
  co_return summary;
}  // returning ends the session: the Basket handed out in the Welcome is revoked here
TRACTOR_CONTEXT(inventory, session);

// ---- in the root -----------------------------------------------------------------------------

struct Line {
  const char* item;
  int64_t quantity;
};
constexpr Line ORDERS[] = {{"apples", 3}, {"pears", 7}, {"plums", 2}};

std::string stable(const kj::Exception& e) {
  // An error as "<type>: <message>", with every `name@pid` shown as `name@<pid>`.
  std::string text;
  KJ_IF_MAYBE(remote, tractor::RemoteActorError::from(e)) {
    // Raised by the runtime in a dialogue or a call: the boxed type and the message alone.
    text = kj::str(tractor::errorTypeName(e), ": ", remote->message).cStr();
  } else {
    // From a call on a Cap'n Proto capability: Cap'n Proto's "remote exception: " prefix first.
    text = e.getDescription().cStr();
    text = text.substr(text.find(tractor::errorTypeName(e).cStr()));
  }
  return std::regex_replace(text, std::regex("@[0-9]+"), "@<pid>");
}

Task<void> rootMain() {
  co_await tractor::openNursery([](tractor::ActorNursery& n) -> Task<void> {
    tractor::Portal warehouse = co_await n.startActor("warehouse", tractor::enable("inventory"));

    // The service: a typed client at once. `getShelf()` is a promise pipeline, so the count()
    // call goes out without waiting for shelf() to return.
    Warehouse::Client service = warehouse.bootstrap<Warehouse>();
    auto shelfCall = service.shelfRequest();
    shelfCall.setItem("apples");
    Shelf::Client apples = shelfCall.send().getShelf();
    auto counted = co_await apples.countRequest().send();
    std::cout << "apples on the shelf: " << counted.getCount() << std::endl;

    // The session: `session`'s own spec types the block's parameters.
    Basket::Client basket = nullptr;
    co_await warehouse.openContext(
        session, "Kim", [&](CallerContext<Session>& ctx, Typed<Welcome> welcome) -> Task<void> {
          std::cout << "welcomed by " << welcome.reader().getClerk().cStr() << std::endl;
          basket = welcome.reader().getBasket();  // valid while the session lasts
          auto put = basket.putRequest();
          put.setItem("gloves");
          auto reply = co_await put.send();
          std::cout << "basket holds " << reply.getSize() << " item" << std::endl;

          co_await ctx.openStream([](CallerContext<Session>::Stream& stream) -> Task<void> {
            for (const Line& line: ORDERS) {
              Typed<Order> order;
              order.builder().setItem(line.item);
              order.builder().setQuantity(line.quantity);
              co_await stream.send(kj::mv(order));
              kj::Maybe<Typed<Receipt>> receipt = co_await stream.receive();
              KJ_IF_MAYBE(r, receipt) {
                std::cout << "ordered " << line.quantity << ' ' << line.item << ": shipped "
                          << r->reader().getShipped() << ", " << r->reader().getLeft()
                          << " left" << std::endl;
              }
            }
          });  // closing our side ends the warehouse's loop

          Typed<Summary> summary = co_await ctx.waitForResult();  // checked: a Summary
          std::cout << "session summary: " << summary.reader().getOrders() << " orders, "
                    << summary.reader().getUnits() << " units" << std::endl;
        });

    // The session is over, so the basket it handed out is revoked; the service is not.
    auto late = basket.putRequest();
    late.setItem("scarf");
    try {
      co_await late.send();
      std::cout << "basket still works?" << std::endl;
    } catch (const kj::Exception& e) {
      std::cout << "basket after the session: " << stable(e) << std::endl;
    }
    auto stock = service.stockRequest();
    stock.setItem("pears");
    auto pears = co_await stock.send();
    std::cout << "pears in stock: " << pears.getCount() << std::endl;

    // A root built against another protocol: it expects an Order as the started value. Opened
    // by name, the mismatch is found at run time, when the Welcome arrives (and the root logs
    // the refusal as a warning).
    using WrongSession = tractor::DialogueSpec<Order, Order, Receipt, Summary>;
    try {
      co_await warehouse.openContext(
          "inventory", "session", "Kim",
          [](CallerContext<WrongSession>&, Typed<Order>) -> Task<void> { co_return; });
      std::cout << "no mismatch?" << std::endl;
    } catch (const kj::Exception& e) {
      std::cout << "wrong spec: " << stable(e) << std::endl;
    }

    bool acknowledged = co_await warehouse.cancelActor();
    std::cout << "warehouse cancelled: " << (acknowledged ? "yes" : "no") << std::endl;
  });
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
