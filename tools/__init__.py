"""Command-line tools of the pack that are neither trainers nor benchmarks (run from the pack folder)."""
