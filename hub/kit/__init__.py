"""Domain-free helpers: canonical JSON, key files, bounded JSON parsing, time."""
