#include "telemetry/payloads.hpp"
