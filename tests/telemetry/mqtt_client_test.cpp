// tests for telemetry/mqtt_client (to be written)
