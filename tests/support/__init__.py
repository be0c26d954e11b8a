"""Test support: fakes and fixtures shared by the test suites and benchmarks."""
