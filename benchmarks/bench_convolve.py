"""convcli.convolve against OpenCV, scipy.ndimage and scipy.signal, side by side in one run.

    python benchmarks/bench_convolve.py [--json] [--skip-slow] [--only image|audio|cache|crossover]
                                        [--results DIR | --no-results]

Cases (the issue's): a 4K RGB float32 image (3×2160×3840), edge boundary, with a 3×3
sharpen, 5×5 Gaussian, 7×7 random, 15×15 and 31×31 Gaussian kernel, against
cv2.filter2D (BORDER_REPLICATE, on the H×W×3 image) and scipy.ndimage.convolve (mode
'nearest'); 60 s of stereo 48 kHz audio with a 31- and 255-tap FIR and a 2 s (96,000-tap)
impulse response against scipy.signal.oaconvolve and fftconvolve. Every case also checks that
the results agree; the contenders' calls alternate round by round (best of 9 rounds), so a
slow phase of the shared machine slows all of them alike. Then the Numba cache: the first call
in a fresh process with an empty cache (compile) against a second process that loads the cache.
``--only crossover`` checks the cost model behind ``method="auto"``: direct against fft at growing
kernel sizes, 1-D (441,000 and 2×2,880,000 samples) and 2-D (3×512², 2048²), with the method the
model picks and the one that measured faster (the constants in engine/convolve.py come from here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.ndimage
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Results, add_results_option, best_time, best_times, have, report, save  # noqa: E402

from convcli.engine.convolve import convolve, plan  # noqa: E402


def gaussian(size: int, sigma: float) -> np.ndarray:
    g = scipy.signal.windows.gaussian(size, sigma)
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def time_once(fn) -> float:
    """One timed call, for references too slow to repeat (scipy.ndimage on big kernels)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def image_cases(as_json: bool, skip_slow: bool, results: Results) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((3, 2160, 3840), dtype=np.float32)
    interleaved = np.ascontiguousarray(image.transpose(1, 2, 0))  # OpenCV's H×W×3
    kernels = {
        "3x3 sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32),
        "5x5 gaussian": gaussian(5, 1.0),
        "7x7 random": rng.standard_normal((7, 7)).astype(np.float32),
        "15x15 gaussian": gaussian(15, 2.5),
        "31x31 gaussian": gaussian(31, 5.0),
    }
    cv2 = None
    if have("cv2"):
        import cv2
    for name, kernel in kernels.items():
        how = plan(image.shape, kernel)
        ours_result = convolve(image, kernel, boundary="edge")
        contenders = {"ours": lambda k=kernel: convolve(image, k, boundary="edge")}
        if cv2 is not None:
            flipped = np.ascontiguousarray(kernel[::-1, ::-1])  # filter2D correlates

            def run_cv2(k=flipped):
                return cv2.filter2D(interleaved, -1, k, borderType=cv2.BORDER_REPLICATE)

            error = np.abs(run_cv2().transpose(2, 0, 1) - ours_result).max()
            assert error < 1e-4 * np.abs(kernel).sum(), f"{name}: convcli and OpenCV differ by {error}"
            contenders["cv2.filter2D"] = run_cv2
        times = best_times(contenders)
        ours = times.pop("ours")
        others = times

        def run_ndimage(k=kernel):
            return scipy.ndimage.convolve(image, k[None], mode="nearest")

        if kernel.shape[0] <= 7:
            others["scipy.ndimage"] = best_time(run_ndimage, repeat=2)
        elif not skip_slow:
            others["scipy.ndimage"] = time_once(run_ndimage)
        report(f"4K RGB edge {name} [{how.method}]", ours, others, as_json=as_json, results=results)


def audio_cases(as_json: bool, results: Results) -> None:
    rng = np.random.default_rng(1)
    rate = 48_000
    audio = rng.standard_normal((2, 60 * rate)).astype(np.float32)
    decay = np.exp(-np.arange(2 * rate) / (0.4 * rate))
    filters = {
        "31-tap FIR": scipy.signal.firwin(31, 0.2).astype(np.float32),
        "255-tap FIR": scipy.signal.firwin(255, 0.05).astype(np.float32),
        "96000-tap IR": (rng.standard_normal(2 * rate) * decay * 0.01).astype(np.float32),
    }
    for name, taps in filters.items():
        how = plan(audio.shape, taps)
        ours_result = convolve(audio, taps)
        reference = scipy.signal.oaconvolve(audio, taps[None], mode="same", axes=-1)
        error = np.abs(reference - ours_result).max()
        assert error < 1e-4 * max(1.0, np.abs(reference).max()), f"{name}: results differ by {error}"
        references = {"oaconvolve": scipy.signal.oaconvolve, "fftconvolve": scipy.signal.fftconvolve}
        others = best_times({
            "ours": lambda t=taps: convolve(audio, t),
            **{label: lambda t=taps, f=function: f(audio, t[None], mode="same", axes=-1)
               for label, function in references.items()},
        }, rounds=5)
        ours = others.pop("ours")
        others["scipy.signal best"] = min(others.values())
        report(f"60 s stereo 48 kHz {name} [{how.method}]", ours, others, as_json=as_json, results=results)


FIRST_CALL = """
import time, numpy as np
start = time.perf_counter()
from convcli.engine.convolve import convolve
for x, k in [(np.ones((3, 64, 64), np.float32), np.ones((3, 3))),
             (np.ones((3, 64, 64), np.float32), np.ones((5, 5))),
             (np.ones((2, 4096), np.float32), np.ones(31))]:
    for method in ("direct", "separable") if k.ndim == 2 and k.shape[0] == 5 else ("direct",):
        convolve(x, k, boundary="edge", method=method)
print(time.perf_counter() - start)
"""


def cache_case(as_json: bool, results: Results) -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}

        def first_call() -> float:
            done = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True,
                                  check=True)
            return float(done.stdout.strip())

        compile_time = first_call()
        cached_time = first_call()
    results.add("first call: compile vs second process loading the cache",
                compile_over_cached=compile_time / cached_time, compile_s=compile_time, cached_s=cached_time)
    if as_json:
        print(json.dumps({"case": "first call", "compile_over_cached": compile_time / cached_time,
                          "compile_s": compile_time, "cached_s": cached_time}))
    else:
        print(f"{'first call: compile vs second process loading the cache':<48} cache load "
              f"{compile_time / cached_time:6.1f}x faster ({compile_time:.1f} s -> {cached_time:.2f} s)")


CROSSOVER_CASES = [
    *(((1, 441_000), (taps,)) for taps in (31, 101, 201, 401, 801, 1601)),
    *(((2, 2_880_000), (taps,)) for taps in (101, 401, 1601)),
    *(((3, 512, 512), (k, k)) for k in (5, 9, 15, 21)),
    *(((1, 2048, 2048), (k, k)) for k in (5, 9, 15, 31)),
]


def crossover_cases(as_json: bool, results: Results) -> None:
    rng = np.random.default_rng(0)
    for x_shape, k_shape in CROSSOVER_CASES:
        x = rng.standard_normal(x_shape).astype(np.float32)
        kernel = rng.standard_normal(k_shape).astype(np.float32)  # random: no separable shortcut
        methods = {m: (lambda m=m, x=x, k=kernel: convolve(x, k, method=m)) for m in ("direct", "fft")}
        times = best_times(methods, rounds=5)
        picked = plan(x.shape, kernel).method
        faster = min(times, key=times.get)
        line = {"case": f"{x_shape} * {k_shape}", "direct_ms": times["direct"] * 1e3,
                "fft_ms": times["fft"] * 1e3, "auto": picked, "faster": faster}
        results.add(**line)
        if as_json:
            print(json.dumps(line))
        else:
            print(f"{line['case']:<30} direct {line['direct_ms']:8.1f} ms  fft {line['fft_ms']:8.1f} ms  "
                  f"auto picks {picked:<6} {'(right)' if picked == faster else '(the other is faster)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    parser.add_argument("--skip-slow", action="store_true", help="skip scipy.ndimage on the big kernels")
    parser.add_argument("--only", choices=["image", "audio", "cache", "crossover"], help="run one group")
    add_results_option(parser)
    args = parser.parse_args()
    results = Results("bench_convolve", note="best of 9 rounds (audio: 5), contenders alternating")
    if args.only in (None, "image"):
        image_cases(args.json, args.skip_slow, results)
    if args.only in (None, "audio"):
        audio_cases(args.json, results)
    if args.only in (None, "cache"):
        cache_case(args.json, results)
    if args.only == "crossover":
        crossover_cases(args.json, results)
    save(results, args)


if __name__ == "__main__":
    main()
