"""Benchmarks of issue 6: `make bench` runs bench/run_all.py; each script also runs alone with --quick."""
