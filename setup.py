"""Only the command's launcher depends on the platform; everything else is in pyproject.toml."""

import os

from setuptools import setup

if os.name == "posix":
    setup(scripts=["convcli/server/convcli"])  # why: the script's docstring
else:
    setup(entry_points={"console_scripts": ["convcli = convcli.server.client:main"]})
