#include "tests/support/mosquitto_broker.hpp"
