// What `tractor::main` tells a user whose program cannot start or fails: each case runs as a
// death test (a fresh process whose standard error goes to the test), and must end with exit
// status 1 and one readable line, never an abort, a KJ source location for a C++ exception, or
// "(C++ exception):0:".

#include <doctest/doctest.h>
#include <stdexcept>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tractor/tractor.h"
#include "tests/support/death-test.h"
#include "tests/support/leak-audit.h"

namespace {

using tractor::RootOptions;
using tractor::Task;

Task<void> nothing() { co_return; }

int runWith(int argc, char** argv, RootOptions options) {
  // The scenario's standard error joins its standard output, which the test reads.
  dup2(STDOUT_FILENO, STDERR_FILENO);
  return tractor::main(argc, argv, nothing, kj::mv(options));
}

TRACTOR_SCENARIO(longName) {
  return runWith(argc, argv, RootOptions().withName(kj::str(kj::repeat('n', 10000))));
}
TRACTOR_SCENARIO(garbageAddress) {
  return runWith(argc, argv, RootOptions().bindTo("garbage"));
}
TRACTOR_SCENARIO(portTooLarge) {
  return runWith(argc, argv, RootOptions().withTransport(tractor::Transport::TCP)
                                 .bindTo("tcp:127.0.0.1:70000"));
}
TRACTOR_SCENARIO(limitsTooSmall) {
  return runWith(argc, argv, RootOptions().withMessageLimits(
                                 tractor::MessageLimits().withMaxWords(8).withNestingLimit(2)));
}
TRACTOR_SCENARIO(unknownSpawnMethod) {
  setenv("TRACTOR_SPAWN_METHOD", "fork", 1);
  return runWith(argc, argv, RootOptions());
}
TRACTOR_SCENARIO(unusableRuntimeDir) {
  // A runtime directory that cannot be made: its parent is a file.
  setenv("XDG_RUNTIME_DIR", "/dev/null/runtime", 1);
  return runWith(argc, argv, RootOptions());
}
TRACTOR_SCENARIO(rootThrows) {
  dup2(STDOUT_FILENO, STDERR_FILENO);
  return tractor::main(argc, argv, []() -> Task<void> {
    throw std::runtime_error("the ledger does not balance");
    co_return;
  });
}

Task<int64_t> echoOnce(tractor::Context& ctx) {
  co_await ctx.started();
  co_await ctx.openStream([](tractor::MsgStream& stream) -> Task<void> {
    kj::Maybe<int64_t> item = co_await stream.receive<int64_t>();
    KJ_IF_MAYBE(i, item) {
      co_await stream.send(*i);
    }
  });
  co_return 1;
}
TRACTOR_CONTEXT(main_test, echoOnce);

Task<void> dialogue() {
  // A daemon, one context with one item each way, and the teardown.
  co_await tractor::openNursery([](tractor::ActorNursery& n) -> Task<void> {
    tractor::Portal peer = co_await n.startActor("peer", tractor::enable("main_test"));
    co_await peer.openContext(echoOnce, [](tractor::Context& ctx, tractor::Value) -> Task<void> {
      co_await ctx.openStream([](tractor::MsgStream& stream) -> Task<void> {
        co_await stream.send(7);
        (void)co_await stream.receive<int64_t>();
      });
      (void)co_await ctx.waitForResult<int64_t>();
    });
  });
}

int dialogueAt(int argc, char** argv, const char* level) {
  setenv("TRACTOR_LOGLEVEL", level, 1);
  dup2(STDOUT_FILENO, STDERR_FILENO);
  return tractor::main(argc, argv, dialogue);
}
TRACTOR_SCENARIO(dialogueAtInfo) { return dialogueAt(argc, argv, "info"); }
TRACTOR_SCENARIO(dialogueAtDebug) { return dialogueAt(argc, argv, "debug"); }
TRACTOR_SCENARIO(dialogueAtTrace) { return dialogueAt(argc, argv, "trace"); }

kj::String outputOf(tractor::test::ScenarioProcess& p) {
  // Everything the scenario printed, one line each.
  kj::Vector<kj::String> lines;
  for (;;) {
    kj::String line;
    KJ_IF_MAYBE(end, kj::runCatchingExceptions([&]() { line = p.readLine(); })) {
      break;
    }
    lines.add(kj::mv(line));
  }
  return kj::strArray(lines, "\n");
}

struct Ended {
  int status;
  kj::String output;
};

Ended runAudited(kj::StringPtr scenario) {
  // Runs the scenario to its end, with the leak audit after.
  tractor::test::LeakAudit audit;
  tractor::test::ScenarioProcess p(scenario);
  auto output = outputOf(p);
  int status = p.wait();
  audit.check();
  return {status, kj::mv(output)};
}

void checkRefused(kj::StringPtr scenario, kj::StringPtr expected) {
  // The scenario exits with status 1, its first line is "error: ..." and says `expected`.
  auto ended = runAudited(scenario);
  int status = ended.status;
  kj::StringPtr output = ended.output;
  INFO(scenario.cStr(), ": ", tractor::test::describeStatus(status).cStr(), "\n", output.cStr());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(output.startsWith("error: "));
  CHECK(tractor::test::contains(output, expected));
  CHECK(!tractor::test::contains(output, "(C++ exception):0:"));
  CHECK(!tractor::test::contains(output, "terminate called"));
}

kj::String logOf(kj::StringPtr scenario) {
  // What the scenario logged; it must succeed and leave nothing behind.
  auto ended = runAudited(scenario);
  CHECK_MESSAGE(tractor::test::describeStatus(ended.status) == "exit 0", ended.output.cStr());
  return kj::mv(ended.output);
}

}  // namespace

TEST_SUITE("multiproc") {
  TEST_CASE("main with an actor name too long for a process title says so and exits 1") {
    checkRefused("longName", "an actor name must have 1 to 64 characters");
  }
  TEST_CASE("main with a bind address that does not parse says so and exits 1") {
    checkRefused("garbageAddress", "garbage");
  }
  TEST_CASE("main with a TCP port over 65535 says so and exits 1") {
    checkRefused("portTooLarge", "70000");
  }
  TEST_CASE("main with message limits below the runtime's own messages says so and exits 1") {
    checkRefused("limitsTooSmall", "limit");
  }
  TEST_CASE("main with an unknown TRACTOR_SPAWN_METHOD says so and exits 1") {
    checkRefused("unknownSpawnMethod", "unknown spawn method 'fork'");
  }
  TEST_CASE("main whose runtime directory cannot be made says so and exits 1") {
    checkRefused("unusableRuntimeDir",
                 "cannot make the actors' socket directory /dev/null/runtime");
  }
  TEST_CASE("main reports a C++ exception of the root function by its type and message") {
    checkRefused("rootThrows", "error: std::runtime_error: the ledger does not balance");
  }

  TEST_CASE("logs at info say nothing of Cap'n Proto's connections being torn down") {
    auto log = logOf("dialogueAtInfo");
    CHECK_MESSAGE(!tractor::test::contains(log, "returning failure over rpc"), log.cStr());
    CHECK(!tractor::test::contains(log, "RpcSystem was destroyed"));
    CHECK(!tractor::test::contains(log, "context with"));
  }
  TEST_CASE("logs at debug show each context opened and closed, at both ends") {
    auto log = logOf("dialogueAtDebug");
    INFO(log.cStr());
    CHECK(tractor::test::contains(log, "[debug] root@"));
    CHECK(tractor::test::contains(log, " opened"));
    CHECK(tractor::test::contains(log, " closed"));
    CHECK(tractor::test::contains(log, "[debug] peer@"));
    CHECK(tractor::test::contains(log, "context task for root@"));
    CHECK(tractor::test::contains(log, "spawned peer@"));
    CHECK(!tractor::test::contains(log, "stream batch"));
  }
  TEST_CASE("logs at trace show each call, started value and stream batch") {
    auto log = logOf("dialogueAtTrace");
    INFO(log.cStr());
    CHECK(tractor::test::contains(log, "started value to root@"));
    CHECK(tractor::test::contains(log, "started value from peer@"));
    CHECK(tractor::test::contains(log, "stream batch of 1 items to peer@"));
    CHECK(tractor::test::contains(log, "stream batch of 1 items from root@"));
  }
}
