"""The rfmflow service: event ingest, live segments, tags, snapshots and the HTTP API."""
