// The `exec` spawn backend: the same executable, re-executed with one end of a socketpair.

#pragma once

#include <kj/async-io.h>
#include "tractor/spawn/process.h"

namespace tractor {

constexpr int CHILD_SOCKET_FD = 3;
// The fd number at which a child finds its parent connection.

constexpr const char* CHILD_FD_ENV = "TRACTOR_CHILD_FD";
// Present (holding CHILD_SOCKET_FD) in a child's environment: the marker that makes
// `tractor::main()` boot a child runtime instead of running the user's root function.
constexpr const char* PARENT_PID_ENV = "TRACTOR_PARENT_PID";
constexpr const char* ACTOR_NAME_ENV = "TRACTOR_ACTOR_NAME";

struct SpawnedChild {
  kj::Own<ChildProcess> process;
  kj::Own<kj::AsyncIoStream> connection;
  // The parent's end of the socketpair.
};

SpawnedChild execSpawn(kj::LowLevelAsyncIoProvider& lowLevel, kj::UnixEventPort& eventPort,
                       kj::StringPtr actorName);
// posix_spawn()s /proc/self/exe (vfork + exec under glibc) with the child's end of a fresh
// socketpair at fd CHILD_SOCKET_FD, every other fd closed (all runtime fds are close-on-exec),
// the signal mask cleared and SIGINT/SIGTERM/SIGPIPE reset to their defaults, and this process's
// message limits in MESSAGE_LIMITS_ENV (limits.h). The child's argv[0] is padded so that it can
// carry the actor's process title.

}  // namespace tractor
