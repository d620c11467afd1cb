"""Kernels: the built-in library (filters/), files, inline matrices and learned layers."""
