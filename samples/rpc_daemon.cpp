// A daemon actor serving a small module: the root calls several of its functions, then cancels
// it. tractor's "rpc daemon" example.

#include <unistd.h>
#include <iostream>
#include <map>
#include <tractor/tractor.h>

kj::String movieTheatreQuestion() {
  return kj::str("A movie theatre is not a place for a question");
}
TRACTOR_EXPOSE(theatre, movieTheatreQuestion);

kj::String cellarDoor(kj::String who) { return kj::str("Dang that's beautiful, ", who); }
TRACTOR_EXPOSE(theatre, cellarDoor);

std::map<std::string, int64_t> seats(int64_t rows, int64_t perRow) {
  return {{"rows", rows}, {"per row", perRow}, {"total", rows * perRow}};
}
TRACTOR_EXPOSE(theatre, seats);

tractor::Task<void> rootMain() {
  co_await tractor::openNursery([](tractor::ActorNursery& n) -> tractor::Task<void> {
    tractor::Portal frank = co_await n.startActor("frank", tractor::enable("theatre"));
    kj::String question = co_await frank.run(movieTheatreQuestion);
    std::cout << question.cStr() << std::endl;
    kj::String door = co_await frank.run(cellarDoor, "Frank");
    std::cout << door.cStr() << std::endl;
    auto layout = co_await frank.run(seats, 12, 20);
    std::cout << "seats: " << layout["total"] << " in " << layout["rows"] << " rows" << std::endl;
    // By name, as a program that does not link the function would call it.
    tractor::Value same = co_await frank.run("theatre", "seats", 2, 3);
    std::cout << "by name: " << same.toString().cStr() << std::endl;
    bool acknowledged = co_await frank.cancelActor();
    std::cout << "frank cancelled: " << (acknowledged ? "yes" : "no") << std::endl;
  });
}

int main(int argc, char** argv) { return tractor::main(argc, argv, rootMain); }
