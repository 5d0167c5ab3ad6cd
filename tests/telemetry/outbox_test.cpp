// tests for telemetry/outbox (to be written)
