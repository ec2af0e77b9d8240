"""Test peers and fixtures shared by the test suites (gateway processes, backends, doubles)."""
