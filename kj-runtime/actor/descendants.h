// Where an actor records the processes of its subtree (a seam between the actor and spawn/).

#pragma once

#include <kj/string.h>
#include <sys/types.h>

namespace tractor {

class DescendantLedger {
  // The root's record of every process of its tree, fed by the reports relayed up the tree
  // (`Actor::reportDescendant`). Implemented in spawn/ by the orphan reaper (reaper.h), which the
  // root's entry point hands to its actor: the actor layer knows the interface only, so it does
  // not depend on how processes are spawned and reaped.
public:
  virtual void started(pid_t pid, kj::StringPtr socketPath) = 0;
  // A process of the tree now exists; `socketPath` (possibly empty) is the file its listener
  // created, to remove should the root reap it.
  virtual void reaped(pid_t pid) = 0;
  // Its parent reaped it.

protected:
  ~DescendantLedger() noexcept(false) = default;
};

}  // namespace tractor
