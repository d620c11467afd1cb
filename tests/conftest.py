import os
import resource

# Commands run by the tests go in-process unless a test asks for the warm worker
# (tests/test_server.py does, with a private runtime folder): no background workers of the
# code under test outlive the run or serve a test the previous revision's code.
os.environ["CONVCLI_SERVER"] = "0"
# Outputs compare equal whether or not Numba's cache is cold (tests/test_jit.py turns it on).
os.environ["CONVCLI_COMPILE_NOTICE"] = "0"

from hypothesis import HealthCheck, settings  # noqa: E402

from convcli.budget import parse_amount  # noqa: E402

# An address-space cap for the session (RLIMIT_AS): a runaway allocation fails its own test with a
# MemoryError that names it, instead of the OOM killer ending the run (and the machine's other
# work); the processes the tests start (commands, warm workers, Dask's workers) inherit it.
# Measured on a 2-core machine: the whole suite peaks at 2.0 GiB of address space (VmPeak; 0.8 GiB
# resident). Each thread Numba starts reserves ~70 MiB more (glibc's malloc arena and its stack,
# reserved, not used: 64 threads add 1.4 GiB), so the cap is 4 GiB plus 72 MiB per CPU, unless
# CONVCLI_TEST_MEMORY_CAP gives another amount (such as 8G), or 0 for none.
MEMORY_CAP_VARIABLE = "CONVCLI_TEST_MEMORY_CAP"


def memory_cap() -> int | None:
    """The session's address-space cap in bytes (None: no cap)."""
    text = os.environ.get(MEMORY_CAP_VARIABLE)
    if text is None:
        return (4 << 30) + (72 << 20) * (os.cpu_count() or 1)
    return None if text.strip() == "0" else parse_amount(text, MEMORY_CAP_VARIABLE)


def cap_address_space() -> None:
    cap = memory_cap()
    if cap is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft == resource.RLIM_INFINITY or cap < soft:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


cap_address_space()

# Numba compiles on first call, so no per-example deadline; CI runs fewer examples.
settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")
