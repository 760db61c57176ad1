"""One router per resource: alerts, devices, ingest, keys, health."""
