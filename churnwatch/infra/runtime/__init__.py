"""The process runtime: logging, metrics, allocator and GC tuning, failpoints, memory traces."""
