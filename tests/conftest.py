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

# An address-space cap for the session (RLIMIT_AS; 4 GiB unless CONVCLI_TEST_MEMORY_CAP says another
# amount, such as 8G, or 0 for none): a runaway allocation fails its own test with a MemoryError
# that names it, instead of the OOM killer ending the run (and the machine's other work). A run of
# the suite peaks at ~1.5 GiB of address space (VmPeak: Numba/LLVM, the threads' malloc arenas);
# the processes the tests start (commands, warm workers, Dask's workers) inherit the cap.
MEMORY_CAP_VARIABLE = "CONVCLI_TEST_MEMORY_CAP"


def cap_address_space() -> None:
    text = os.environ.get(MEMORY_CAP_VARIABLE, "4GiB")
    if text.strip() == "0":
        return
    cap = parse_amount(text, MEMORY_CAP_VARIABLE)
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
