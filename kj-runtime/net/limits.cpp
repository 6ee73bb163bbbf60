// Message limits and the limited RPC connection. See limits.h.

#include "tractor/kj-runtime/net/limits-internal.h"

#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <errno.h>
#include <kj/debug.h>
#include <stdlib.h>
#include <string.h>

namespace tractor {

namespace {

MessageLimits currentLimits;

}  // namespace

capnp::ReaderOptions MessageLimits::readerOptions() const {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = maxWords;
  options.nestingLimit = static_cast<int>(nestingLimit);
  return options;
}

kj::String MessageLimits::toString() const { return kj::str(maxWords, ':', nestingLimit); }

MessageLimits MessageLimits::parse(kj::StringPtr text) {
  const char* colon = strchr(text.cStr(), ':');
  KJ_REQUIRE(colon != nullptr && colon != text.cStr() && colon[1] != '\0',
             "message limits must read <maxWords>:<nestingLimit>", text);
  char* end = nullptr;
  errno = 0;
  unsigned long long words = strtoull(text.cStr(), &end, 10);
  KJ_REQUIRE(end == colon && errno == 0 && text[0] != '-', "bad maxWords in message limits", text);
  unsigned long nesting = strtoul(colon + 1, &end, 10);
  KJ_REQUIRE(*end == '\0' && errno == 0 && colon[1] != '-' && nesting <= MAX_NESTING_LIMIT,
             "bad nestingLimit in message limits", text);
  MessageLimits limits{static_cast<uint64_t>(words), static_cast<uint32_t>(nesting)};
  limits.validate();
  return limits;
}

void MessageLimits::validate() const {
  // KJ_FAIL_REQUIRE: a user reads these (RootOptions::withMessageLimits), without the condition.
  if (maxWords < MIN_MAX_WORDS) {
    KJ_FAIL_REQUIRE("maxWords is too small for the runtime's own messages", maxWords,
                    MIN_MAX_WORDS);
  }
  if (nestingLimit < MIN_NESTING_LIMIT) {
    KJ_FAIL_REQUIRE("nestingLimit is too small for the runtime's own messages", nestingLimit,
                    MIN_NESTING_LIMIT);
  }
  if (nestingLimit > MAX_NESTING_LIMIT) {
    KJ_FAIL_REQUIRE("nestingLimit is too large", nestingLimit, MAX_NESTING_LIMIT);
  }
}

const MessageLimits& messageLimits() { return currentLimits; }

void setMessageLimits(MessageLimits limits) {
  limits.validate();
  currentLimits = limits;
}

MessageLimits childEnvironmentLimits() {
  const char* text = getenv(MESSAGE_LIMITS_ENV);
  if (text == nullptr) return MessageLimits();
  return MessageLimits::parse(text);
}

kj::Maybe<kj::Exception> explainLimitError(const kj::Exception& e, kj::StringPtr peer) {
  if (typedErrorName(e) != nullptr || RemoteActorError::from(e) != nullptr) return nullptr;
  auto description = e.getDescription();
  bool remote = description.startsWith("remote exception: ");
  if (strstr(description.cStr(), "larger than our single-message size limit") != nullptr) {
    auto what = remote ? kj::str("the answer of actor ", peer)
                       : kj::str("a message to actor ", peer);
    return typedError(MESSAGE_TOO_LARGE,
                      kj::str(what, " exceeds this tree's limit of ", currentLimits.maxWords,
                              " words per message (MessageLimits::maxWords, set with "
                              "RootOptions::withMessageLimits) and was not sent: ", description));
  }
  if (strstr(description.cStr(), "Message is too deeply-nested") != nullptr) {
    auto what = remote ? kj::str("a message to actor ", peer)
                       : kj::str("a message from actor ", peer);
    return typedError(MESSAGE_TOO_DEEP,
                      kj::str(what, " nests deeper than this tree's limit of ",
                              currentLimits.nestingLimit, " levels (MessageLimits::nestingLimit, "
                              "set with RootOptions::withMessageLimits): ", description));
  }
  return nullptr;
}

// =======================================================================================

class RpcConnection::WatchedStream final: public capnp::MessageStream {
  // The message stream under the two-party network: passes everything through to capnp's own,
  // and keeps the first reason the connection broke (see `RpcConnection::failure()`).
public:
  explicit WatchedStream(kj::AsyncIoStream& stream): broken(nullptr), inner(stream) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    brokenFulfiller = kj::mv(paf.fulfiller);
    broken = paf.promise.fork();
  }

  kj::Maybe<kj::Exception> failure;
  kj::Own<kj::PromiseFulfiller<void>> brokenFulfiller;
  kj::ForkedPromise<void> broken;
  // Fulfilled when `failure` is set.
  bool ended = false;
  // The peer closed the stream, or it broke as streams do (reset, premature end): later aborts
  // are the RPC system's echo of that, not a reason of their own.

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override {
    return inner.tryReadMessage(fdSpace, options, scratchSpace)
        .then(
            [this](kj::Maybe<capnp::MessageReaderAndFds>&& result) {
              KJ_IF_MAYBE(r, result) {
                noticeAbort(*r->reader, "the peer aborted the connection: ");
              } else {
                ended = true;
              }
              return kj::mv(result);
            },
            [this](kj::Exception&& e) -> kj::Maybe<capnp::MessageReaderAndFds> {
              if (e.getType() == kj::Exception::Type::DISCONNECTED) {
                ended = true;
              } else {
                record(kj::str("the peer sent a message this actor refuses: ",
                               e.getDescription()));
              }
              kj::throwFatalException(kj::mv(e));
            });
  }

  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments)
      override {
    noticeOutgoing(segments);
    return inner.writeMessage(fds, segments);
  }

  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
    for (auto segments: messages) noticeOutgoing(segments);
    return inner.writeMessages(messages);
  }

  kj::Maybe<int> getSendBufferSize() override { return inner.getSendBufferSize(); }
  kj::Promise<void> end() override { return inner.end(); }

private:
  capnp::AsyncIoMessageStream inner;

  void record(kj::String reason) {
    if (failure == nullptr) {
      failure = kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                              kj::mv(reason));
      brokenFulfiller->fulfill();
    }
  }

  void noticeAbort(capnp::MessageReader& message, kj::StringPtr prefix) {
    // Records the reason of an Abort message. Anything unreadable is left to the RPC system,
    // which raises (and so aborts) for it itself.
    if (ended || failure != nullptr) return;
    kj::Maybe<kj::String> reason;
    kj::runCatchingExceptions([&]() {
      auto root = message.getRoot<capnp::rpc::Message>();
      if (!root.isAbort()) return;
      auto abort = root.getAbort();
      if (abort.getType() == capnp::rpc::Exception::Type::DISCONNECTED) return;
      reason = kj::str(prefix, abort.getReason());
    });
    KJ_IF_MAYBE(r, reason) {
      record(kj::mv(*r));
    }
  }

  void noticeOutgoing(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
    // An outgoing Abort is this side giving up on the connection (a protocol violation, or an
    // echo of the peer's own Abort, which was recorded first).
    if (ended || failure != nullptr) return;
    capnp::SegmentArrayMessageReader message(segments);
    noticeAbort(message, "this actor aborted the connection: ");
  }
};

namespace {

capnp::RpcSystem<capnp::rpc::twoparty::VatId> makeRpcSystem(
    capnp::TwoPartyVatNetwork& network, kj::Maybe<capnp::Capability::Client>& bootstrap) {
  KJ_IF_MAYBE(b, bootstrap) {
    return capnp::makeRpcServer(network, kj::mv(*b));
  }
  return capnp::makeRpcClient(network);
}

}  // namespace

RpcConnection::RpcConnection(kj::AsyncIoStream& stream, capnp::rpc::twoparty::Side side,
                             kj::Maybe<capnp::Capability::Client> bootstrap)
    : messages(kj::heap<WatchedStream>(stream)),
      network(*messages, side, messageLimits().readerOptions()),
      rpcSystem(makeRpcSystem(network, bootstrap)) {}

RpcConnection::~RpcConnection() noexcept(false) {}

capnp::Capability::Client RpcConnection::bootstrap() {
  capnp::word scratch[4];
  memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(scratch);
  auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(network.getSide() == capnp::rpc::twoparty::Side::CLIENT
                    ? capnp::rpc::twoparty::Side::SERVER
                    : capnp::rpc::twoparty::Side::CLIENT);
  return rpcSystem.bootstrap(vatId);
}

kj::Promise<void> RpcConnection::onDisconnect() { return network.onDisconnect(); }

kj::Promise<void> RpcConnection::whenBroken() { return messages->broken.addBranch(); }

kj::Maybe<const kj::Exception&> RpcConnection::failure() const {
  KJ_IF_MAYBE(f, messages->failure) {
    return *f;
  }
  return nullptr;
}

}  // namespace tractor
