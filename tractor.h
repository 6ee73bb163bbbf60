// tractor for C++: the one header a program includes.
//
//     #include <tractor/tractor.h>
//
//     tractor::Task<void> rootMain() {
//       co_await tractor::openNursery([](tractor::ActorNursery& n) -> tractor::Task<void> {
//         tractor::Portal p = co_await n.startActor("worker", tractor::enable("math"));
//         ...
//       });
//     }
//     int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
//
// It brings in what a program uses: booting a tree (`tractor::main`, `RootOptions`), actor
// nurseries, portals, function modules (`TRACTOR_EXPOSE`, `TRACTOR_CONTEXT`, `TRACTOR_STREAM`,
// `TRACTOR_SERVICE`), contexts and their streams, broadcast subscriptions, typed payloads and
// dialogues, the error types, task groups and cancel scopes, the registrar, and the version
// (`TRACTOR_VERSION_MAJOR`, ...). The headers it includes are organised by layer (see the
// README's layout) and may move between releases; this one is the stable way in.

#pragma once

#include "tractor/version.h"
#include "tractor/supervise/main.h"
#include "tractor/kj-runtime/actor/typed-context.h"
