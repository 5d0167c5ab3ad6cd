// tests for telemetry/health (to be written)
