"""Shared by the Blender add-on and the optimizer: stdlib + numpy only."""
