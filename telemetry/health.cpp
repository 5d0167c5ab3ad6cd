#include "telemetry/health.hpp"
