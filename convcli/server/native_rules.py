"""The native client's rules, generated from :mod:`convcli.server_protocol` when it is built.

Which worker serves a call (the identity variables, the runtime folder, the words that turn the
worker off, the names of sockets and entries) is decided once, in Python. ``setup.py`` renders
these facts as a C header that ``client.c`` includes, so the two clients cannot drift apart.
Standard library only, and no convcli import: the build loads this file and ``server_protocol.py`` by
path, in an environment where the package's dependencies are not installed.
"""

from __future__ import annotations

HEADER_NAME = "client_rules.h"


def render(protocol) -> str:
    """The C header for ``protocol`` (the module object)."""
    lines = [
        f"/* Generated from convcli/server_protocol.py by setup.py ({__name__}): do not edit. */",
        "#ifndef CONVCLI_CLIENT_RULES_H",
        "#define CONVCLI_CLIENT_RULES_H",
        "#include <signal.h>",
        "#include <sys/resource.h>",
        _define("COMMAND", protocol.COMMAND),
        _define("PYTHON_CLIENT", protocol.PYTHON_CLIENT),
        _define("ENABLE_VARIABLE", protocol.ENABLE_VARIABLE),
        _define("RUNTIME_NAME", protocol.RUNTIME_NAME),
        _define("FALLBACK_RUNTIME_PREFIX", protocol.FALLBACK_RUNTIME_PREFIX),
        _define("WORKER_PREFIX", protocol.WORKER_PREFIX),
        _define("SOCKET_SUFFIX", protocol.SOCKET_SUFFIX),
        _define("ENTRY_PREFIX", protocol.ENTRY_PREFIX),
        _define("ENTRY_SUFFIX", protocol.ENTRY_SUFFIX),
        f"#define CONNECT_SECONDS {int(protocol.CONNECT_TIMEOUT)}",
        f"#define ACCEPT_SECONDS {int(protocol.ACCEPT_TIMEOUT)}",
        f"#define MAX_REPLY {int(protocol.MAX_REPLY)}",
        _strings("FALSE_WORDS", sorted(protocol.FALSE_WORDS)),
        _strings("IN_PROCESS_COMMANDS", protocol.IN_PROCESS_COMMANDS),
        _strings("IDENTITY_PREFIXES", protocol.IDENTITY_PREFIXES),
        _strings("IDENTITY_NAMES", sorted(protocol.IDENTITY_NAMES)),
        _strings("READ_PER_CALL", sorted(protocol.READ_PER_CALL)),
        _strings("READ_PER_CALL_PREFIXES", protocol.READ_PER_CALL_PREFIXES),
        "static const struct { const char *name; int id; } RLIMITS[] = {"
        + ", ".join(f'{{"{name}", {name}}}' for name in protocol.RLIMITS)
        + "};",
        f"static const int FORWARDED_SIGNALS[] = {{{', '.join(protocol.FORWARDED_SIGNALS)}}};",
        "#endif",
    ]
    return "\n".join(lines) + "\n"


def _define(name: str, text: str) -> str:
    return f"#define {name} {_c_string(text)}"


def _strings(name: str, texts) -> str:
    """A NULL-terminated array of C strings."""
    items = "".join(f"{_c_string(text)}, " for text in texts)
    return f"static const char *const {name}[] = {{{items}NULL}};"


def _c_string(text: str) -> str:
    if not text.isascii() or not text.isprintable() or '"' in text or "\\" in text:
        raise ValueError(f"not a plain C string: {text!r}")
    return f'"{text}"'
