"""Pure functions on arrays: convolution and pooling kernels. No I/O, no printing.

Importing this package imports nothing heavy; each module pulls in Numba/SciPy itself.
"""
