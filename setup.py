"""Only the command's launchers depend on the platform; everything else is in pyproject.toml.

- POSIX: the Python client is a plain script (convcli/server/convcli; why: its docstring).
- Linux, where a C compiler is found: ``convcli`` is the native client (convcli/server/client.c:
  a warm call without an interpreter start) and the Python client is installed beside it as
  ``convcli-python``, which the native client runs for every call it does not hand to a worker.
  No compiler (or CONVCLI_NATIVE_CLIENT=0): ``convcli`` is the Python client, as on other POSIX
  systems.
- Windows: the entry point (convcli.exe).
"""

import importlib.util
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
SERVER = os.path.join("convcli", "server")
NATIVE_SOURCE = os.path.join(SERVER, "client.c")
MISSING_LINE = "NATIVE_CLIENT_MISSING = None"  # in the Python client's script (convcli/server/convcli)


def _load(path):
    """A module of convcli by its path: the build has none of the package's dependencies."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"_convcli_build_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = _load(os.path.join("convcli", "server_protocol.py"))  # below the worker and the CLI


class NativeClientDistribution(Distribution):
    def has_ext_modules(self):
        return NATIVE  # the native client is machine code: the wheel is tagged for this platform


class BuildScripts(build_scripts):
    def run(self):
        super().run()  # the Python client as build/scripts-X.Y/convcli, its #!python line fixed
        if NATIVE and os.environ.get("CONVCLI_NATIVE_CLIENT", "1") != "0":
            self._build_native_client()

    def _build_native_client(self):
        command = os.path.join(self.build_dir, protocol.COMMAND)
        with tempfile.TemporaryDirectory() as folder:
            binary = os.path.join(folder, protocol.COMMAND)
            compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
            rules = _load(os.path.join(SERVER, "native_rules.py"))
            with open(os.path.join(folder, rules.HEADER_NAME), "w", encoding="ascii") as header:
                header.write(rules.render(protocol))
            try:
                subprocess.run([*compiler, "-O2", "-I", folder, "-o", binary, NATIVE_SOURCE], check=True)
            except (OSError, subprocess.CalledProcessError) as error:
                self._say_no_native_client(command, f"{shlex.join(compiler)} failed: {error}")
                return
            shutil.copy2(command, os.path.join(self.build_dir, protocol.PYTHON_CLIENT))
            shutil.copy2(binary, command)
            os.chmod(command, 0o755)

    def _say_no_native_client(self, command, reason):
        """Here (pip shows it with -v) and, once, at the command's first call: the Python client
        carries the reason in its script."""
        print(f"convcli: no native client ({reason}); 'convcli' is the Python client", file=sys.stderr)
        with open(command, encoding="utf-8") as file:
            script = file.read()
        with open(command, "w", encoding="utf-8") as file:
            file.write(script.replace(MISSING_LINE, f"NATIVE_CLIENT_MISSING = {reason!r}", 1))


if os.name == "posix":
    setup(
        scripts=["convcli/server/convcli"],
        cmdclass={"build_scripts": BuildScripts},
        distclass=NativeClientDistribution,
    )
else:
    setup(entry_points={"console_scripts": ["convcli = convcli.server.client:main"]})
