"""The built-in kernel library: plain data files, shipped in the wheel as ``convcli.filters``."""
