"""``convcli server``: see and stop the warm worker that serves this installation."""

from __future__ import annotations

import os
import socket
import time

import click

from convcli import server_protocol as protocol
from convcli.cli.output import print_json

EXAMPLES = """

\b
Every call hands its work to a warm worker of this installation when one is up (it starts by
itself after an in-process call and leaves after CONVCLI_SERVER_IDLE seconds idle, default 300);
CONVCLI_SERVER=0, or 'enabled = no' in ~/.config/convcli/server.conf, runs every call in-process.

\b
Examples:
  convcli server status
  convcli server status --json
  convcli server stop
"""


@click.group(help="The warm worker that makes each call start fast." + EXAMPLES)
def server() -> None:
    pass


@server.command(help="Where the worker is, its memory, what it served and how long it has been idle.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def status(as_json: bool) -> None:
    report = _report()
    if as_json:
        print_json("server status", report)
        return
    worker = report.get("worker")
    lines = [f"enabled: {'yes' if report['enabled'] else 'no'} ({report['why']})"]
    if report.get("unsupported") and not worker:
        lines.append(_unsupported_line(report["unsupported"]))
    if worker:
        memory = worker.get("memory", {})
        lines += [
            f"worker: pid {worker['pid']}, socket {worker['socket']}",
            f"memory: {_mib(memory.get('rss'))} resident, {_mib(memory.get('pss'))} proportional "
            "(pages shared with its children counted once)",
            f"up {_duration(time.time() - worker['started'])}, served {worker['served']} calls, "
            f"{len(worker['running'])} running, idle {_duration(worker['idle_seconds'])} "
            f"(leaves after {_duration(worker['idle_timeout'])} idle)",
            f"threading layer: {worker['threading_layer']}",
        ]
    else:
        lines.append("worker: none running for this installation and environment")
    native, client = report.get("native_client"), report.get("client")
    if native:
        finds = "finds this worker" if native["finds_worker"] else "none named yet: a call starts one"
        lines.append(f"native client: {native['command']} ({finds})")
    elif client:
        why = client.get("native_missing") or "none was built by this installation"
        lines.append(f"Python client: {client['command']} (no native client: {why})")
    click.echo("\n".join(lines))


@server.command(help="Stop the worker (the calls it is running finish first).")
@click.option("--all", "every", is_flag=True, help="Stop the workers of every installation and environment.")
def stop(every: bool) -> None:
    folder = _folder()
    paths = _all_sockets(folder) if every else [_paths(folder)["socket"]]
    stopped = [reply["stopping"] for reply in (_ask(path, {"op": "stop"}) for path in paths) if reply]
    if not stopped:
        click.echo("no worker was running")
        return
    click.echo(f"stopped {'workers' if len(stopped) > 1 else 'worker'} (pid {', '.join(map(str, stopped))})")


def _report() -> dict:
    config = protocol.settings()
    report: dict = {"enabled": bool(config["enabled"]) and protocol.supported()}
    if not protocol.supported():
        report["why"] = "this platform lacks fork, Unix sockets or descriptor passing"
    elif os.environ.get(protocol.ENABLE_VARIABLE) is not None:
        report["why"] = f"{protocol.ENABLE_VARIABLE}={os.environ[protocol.ENABLE_VARIABLE]}"
    elif not config["enabled"]:
        report["why"] = f"'enabled = no' in {protocol.config_path(os.environ)}"
    else:
        report["why"] = "default"
    report["idle_timeout"] = config["idle_timeout"]
    folder = _folder()
    report["key"] = protocol.installation_key(os.environ)
    paths = protocol.worker_paths(folder, report["key"])
    unsupported = protocol.read_unsupported(paths["unsupported"], os.environ)
    if unsupported:
        report["unsupported"] = unsupported
    report["worker"] = _ask(paths["socket"], {"op": "status"})
    report["client"] = _client()
    report["native_client"] = _native_client(folder, report["client"], report["worker"])
    return report


def _unsupported_line(record: dict) -> str:
    """Why no worker runs here and what to do, in one line."""
    if record.get("holds"):
        when = (
            f"tried again in {_duration(record.get('recheck_after', 0) - time.time())}, or at once "
            "when the installation or the environment changes"
        )
    else:
        when = "it no longer holds: the next call starts a worker again"
    return f"no worker here: {record.get('reason')}; to fix: {record.get('fix')} ({when})"


def _client() -> dict | None:
    """Which client the installed ``convcli`` command is: ``native`` (server/client.c) or
    ``python``, with why no native client was built where setup.py recorded it; None under
    ``python -m convcli``."""
    launchers = protocol.launcher_folder()
    if launchers is None:
        return None
    command = os.path.join(launchers, protocol.COMMAND)
    try:
        with open(command, "rb") as file:
            native = file.read(4) == b"\x7fELF"
    except OSError:
        return None
    if native:
        return {"kind": "native", "command": command}
    return {"kind": "python", "command": command, "native_missing": protocol.native_client_missing}


def _native_client(folder: str, client: dict | None, worker: dict | None) -> dict | None:
    """The native client installed beside this command (``client``, from :func:`_client`), and
    whether the entry it reads names the running worker; None where ``convcli`` is the Python client."""
    if client is None or client["kind"] != "native":
        return None
    command = client["command"]
    launchers = os.path.dirname(command)
    entry = protocol.entry_path(folder, launchers, os.environ)
    try:
        with open(entry, encoding="ascii") as file:
            named = file.read()
    except OSError:
        named = None
    return {"command": command, "entry": entry, "finds_worker": bool(worker) and named == worker.get("key")}


def _folder() -> str:
    try:
        return protocol.runtime_dir()
    except OSError as error:
        raise click.ClickException(f"the worker's folder is not private: {error}") from error


def _paths(folder: str) -> dict[str, str]:
    return protocol.worker_paths(folder, protocol.installation_key(os.environ))


def _all_sockets(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, name)
        for name in os.listdir(folder)
        if name.startswith(protocol.WORKER_PREFIX) and name.endswith(protocol.SOCKET_SUFFIX)
    )


def _ask(path: str, message: dict) -> dict | None:
    """The worker's answer to one request, or None when no worker of ours answers there."""
    if not protocol.socket_is_ours(path):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(5.0)
        try:
            connection.connect(path)
            if protocol.peer_uid(connection) != os.getuid():
                return None
            protocol.send(connection, message)
            reply, _ = protocol.receive(connection)
        except (OSError, protocol.ProtocolError):
            return None
    return reply


def _mib(size: int | None) -> str:
    return "?" if size is None else f"{size / 2**20:.0f} MiB"


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
