// Jobs that fail together: no failure is lost. Four `runInActor` jobs meet at a rendezvous in
// the root (a call back into their parent), then two of them fail at the same time; the nursery
// raises one tractor::ErrorGroup whose members say which actor raised what, and the jobs that
// were still running are cancelled (tractor's "multierror" example).

#include <algorithm>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>
#include <tractor/tractor.h>

constexpr int64_t JOBS = 4;

// ---- in the root: the rendezvous the jobs call ------------------------------------------------

int64_t arrived = 0;
kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiting;

kj::Promise<void> rendezvous() {
  // Returns once every job has called it.
  if (++arrived == JOBS) {
    for (auto& w: waiting) w->fulfill();
    return kj::READY_NOW;
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiting.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}
TRACTOR_EXPOSE(jobs_root, rendezvous);

// ---- in each job ------------------------------------------------------------------------------

tractor::Task<int64_t> halve(int64_t n) {
  tractor::Portal root = KJ_ASSERT_NONNULL(tractor::Actor::current().parent());
  co_await root.run(rendezvous);
  if (n % 2 == 1) throw std::domain_error(kj::str(n, " is odd").cStr());
  // The even ones take their time: they are still running when the odd ones fail.
  co_await tractor::Actor::current().timer().afterDelay(60 * kj::SECONDS);
  co_return n / 2;
}
TRACTOR_EXPOSE(jobs, halve);

tractor::Task<void> rootMain() {
  kj::Maybe<kj::Exception> failure;
  kj::Own<tractor::ActorNursery> kept;
  try {
    co_await tractor::openNursery([&](tractor::ActorNursery& n) -> tractor::Task<void> {
      kept = n.addRef();
      for (int64_t i = 0; i < JOBS; i++) {
        co_await n.runInActor(kj::str("job_", i), {}, halve, i);
      }
    });
  } catch (const kj::Exception& e) {
    failure = kj::cp(e);
  }
  std::cout << "the nursery cancelled its children: " << (kept->cancelCalled() ? "yes" : "no")
            << std::endl;
  kept = nullptr;
  KJ_IF_MAYBE(e, failure) {
    KJ_IF_MAYBE(group, tractor::ErrorGroup::from(*e)) {
      std::vector<std::string> lines;
      for (auto& member: group->members) {
        // Each member is the error of one actor: its type, message and source.
        KJ_IF_MAYBE(remote, tractor::RemoteActorError::from(member)) {
          lines.push_back(kj::str(remote->src.name, ": ", remote->boxedType, ": ",
                                  remote->message).cStr());
        }
      }
      std::sort(lines.begin(), lines.end());
      std::cout << lines.size() << " jobs failed:" << std::endl;
      for (auto& line: lines) std::cout << "  " << line << std::endl;
    } else {
      std::cout << "one error: " << e->getDescription().cStr() << std::endl;
    }
  }
}

int main(int argc, char** argv) {
  return tractor::main(argc, argv, rootMain, tractor::RootOptions().enable("jobs_root"));
}
