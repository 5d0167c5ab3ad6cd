#include "telemetry/mqtt_client.hpp"
