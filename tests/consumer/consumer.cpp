// A program as a user of tractor for C++ writes it, in a project of its own: it includes only
// <tractor/tractor.h>, compiles its own schema (ledger.capnp) with tractor_add_schema() or
// `capnp compile`, and links the installed library (tractor::tractor, or pkg-config's tractor).
//
// The root spawns a "bank" daemon actor, calls a function in it, then keeps the books with it
// in a typed dialogue: the bank starts it with an Opened, answers each streamed Entry with the
// account's Balance, and returns a Closing once the root closed its side.

#include <iostream>
#include <map>
#include <string>
#include <tractor/tractor.h>
#include "ledger.capnp.h"

using tractor::CalleeContext;
using tractor::CallerContext;
using tractor::Task;
using tractor::Typed;

using Books = tractor::DialogueSpec<ledger::Opened, ledger::Entry, ledger::Balance,
                                    ledger::Closing>;
// Started value, items from the root, items from the bank, result.

// ---- in the bank actor ---------------------------------------------------------------------

int64_t interest(int64_t amount, int64_t percent) { return amount * percent / 100; }
TRACTOR_EXPOSE(bank, interest);

Task<Typed<ledger::Closing>> keepBooks(CalleeContext<Books>& ctx, kj::String clerk) {
  Typed<ledger::Opened> opened;
  opened.builder().setClerk(clerk);
  co_await ctx.started(kj::mv(opened));

  std::map<std::string, int64_t> totals;
  int64_t entries = 0;
  std::string memos;
  co_await ctx.openStream([&](CalleeContext<Books>::Stream& stream) -> Task<void> {
    for (;;) {
      kj::Maybe<Typed<ledger::Entry>> entry = co_await stream.receive();  // null: closed
      KJ_IF_MAYBE(e, entry) {
        auto& total = totals[e->reader().getAccount().cStr()];
        total += e->reader().getAmount();
        memos += tractor::decodeValue<std::string>(e->reader().getMemo()) + ";";
        Typed<ledger::Balance> balance;
        balance.builder().setAccount(e->reader().getAccount());
        balance.builder().setTotal(total);
        co_await stream.send(kj::mv(balance));
        entries++;
      } else {
        break;
      }
    }
  });

  Typed<ledger::Closing> closing;
  closing.builder().setEntries(entries);
  int64_t sum = 0;
  for (auto& [account, total]: totals) sum += total;
  closing.builder().setTotal(sum);
  closing.builder().setMemos(memos);
  co_return closing;
}
TRACTOR_CONTEXT(bank, keepBooks);

// ---- in the root -----------------------------------------------------------------------------

struct Posting {
  const char* account;
  int64_t amount;
  const char* memo;
};
constexpr Posting POSTINGS[] = {{"rent", 900, "march"}, {"food", 250, "market"},
                                {"rent", -100, "refund"}};

Task<void> rootMain() {
  std::cout << "tractor " << TRACTOR_VERSION_STRING << std::endl;
  co_await tractor::openNursery([](tractor::ActorNursery& n) -> Task<void> {
    tractor::Portal bank = co_await n.startActor("bank", tractor::enable("bank"));
    int64_t earned = co_await bank.run(interest, 2000, 3);
    std::cout << "interest on 2000 at 3%: " << earned << std::endl;

    co_await bank.openContext(
        keepBooks, "Ada",
        [](CallerContext<Books>& ctx, Typed<ledger::Opened> opened) -> Task<void> {
          std::cout << "books kept by " << opened.reader().getClerk().cStr() << std::endl;
          co_await ctx.openStream([](CallerContext<Books>::Stream& stream) -> Task<void> {
            for (const Posting& p: POSTINGS) {
              Typed<ledger::Entry> entry;
              entry.builder().setAccount(p.account);
              entry.builder().setAmount(p.amount);
              tractor::encodeValue(entry.builder().initMemo(), std::string(p.memo));
              co_await stream.send(kj::mv(entry));
              kj::Maybe<Typed<ledger::Balance>> answer = co_await stream.receive();
              KJ_IF_MAYBE(balance, answer) {
                std::cout << p.account << " " << p.amount << ": balance "
                          << balance->reader().getTotal() << std::endl;
              }
            }
          });
          Typed<ledger::Closing> closing = co_await ctx.waitForResult();
          std::cout << "closed: " << closing.reader().getEntries() << " entries, total "
                    << closing.reader().getTotal() << ", memos "
                    << closing.reader().getMemos().cStr() << std::endl;
        });
  });  // the bank daemon is cancelled and reaped here
  std::cout << "every actor is gone" << std::endl;
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
