// Error boxing and the remote-error description layout. See errors.h.

#include "tractor/kj-runtime/wire/errors.h"

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

namespace {

kj::ArrayPtr<const char> takeLine(kj::ArrayPtr<const char>& rest) {
  // The text up to the next newline (or the end); `rest` then starts after the newline.
  for (size_t i = 0; i < rest.size(); i++) {
    if (rest[i] == '\n') {
      auto line = rest.slice(0, i);
      rest = rest.slice(i + 1, rest.size());
      return line;
    }
  }
  auto line = rest;
  rest = rest.slice(rest.size(), rest.size());
  return line;
}

constexpr kj::StringPtr MEMBER_MARKER = " member "_kj;
constexpr kj::StringPtr STACK_MARKER = " remote stack:"_kj;

}  // namespace

kj::Maybe<RemoteActorError> RemoteActorError::from(const kj::Exception& e) {
  // The layout is read line by line. A group's members are embedded whole, each announced with
  // its length (" member <bytes>:"), so that nesting costs no escaping; everything after the
  // stack marker is the stack.
  auto desc = withoutRpcPrefix(e.getDescription());
  if (!desc.startsWith(REMOTE_PREFIX)) return nullptr;
  RemoteActorError result;
  kj::ArrayPtr<const char> rest = desc.asArray();
  auto first = takeLine(rest);
  first = first.slice(strlen(REMOTE_PREFIX), first.size());
  size_t colon = 0;
  while (colon + 1 < first.size() && !(first[colon] == ':' && first[colon + 1] == ' ')) colon++;
  if (colon + 1 >= first.size()) return nullptr;
  result.boxedType = kj::str(first.slice(0, colon));
  result.message = unescapeLine(first.slice(colon + 2, first.size()));
  result.srcType = kj::str(result.boxedType);
  result.remoteStack = kj::str();
  while (rest.size() > 0) {
    auto line = takeLine(rest);
    if (line == STACK_MARKER.asArray()) {
      result.remoteStack = kj::str(rest);
      break;
    } else if (startsWith(line, MEMBER_MARKER)) {
      auto length = strtoull(kj::str(line.slice(MEMBER_MARKER.size(), line.size())).cStr(),
                             nullptr, 10);
      if (length > rest.size()) break;  // malformed: the members end here
      result.members.add(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                       kj::str(rest.slice(0, length))));
      rest = rest.slice(length, rest.size());
      if (rest.size() > 0 && rest[0] == '\n') rest = rest.slice(1, rest.size());
    } else if (startsWith(line, " src: ")) {
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
  auto embedded = KJ_MAP(member, members) {
    auto text = member.getDescription();
    return kj::str("\n", MEMBER_MARKER, text.size(), ":\n", text);
  };
  auto desc = kj::str(REMOTE_PREFIX, boxedType, ": ", escapeLine(message), "\n src: ",
                      idFields(src), ' ', srcType, "\n relay: ", kj::strArray(relay, "; "),
                      optional("canceller", canceller), optional("sender", sender),
                      kj::strArray(embedded, ""), "\n", STACK_MARKER, "\n", remoteStack);
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(desc));
}

bool isError(const kj::Exception& e, kj::StringPtr typeName) {
  return errorTypeName(e) == typeName || isRemoteError(e, typeName);
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

RemoteActorError describedHere(const kj::Exception& e, const ActorId& self) {
  // A local error in the remote layout, as raised in actor `self`.
  KJ_IF_MAYBE(name, typedErrorName(e)) {
    auto message = withoutRpcPrefix(e.getDescription()).slice(name->size() + 2);
    auto error = raisedHere(*name, self, message);
    error.remoteStack = stackOf(e);
    return error;
  }
  auto error = raisedHere("kj::Exception", self, e.getDescription());
  error.remoteStack = stackOf(e);
  return error;
}

}  // namespace

kj::Maybe<ErrorGroup> ErrorGroup::from(const kj::Exception& e) {
  KJ_IF_MAYBE(remote, RemoteActorError::from(e)) {
    if (remote->boxedType != ERROR_GROUP && remote->srcType != ERROR_GROUP) return nullptr;
    return ErrorGroup{kj::mv(remote->message), remote->members.releaseAsArray(),
                      kj::mv(remote->src)};
  }
  return nullptr;
}

kj::Exception errorGroup(const ActorId& self, kj::StringPtr message,
                         kj::ArrayPtr<const kj::Exception> members) {
  auto group = raisedHere(ERROR_GROUP, self, message);
  for (auto& member: members) {
    if (RemoteActorError::from(member) != nullptr) {
      group.members.add(kj::cp(member));
    } else {
      group.members.add(describedHere(member, self).toException());
    }
  }
  return group.toException();
}

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

namespace {

void fill(schema::Error::Builder builder, const RemoteActorError& error) {
  // The wire form of `error`, fields as they are (members too, each as it was recorded).
  builder.setBoxedType(error.boxedType);
  builder.setSrcType(error.srcType);
  builder.setMessage(error.message);
  error.src.copyTo(builder.initSrc());
  auto path = builder.initRelayPath(error.relayPath.size());
  for (auto i: kj::indices(error.relayPath)) error.relayPath[i].copyTo(path[i]);
  builder.setRemoteStack(error.remoteStack);
  KJ_IF_MAYBE(c, error.canceller) {
    c->copyTo(builder.initCanceller());
  }
  KJ_IF_MAYBE(s, error.sender) {
    s->copyTo(builder.initSender());
  }
  if (error.members.size() > 0) {
    auto members = builder.initMembers(error.members.size());
    for (auto i: kj::indices(error.members)) {
      KJ_IF_MAYBE(m, RemoteActorError::from(error.members[i])) {
        fill(members[i], *m);
      }
    }
  }
}

RemoteActorError unboxed(schema::Error::Reader reader) {
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
  // The same for a group's members (their nesting is bounded by the connection's nesting
  // limit, which the reader enforces).
  auto members = reader.getMembers();
  uint keptMembers = kj::min(members.size(), MAX_GROUP_MEMBERS);
  for (uint i = 0; i < keptMembers; ++i) {
    error.members.add(unboxed(members[i]).toException());
  }
  if (members.size() > keptMembers) {
    error.message = kj::str(error.message, " (", members.size() - keptMembers,
                            " more members were dropped)");
  }
  // A malformed error (from a hostile or broken peer) must still print sensibly.
  if (error.boxedType.size() == 0) error.boxedType = kj::str("kj::Exception");
  if (error.srcType.size() == 0) error.srcType = kj::str(error.boxedType);
  return error;
}

}  // namespace

void boxError(schema::Error::Builder builder, const kj::Exception& e, const ActorId& self) {
  builder.setKjType(static_cast<uint8_t>(e.getType()));
  KJ_IF_MAYBE(remote, RemoteActorError::from(e)) {
    // Raised here in the remote layout (the last hop is this actor): sent as its own type.
    // Otherwise it is relayed: this actor becomes its last hop.
    if (remote->relayPath.back().uuid != self.uuid) {
      remote->boxedType = kj::str("RemoteActorError");
      remote->relayPath.add(self.clone());
    }
    fill(builder, *remote);
    return;
  }
  fill(builder, describedHere(e, self));
}

kj::Exception unboxError(schema::Error::Reader reader) { return unboxed(reader).toException(); }

}  // namespace tractor
