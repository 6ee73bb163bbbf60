// The server of tests/calculator.capnp's Calculator, shared by the test files that serve it (as
// an actor's service, or on an in-process connection).

#pragma once

#include <stdexcept>
#include "tests/calculator.capnp.h"

namespace tractor {
namespace test {

class AdderServer final: public calc::Adder::Server {
public:
  explicit AdderServer(int64_t base): base(base) {}

  kj::Promise<void> add(AddContext context) override {
    context.getResults().setSum(base + context.getParams().getX());
    return kj::READY_NOW;
  }

private:
  int64_t base;
};

class CalculatorServer final: public calc::Calculator::Server {
public:
  kj::Promise<void> add(AddContext context) override {
    auto params = context.getParams();
    context.getResults().setSum(params.getA() + params.getB());
    return kj::READY_NOW;
  }

  kj::Promise<void> adder(AdderContext context) override {
    context.getResults().setAdder(kj::heap<AdderServer>(context.getParams().getBase()));
    return kj::READY_NOW;
  }

  kj::Promise<void> fail(FailContext context) override {
    throw std::runtime_error(context.getParams().getWhy().cStr());
  }

  kj::Promise<void> wait(WaitContext context) override {
    // Never returns, until cancelled or revoked.
    context.allowCancellation();
    return kj::NEVER_DONE;
  }
};

}  // namespace test
}  // namespace tractor
