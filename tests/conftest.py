import os

# Commands run by the tests go in-process unless a test asks for the warm worker
# (tests/test_server.py does, with a private runtime folder): no background workers of the
# code under test outlive the run or serve a test the previous revision's code.
os.environ["CONVCLI_SERVER"] = "0"
# Outputs compare equal whether or not Numba's cache is cold (tests/test_jit.py turns it on).
os.environ["CONVCLI_COMPILE_NOTICE"] = "0"

from hypothesis import HealthCheck, settings  # noqa: E402

# Numba compiles on first call, so no per-example deadline; CI runs fewer examples.
settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")
