"""Infrastructure: settings, Redis, Kafka and the process runtime (logging, metrics,
allocator, compiled-kernel cache). Imports the core only, never a domain package."""
