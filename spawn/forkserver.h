// The `forkserver` spawn backend: actors forked from a process that was itself forked before the
// root's event loop existed.

#pragma once

#include <kj/memory.h>
#include <kj/string.h>
#include <sys/types.h>
#include "tractor/spawn/exec-spawn.h"

namespace tractor {

constexpr const char* SPAWN_METHOD_ENV = "TRACTOR_SPAWN_METHOD";
// "exec" (the default) or "forkserver".

class ForkServer {
  // A server process forked from the root before its event loop, threads and connections exist.
  // Asked for an actor, it forks one (no exec, no dynamic loading, no static initialisation
  // again), with the CLONE_PARENT flag so that the actor is the root's own child: the root owns,
  // signals and reaps it through a pidfd exactly as with the exec backend. The actor then runs
  // the child runtime (`childMain()`) on the socket end it was handed over SCM_RIGHTS.
  //
  // Only the root uses its server; actors spawn their own children with the exec backend (a
  // forked actor is the child of whoever forked it, and only the root's server forks for the
  // root). The server dies with the root (parent-death signal) and when its control socket
  // closes (the destructor, which also reaps it).
public:
  static kj::Own<ForkServer> start();
  // Forks the server now. No event loop, thread or connection may exist in this process yet.
  ~ForkServer() noexcept(false);
  KJ_DISALLOW_COPY(ForkServer);

  static kj::Maybe<ForkServer&> current();
  // The server of this process, while one runs.

  pid_t spawn(kj::StringPtr actorName, int childSocket);
  // Asks for one actor, which will find `childSocket` at CHILD_SOCKET_FD; returns its pid (a
  // child of this process). Blocks for the round trip to the server (a fork: well under a
  // millisecond).

  pid_t pid() const { return serverPid; }

  ForkServer(pid_t serverPid, int control): serverPid(serverPid), control(control) {}
  // Use start().

private:
  pid_t serverPid;
  int control;
};

bool forkServerRequested(kj::Maybe<kj::StringPtr> configured = nullptr);
// True when TRACTOR_SPAWN_METHOD (or, without it, `configured`) asks for the forkserver; raises
// for an unknown method.

SpawnedChild forkServerSpawn(ForkServer& server, kj::LowLevelAsyncIoProvider& lowLevel,
                             kj::UnixEventPort& eventPort, kj::StringPtr actorName);
// The forkserver counterpart of execSpawn().

}  // namespace tractor
