"""Tools for developing the project (not installed with it)."""
