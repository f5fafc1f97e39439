"""Benchmarks: runnable scripts that print figures measured on this machine (see README.md)."""
