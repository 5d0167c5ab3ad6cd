#include "telemetry/outbox.hpp"
