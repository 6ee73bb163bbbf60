// Process titles. See proctitle.h.

#include "tractor/devx/proctitle.h"

#include <string.h>
#include <sys/prctl.h>

namespace tractor {

namespace {

char* titleStart = nullptr;
size_t titleRoom = 0;

}  // namespace

void initProcessTitle(int argc, char** argv) {
  if (argc < 1 || argv == nullptr || argv[0] == nullptr) return;
  // argv strings are laid out back to back; the room is from argv[0] to the end of the last one.
  char* end = argv[0] + strlen(argv[0]);
  for (int i = 1; i < argc; i++) {
    if (argv[i] != end + 1) break;
    end = argv[i] + strlen(argv[i]);
  }
  titleStart = argv[0];
  titleRoom = end - argv[0];
}

void setProcessTitle(kj::StringPtr title) {
  if (titleStart != nullptr && titleRoom > 0) {
    size_t n = kj::min(title.size(), titleRoom);
    memcpy(titleStart, title.begin(), n);
    memset(titleStart + n, 0, titleRoom - n + 1);
  }
  // comm: the actor's name, the part of "tractor[name] ..." between the brackets.
  kj::ArrayPtr<const char> name = title.asArray();
  KJ_IF_MAYBE(open, title.findFirst('[')) {
    auto rest = title.slice(*open + 1);
    KJ_IF_MAYBE(close, rest.findFirst(']')) {
      name = rest.slice(0, *close);
    }
  }
  char comm[16];
  size_t n = kj::min(name.size(), sizeof(comm) - 1);
  memcpy(comm, name.begin(), n);
  comm[n] = '\0';
  prctl(PR_SET_NAME, comm, 0, 0, 0);
}

}  // namespace tractor
