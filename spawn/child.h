// The child's entry point: what a process the runtime spawned runs instead of the user's root
// function (`tractor::main()` calls it; see supervise/main.h).

#pragma once

namespace tractor {

bool isChildProcess();
// True in a process spawned by the runtime (before `childMain()` consumed the marker).

int childMain();
// Runs this process as a child actor until its parent connection closes; returns the exit code.

}  // namespace tractor
