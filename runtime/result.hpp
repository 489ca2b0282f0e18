#pragma once

#include <utility>

#include <caf/expected.hpp>
#include <caf/result.hpp>

namespace fleetd {

/// A helper's expected<T> as a handler's reply: the value or the error.
template <class T>
caf::result<T> to_result(caf::expected<T> x) {
  if (!x)
    return std::move(x.error());
  return std::move(*x);
}

} // namespace fleetd
