"""A local Internxt-compatible server (drive + network APIs + object store) for tests."""
