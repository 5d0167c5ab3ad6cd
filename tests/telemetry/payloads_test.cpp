// tests for telemetry/payloads (to be written)
