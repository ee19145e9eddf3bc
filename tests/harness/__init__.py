"""Shared test helpers: run the Internxt emulator as a real process."""
