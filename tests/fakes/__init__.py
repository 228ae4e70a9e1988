"""Fake model APIs on real sockets, for tests and benchmarks."""
