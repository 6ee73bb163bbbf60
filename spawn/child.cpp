// The child entry point. See child.h.

#include "tractor/spawn/child.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "tractor/kj-runtime/actor/actor.h"
#include "tractor/kj-runtime/net/buffered-stream.h"
#include "tractor/kj-runtime/net/limits-internal.h"
#include "tractor/spawn/exec-spawn.h"

namespace tractor {

bool isChildProcess() { return getenv(CHILD_FD_ENV) != nullptr; }

int childMain() {
  // Consume the spawn marker so that this actor's own children get fresh ones.
  const char* fdText = getenv(CHILD_FD_ENV);
  KJ_REQUIRE(fdText != nullptr, "childMain() outside a spawned child");
  int fd = atoi(fdText);
  pid_t parentPid = static_cast<pid_t>(atol(getenv(PARENT_PID_ENV) ?: "0"));
  auto name = kj::str(getenv(ACTOR_NAME_ENV) ?: "child");
  unsetenv(CHILD_FD_ENV);
  unsetenv(PARENT_PID_ENV);
  unsetenv(ACTOR_NAME_ENV);
  // The root's limits, before any connection exists (MESSAGE_LIMITS_ENV stays set for our own
  // children).
  setMessageLimits(childEnvironmentLimits());

  // Backstop for a parent that dies without closing the connection in order: the kernel kills
  // us. The re-check closes the race with a parent that died before the prctl.
  KJ_SYSCALL(prctl(PR_SET_PDEATHSIG, SIGKILL));
  if (getppid() != parentPid) return 1;
  // Ctrl-C reaches the whole foreground process group; the root turns it into a graceful
  // cancellation of the tree, so children must not die of it on their own.
  signal(SIGINT, SIG_IGN);
  // A closed connection is an EPIPE error, not a signal.
  signal(SIGPIPE, SIG_IGN);

  // SIGTERM is the teardown ladder's hard step: handled below, it takes our own children down
  // with us instead of leaving them to the kernel's parent-death signal.
  kj::UnixEventPort::captureSignal(SIGTERM);
  auto io = kj::setupAsyncIo();
  LogSink sink;
  const char* level = getenv("TRACTOR_LOGLEVEL");
  if (level != nullptr) {
    KJ_IF_MAYBE(l, parseLogLevel(level)) {
      setLogLevel(*l);
    }
  }
  Actor actor(io, ActorId{kj::mv(name), kj::str(), static_cast<uint32_t>(getpid())}, false);
  auto connection = kj::heap<BufferedStream>(io.lowLevelProvider->wrapSocketFd(
      fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
  // SIGTERM ends either phase below: the service, or the graceful teardown after it.
  auto terminated = io.unixEventPort.onSignal(SIGTERM).then([](siginfo_t) { return SIGTERM; })
                        .fork();
  int signo;
  {
    RpcConnection rpc(*connection, capnp::rpc::twoparty::Side::SERVER,
                      capnp::Capability::Client(actor.serve(nullptr)));
    signo = rpc.onDisconnect()
                .then([]() { return 0; })
                .exclusiveJoin(terminated.addBranch())
                .wait(io.waitScope);
    if (signo == 0) {
      KJ_IF_MAYBE(why, rpc.failure()) {
        TRACTOR_LOG(WARNING, "parent connection broke: ", why->getDescription());
      } else {
        TRACTOR_LOG(RUNTIME, "parent connection closed");
      }
      // Whatever still runs was started over that connection: cancel it and tear down our own
      // children before exiting.
      signo = actor.cancel(actor.id())
                  .then([]() { return 0; })
                  .exclusiveJoin(terminated.addBranch())
                  .wait(io.waitScope);
    }
    if (signo != 0) {
      // Hard teardown: no graceful path is left. Kill and reap our children, then leave without
      // running the cancelled tasks' destructors (their graceful teardown is moot).
      TRACTOR_LOG(WARNING, "terminated by signal ", signo, ": killing ",
                  ChildProcess::liveCount(), " child actor(s)");
      ChildProcess::signalAll(SIGKILL);
      ChildProcess::allExited().wait(io.waitScope);
      fflush(nullptr);
      _exit(128 + signo);
    }
  }
  return 0;
}

}  // namespace tractor
