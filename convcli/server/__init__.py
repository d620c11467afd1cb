"""The warm worker: per-file calls as fast as ImageMagick and SoX.

A cold ``convcli`` process spends most of its time getting ready (imports, Numba's typing set-up,
loading cached kernels, the interpreter's exit sweep), not working. The model is Bazel's server
and the Gradle daemon:

- ``client``: the ``convcli`` entry point, standard library only. It passes its argv, cwd, umask,
  environment, rlimits, nice value and stdin/stdout/stderr descriptors over a private Unix socket
  to a warm worker of the same installation and returns the exit status the worker reports; with
  no worker it runs the command in-process and starts one in the background for the next call.
- ``worker``: has imported everything and loaded the cached kernels once, then runs each request
  in a forked child, so every call starts from the same warm state and cannot leak into the next.
- :mod:`convcli.server_protocol` (a base module, below this package and the CLI): where the socket
  lives, what identifies an installation, and the framing.

This package is the top layer: it runs CLI command lines (``convcli.cli.run``), so the CLI never
imports it; ``convcli server status|stop`` reaches the worker through the protocol alone.

Nothing here imports anything but the standard library until it knows it runs a command itself:
this package's ``__init__`` must stay empty of imports.
"""
