"""Compiled kernels (C++, built by the project's install; see setup.py)."""
