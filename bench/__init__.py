"""labcrunch benchmarks: `make bench` (or `python -m bench [--quick] [names...]`)."""
