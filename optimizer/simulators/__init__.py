"""Simulators the optimizer trains against: remote render servers (and the toy)."""
