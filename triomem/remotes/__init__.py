"""Remote backends for replication (PostgreSQL, hub)."""
