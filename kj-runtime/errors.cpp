// Error boxing and the remote-error description layout. See errors.h.

#include "kj-runtime/errors.h"

#include <kj/debug.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace tractor {

namespace {

const char REMOTE_PREFIX[] = "RemoteActorError: ";

kj::Maybe<size_t> find(kj::StringPtr text, kj::StringPtr needle) {
  const char* at = strstr(text.cStr(), needle.cStr());
  if (at == nullptr) return nullptr;
  return static_cast<size_t>(at - text.cStr());
}

kj::StringPtr withoutRpcPrefix(kj::StringPtr desc) {
  // Cap'n Proto prefixes the description of an exception that a capability call raised in
  // another process, once per hop: the runtime's layouts are recognised behind it.
  constexpr kj::StringPtr RPC_PREFIX = "remote exception: "_kj;
  while (desc.startsWith(RPC_PREFIX)) desc = desc.slice(RPC_PREFIX.size());
  return desc;
}

bool isTyped(const kj::Exception& e) {
  // Compared by content, not address: a static library may hold several copies of the literal.
  return strcmp(e.getFile(), CXX_EXCEPTION_FILE) == 0;
}

kj::String escapeLine(kj::StringPtr text) {
  // One line of text: backslashes and newlines are escaped.
  kj::Vector<char> out(text.size() + 1);
  for (char c: text) {
    if (c == '\\') {
      out.addAll(kj::StringPtr("\\\\"));
    } else if (c == '\n') {
      out.addAll(kj::StringPtr("\\n"));
    } else {
      out.add(c);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

kj::String unescapeLine(kj::ArrayPtr<const char> text) {
  kj::Vector<char> out(text.size() + 1);
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      out.add(text[i + 1] == 'n' ? '\n' : text[i + 1]);
      i++;
    } else {
      out.add(text[i]);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

kj::Array<kj::ArrayPtr<const char>> split(kj::ArrayPtr<const char> text, char sep) {
  kj::Vector<kj::ArrayPtr<const char>> parts;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); i++) {
    if (i == text.size() || text[i] == sep) {
      parts.add(text.slice(start, i));
      start = i + 1;
    }
  }
  return parts.releaseAsArray();
}

kj::String idFields(const ActorId& id) { return kj::str(id.name, ' ', id.uuid, ' ', id.pid); }

kj::Maybe<ActorId> parseIdFields(kj::ArrayPtr<const char> text) {
  auto fields = split(text, ' ');
  if (fields.size() < 3) return nullptr;
  auto pid = strtoul(kj::str(fields[2]).cStr(), nullptr, 10);
  return ActorId{kj::str(fields[0]), kj::str(fields[1]), static_cast<uint32_t>(pid)};
}

bool startsWith(kj::ArrayPtr<const char> text, kj::StringPtr prefix) {
  return text.size() >= prefix.size() && memcmp(text.begin(), prefix.begin(), prefix.size()) == 0;
}

kj::String stackOf(const kj::Exception& e) {
  // Where the error was raised: file and line, the KJ context chain, and the raw trace addresses
  // (symbolize with `addr2line -e <exe>`; symbolizing here would spawn processes).
  kj::Vector<kj::String> lines;
  lines.add(kj::str(e.getFile(), ':', e.getLine()));
  for (auto ctx = e.getContext(); ctx != nullptr;) {
    KJ_IF_MAYBE(c, ctx) {
      lines.add(kj::str(c->file, ':', c->line, ": context: ", c->description));
      const kj::Exception::Context* next = nullptr;
      KJ_IF_MAYBE(n, c->next) {
        next = n->get();
      }
      ctx = next == nullptr ? kj::Maybe<const kj::Exception::Context&>(nullptr) : *next;
    }
  }
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  exe[n < 0 ? 0 : n] = '\0';
  lines.add(kj::str("trace (", exe, "): ", kj::stringifyStackTraceAddresses(e.getStackTrace())));
  return kj::strArray(lines, "\n");
}

}  // namespace

kj::Exception typedError(kj::StringPtr typeName, kj::StringPtr message,
                         kj::Exception::Type type) {
  return kj::Exception(type, CXX_EXCEPTION_FILE, 0, kj::str(typeName, ": ", message));
}

kj::Maybe<kj::String> typedErrorName(const kj::Exception& e) {
  auto desc = e.getDescription();
  bool viaRpc = false;
  if (!isTyped(e)) {
    // A typed error raised behind a capability in another actor arrives as Cap'n Proto's text.
    auto inner = withoutRpcPrefix(desc);
    if (inner.size() == desc.size()) return nullptr;
    desc = inner;
    viaRpc = true;
  }
  KJ_IF_MAYBE(pos, find(desc, ": ")) {
    auto name = desc.slice(0, *pos);
    if (viaRpc) {
      // Only a C++ type name ("tractor::CapabilityRevoked", "std::runtime_error") counts.
      bool scoped = false;
      for (auto i: kj::indices(name)) {
        if (name[i] == ' ') return nullptr;
        scoped = scoped || (name[i] == ':' && i + 1 < name.size() && name[i + 1] == ':');
      }
      if (!scoped) return nullptr;
    }
    return kj::heapString(name);
  }
  return nullptr;
}

kj::String errorTypeName(const kj::Exception& e) {
  KJ_IF_MAYBE(remote, RemoteActorError::from(e)) {
    return kj::mv(remote->boxedType);
  }
  KJ_IF_MAYBE(name, typedErrorName(e)) {
    return kj::mv(*name);
  }
  return kj::str("kj::Exception");
}

kj::Maybe<RemoteActorError> RemoteActorError::from(const kj::Exception& e) {
  auto desc = withoutRpcPrefix(e.getDescription());
  if (!desc.startsWith(REMOTE_PREFIX)) return nullptr;
  RemoteActorError result;
  auto stackMarker = "\n remote stack:\n"_kj;
  kj::ArrayPtr<const char> head = desc.asArray();
  KJ_IF_MAYBE(pos, find(desc, stackMarker)) {
    head = desc.slice(0, *pos);
    result.remoteStack = kj::str(desc.slice(*pos + stackMarker.size()));
  } else {
    result.remoteStack = kj::str();
  }
  auto lines = split(head, '\n');
  auto first = lines[0].slice(strlen(REMOTE_PREFIX), lines[0].size());
  size_t colon = 0;
  while (colon + 1 < first.size() && !(first[colon] == ':' && first[colon + 1] == ' ')) colon++;
  if (colon + 1 >= first.size()) return nullptr;
  result.boxedType = kj::str(first.slice(0, colon));
  result.message = unescapeLine(first.slice(colon + 2, first.size()));
  result.srcType = kj::str(result.boxedType);
  for (auto& line: lines.slice(1, lines.size())) {
    if (startsWith(line, " src: ")) {
      auto fields = line.slice(6, line.size());
      KJ_IF_MAYBE(id, parseIdFields(fields)) {
        result.src = kj::mv(*id);
      }
      auto parts = split(fields, ' ');
      if (parts.size() >= 4) result.srcType = kj::str(parts[3]);
    } else if (startsWith(line, " relay: ")) {
      for (auto& hop: split(line.slice(8, line.size()), ';')) {
        auto trimmed = hop.size() > 0 && hop[0] == ' ' ? hop.slice(1, hop.size()) : hop;
        KJ_IF_MAYBE(id, parseIdFields(trimmed)) {
          result.relayPath.add(kj::mv(*id));
        }
      }
    } else if (startsWith(line, " canceller: ")) {
      result.canceller = parseIdFields(line.slice(12, line.size()));
    } else if (startsWith(line, " sender: ")) {
      result.sender = parseIdFields(line.slice(9, line.size()));
    }
  }
  if (result.relayPath.size() == 0) result.relayPath.add(result.src.clone());
  return kj::mv(result);
}

kj::Exception RemoteActorError::toException() const {
  auto relay = KJ_MAP(hop, relayPath) { return idFields(hop); };
  auto optional = [](kj::StringPtr label, const kj::Maybe<ActorId>& id) {
    KJ_IF_MAYBE(i, id) {
      return kj::str("\n ", label, ": ", idFields(*i));
    }
    return kj::str();
  };
  auto desc = kj::str(REMOTE_PREFIX, boxedType, ": ", escapeLine(message), "\n src: ",
                      idFields(src), ' ', srcType, "\n relay: ", kj::strArray(relay, "; "),
                      optional("canceller", canceller), optional("sender", sender),
                      "\n remote stack:\n", remoteStack);
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(desc));
}

bool isRemoteError(const kj::Exception& e, kj::StringPtr boxedType) {
  KJ_IF_MAYBE(r, RemoteActorError::from(e)) {
    return r->boxedType == boxedType || r->srcType == boxedType;
  }
  return false;
}

namespace {

RemoteActorError raisedHere(kj::StringPtr type, const ActorId& self, kj::StringPtr message) {
  RemoteActorError error;
  error.boxedType = kj::str(type);
  error.srcType = kj::str(type);
  error.message = kj::str(message);
  error.src = self.clone();
  error.relayPath.add(self.clone());
  error.remoteStack = kj::str();
  return error;
}

}  // namespace

kj::Exception contextCancelled(const ActorId& self, const ActorId& canceller,
                               kj::StringPtr message) {
  auto error = raisedHere(CONTEXT_CANCELLED, self, message);
  error.canceller = canceller.clone();
  return error.toException();
}

kj::Exception streamOverrun(const ActorId& self, const ActorId& sender, kj::StringPtr message) {
  auto error = raisedHere(STREAM_OVERRUN, self, message);
  error.sender = sender.clone();
  return error.toException();
}

kj::Exception msgTypeError(const ActorId& self, kj::StringPtr message) {
  return raisedHere(MSG_TYPE_ERROR, self, message).toException();
}

kj::Maybe<ActorId> cancellerOf(const kj::Exception& e) {
  KJ_IF_MAYBE(remote, RemoteActorError::from(e)) {
    if (remote->boxedType == CONTEXT_CANCELLED || remote->srcType == CONTEXT_CANCELLED) {
      return kj::mv(remote->canceller);
    }
  }
  return nullptr;
}

void boxError(schema::Error::Builder builder, const kj::Exception& e, const ActorId& self) {
  builder.setKjType(static_cast<uint8_t>(e.getType()));
  KJ_IF_MAYBE(remote, RemoteActorError::from(e)) {
    // Raised here in the remote layout (the last hop is this actor): sent as its own type.
    bool raisedHere = remote->relayPath.back().uuid == self.uuid;
    builder.setBoxedType(raisedHere ? remote->boxedType.asPtr() : "RemoteActorError"_kj);
    builder.setSrcType(remote->srcType);
    builder.setMessage(remote->message);
    remote->src.copyTo(builder.initSrc());
    auto hops = remote->relayPath.size() + (raisedHere ? 0 : 1);
    auto path = builder.initRelayPath(hops);
    for (auto i: kj::indices(remote->relayPath)) remote->relayPath[i].copyTo(path[i]);
    if (!raisedHere) self.copyTo(path[remote->relayPath.size()]);
    builder.setRemoteStack(remote->remoteStack);
    KJ_IF_MAYBE(c, remote->canceller) {
      c->copyTo(builder.initCanceller());
    }
    KJ_IF_MAYBE(s, remote->sender) {
      s->copyTo(builder.initSender());
    }
    return;
  }
  auto desc = e.getDescription();
  KJ_IF_MAYBE(name, typedErrorName(e)) {
    builder.setBoxedType(*name);
    builder.setSrcType(*name);
    builder.setMessage(withoutRpcPrefix(desc).slice(name->size() + 2));
  } else {
    builder.setBoxedType("kj::Exception");
    builder.setSrcType("kj::Exception");
    builder.setMessage(desc);
  }
  self.copyTo(builder.initSrc());
  self.copyTo(builder.initRelayPath(1)[0]);
  builder.setRemoteStack(stackOf(e));
}

kj::Exception unboxError(schema::Error::Reader reader) {
  RemoteActorError error;
  error.boxedType = kj::str(reader.getBoxedType());
  error.srcType = kj::str(reader.getSrcType());
  error.message = kj::str(reader.getMessage());
  error.src = ActorId::fromReader(reader.getSrc());
  // A relay path longer than any real tree's is a hostile peer's (a list of empty structs costs
  // it nothing on the wire, and millions of hops would cost this actor memory and time): only
  // the source hop and the last ones are kept.
  auto path = reader.getRelayPath();
  uint kept = kj::min(path.size(), MAX_RELAY_HOPS);
  if (kept > 0) error.relayPath.add(ActorId::fromReader(path[0]));
  for (uint i = path.size() - kept + 1; i < path.size(); ++i) {
    error.relayPath.add(ActorId::fromReader(path[i]));
  }
  if (error.relayPath.size() == 0) error.relayPath.add(error.src.clone());
  error.remoteStack = kj::str(reader.getRemoteStack());
  if (reader.hasCanceller()) error.canceller = ActorId::fromReader(reader.getCanceller());
  if (reader.hasSender()) error.sender = ActorId::fromReader(reader.getSender());
  // A malformed error (from a hostile or broken peer) must still print sensibly.
  if (error.boxedType.size() == 0) error.boxedType = kj::str("kj::Exception");
  if (error.srcType.size() == 0) error.srcType = kj::str(error.boxedType);
  return error.toException();
}

}  // namespace tractor
