"""Only the command's launchers depend on the platform; everything else is in pyproject.toml.

- POSIX: the Python client is a plain script (convcli/server/convcli; why: its docstring).
- Linux, where a C compiler is found: ``convcli`` is the native client (convcli/server/client.c:
  a warm call without an interpreter start) and the Python client is installed beside it as
  ``convcli-python``, which the native client runs for every call it does not hand to a worker.
  No compiler (or CONVCLI_NATIVE_CLIENT=0): ``convcli`` is the Python client, as on other POSIX
  systems.
- Windows: the entry point (convcli.exe).
"""

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Distribution, setup

build_scripts = Distribution().get_command_class("build_scripts")  # distutils' (no setuptools module)

NATIVE = sys.platform.startswith("linux")
NATIVE_SOURCE = os.path.join("convcli", "server", "client.c")
PYTHON_CLIENT = "convcli-python"


class NativeClientDistribution(Distribution):
    def has_ext_modules(self):
        return NATIVE  # the native client is machine code: the wheel is tagged for this platform


class BuildScripts(build_scripts):
    def run(self):
        super().run()  # the Python client as build/scripts-X.Y/convcli, its #!python line fixed
        if NATIVE and os.environ.get("CONVCLI_NATIVE_CLIENT", "1") != "0":
            self._build_native_client()

    def _build_native_client(self):
        command = os.path.join(self.build_dir, "convcli")
        with tempfile.TemporaryDirectory() as folder:
            binary = os.path.join(folder, "convcli")
            compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
            try:
                subprocess.run([*compiler, "-O2", "-o", binary, NATIVE_SOURCE], check=True)
            except (OSError, subprocess.CalledProcessError) as error:
                print(f"convcli: no native client ({error}); 'convcli' is the Python client", file=sys.stderr)
                return
            shutil.copy2(command, os.path.join(self.build_dir, PYTHON_CLIENT))
            shutil.copy2(binary, command)
            os.chmod(command, 0o755)


if os.name == "posix":
    setup(
        scripts=["convcli/server/convcli"],
        cmdclass={"build_scripts": BuildScripts},
        distclass=NativeClientDistribution,
    )
else:
    setup(entry_points={"console_scripts": ["convcli = convcli.server.client:main"]})
