"""Benchmarks (`make bench`). Not run by CI's test step; numbers go in issue notes."""
