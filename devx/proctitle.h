// Process titles, so that `ps` and `pstree` show the actor tree.

#pragma once

#include <kj/string.h>

namespace tractor {

void initProcessTitle(int argc, char** argv);
// Remembers where the process's argv strings live; call once, first thing in main().

void setProcessTitle(kj::StringPtr title);
// Rewrites what `ps` shows as the command line (within the room argv had; the exec spawn backend
// pads a child's argv[0] for this) and sets the thread name (`comm`, 15 characters, what
// `pstree` and `top` show) to the part of `title` that names the actor.

}  // namespace tractor
