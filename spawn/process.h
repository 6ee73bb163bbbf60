// A child process owned through a pidfd: race-free signalling, exit notification without
// SIGCHLD, and reaping.

#pragma once

#include <kj/async-unix.h>
#include <kj/io.h>
#include <kj/string.h>
#include <sys/types.h>

namespace tractor {

class ChildProcess {
  // Owns one spawned child. The pidfd is opened right after the spawn, before the child can exit
  // and be reaped by anyone else, so signals never reach a recycled pid. The exit is observed by
  // polling the pidfd on the event loop (no SIGCHLD handler, no `wait(-1)`), which leaves other
  // child-waiting code in the process undisturbed.
  //
  // The destructor of a child that was never reaped kills it (SIGKILL) and reaps it blocking: a
  // last resort that keeps the no-zombies promise even when the owner is torn down abruptly; the
  // runtime's teardown ladder normally reaps long before.
public:
  ChildProcess(kj::UnixEventPort& eventPort, pid_t pid);
  ~ChildProcess() noexcept(false);
  KJ_DISALLOW_COPY(ChildProcess);

  pid_t pid() const { return pid_; }

  kj::Promise<void> onExit();
  // Resolves once the child has exited and been reaped. May be called any number of times.

  bool hasExited() const { return status != nullptr; }
  kj::Maybe<int> exitStatus() const { return status; }
  // The wait status (as from waitpid) once reaped.

  kj::String describeExit() const;
  // "exited with status 0", "killed by signal 9 (Killed)", or "still running".

  void removeAfterExit(kj::String path);
  // Unlinks `path` (the child's listening socket) once the child is reaped, by whichever path
  // reaps it: a killed child cannot remove its own.

  void signal(int signo);
  // Sends a signal through the pidfd; a no-op once the child has been reaped.

  static void signalAll(int signo);
  // Signals every child of this process that a ChildProcess owns and that was not reaped yet.
  static kj::Promise<void> allExited();
  // Resolves once every such child has exited and been reaped.
  static size_t liveCount();
  static bool owns(pid_t pid);
  // True when a ChildProcess of this process owns `pid`.

private:
  pid_t pid_;
  kj::AutoCloseFd pidfd;
  // Declared before the observer, so that it is closed after the observer unregistered it.
  kj::UnixEventPort::FdObserver observer;
  kj::Maybe<int> status;
  kj::Maybe<kj::ForkedPromise<void>> exited;
  kj::Maybe<kj::String> socketPath;

  bool tryReap();
  void reaped(int waitStatus);
};

}  // namespace tractor
