// The two-party RPC connection that applies the message limits (limits.h). Runtime-only: not
// installed.

#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include "tractor/kj-runtime/net/limits.h"

namespace tractor {

class RpcConnection {
  // A two-party Cap'n Proto RPC connection over `stream` (not owned; it must outlive this object)
  // that reads with `messageLimits()` and remembers why it broke. What capnp's TwoPartyClient
  // does, plus the limits (0.9.2's TwoPartyClient takes no ReaderOptions) and the reason.
  //
  // Destroying it ends the connection (without telling the peer anything but end of stream).
public:
  RpcConnection(kj::AsyncIoStream& stream, capnp::rpc::twoparty::Side side,
                kj::Maybe<capnp::Capability::Client> bootstrap = nullptr);
  // `bootstrap`: what this side offers the peer; none by default.
  ~RpcConnection() noexcept(false);
  KJ_DISALLOW_COPY(RpcConnection);

  capnp::Capability::Client bootstrap();
  // The peer's bootstrap capability.

  kj::Promise<void> onDisconnect();
  // Resolves (never rejects) once the connection has ended, for whatever reason; `failure()`
  // then says whether it broke.

  kj::Promise<void> whenBroken();
  // Resolves as soon as `failure()` is set (before the calls pending on the connection learn
  // of it); never for an orderly end.

  kj::Maybe<const kj::Exception&> failure() const;
  // Why the connection broke, once it has: an incoming frame this side could not read (not
  // Cap'n Proto framing, beyond the limits), a protocol violation this side aborted for, or the
  // reason the peer gave when it aborted. Null while it is up and after an orderly end (the
  // peer closed the stream, or this side was destroyed).

private:
  class WatchedStream;
  kj::Own<WatchedStream> messages;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpcSystem;
};

}  // namespace tractor
