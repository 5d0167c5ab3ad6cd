// The agent writes log values with the project's one quoter (manifests/log_value.hpp).
#pragma once

#include "manifests/log_value.hpp"

namespace edgefleet::agent {

using manifests::LogValue;

}  // namespace edgefleet::agent
