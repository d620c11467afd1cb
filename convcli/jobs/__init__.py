"""Per-file jobs: read one file, apply the library, write one file, return its record.

``convolve_file`` (:mod:`.convolve`), ``pool_file`` (:mod:`.pool`) and ``predict_file``
(:mod:`.predict`) are what the executors run on each file, in a thread, a worker process or a
Dask worker; :mod:`.batch` runs them over many files for Python (``convcli.convolve_files``,
``convcli.pool_files``). This package sits below the CLI: a worker that runs a job never imports
Click, rich or ``convcli.cli`` (import-linter checks it: docs/design/layers.md).
"""
