"""Fidelity tests: Internxt's own clients (rclone's Internxt backend) against the emulator."""
