// The root's orphan reaper: the root is the tree's child subreaper, and reaps what it adopts.

#pragma once

#include <kj/async-unix.h>
#include <kj/map.h>
#include <sys/types.h>
#include "tractor/kj-runtime/actor/descendants.h"

namespace tractor {

class OrphanReaper final: public DescendantLedger {
  // Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): when an actor dies before its
  // own children, the kernel re-parents them here instead of to init. Every actor of the tree
  // reports the processes it spawns and reaps (relayed up to the root), so the reaper knows which
  // adopted processes belong to the tree: on each SIGCHLD it kills (SIGKILL) any such orphan still
  // running and reaps it. Processes the root's own user code started are never touched.
  //
  // One per root actor; SIGCHLD must have been captured (`UnixEventPort::captureSignal`) first.
public:
  explicit OrphanReaper(kj::UnixEventPort& eventPort);
  ~OrphanReaper() noexcept(false);
  // Kills and reaps (blocking) every adopted process of the tree still here: the root leaves
  // none behind.
  KJ_DISALLOW_COPY(OrphanReaper);

  void started(pid_t pid, kj::StringPtr socketPath = nullptr) override;
  // A process of the tree now exists.
  void reaped(pid_t pid) override;
  // Its parent reaped it.

private:
  kj::UnixEventPort& eventPort;
  kj::HashMap<pid_t, kj::String> tree;
  // Each process of the tree, with the socket file to remove should the root reap it.
  kj::Promise<void> task;

  kj::Promise<void> watch();
  void sweep(bool wait = false);
};

}  // namespace tractor
