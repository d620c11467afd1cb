"""Per-call latency: whole `convcli` processes, one call per file, against the tools a user runs
the same way (ImageMagick, SoX, ffmpeg), with the warm worker and without it (CONVCLI_SERVER=0).
Every result is a ratio (their time / ours; > 1: convcli faster), calls alternating round by
round so a slow phase of the machine slows every contender alike.

    python benchmarks/bench_warm.py [--rounds 7] [--json] [--results DIR | --no-results]

Cases (inputs are generated in a temporary folder; a missing tool skips its case):
  png512-sharpen   512x512 RGB PNG, 3x3 sharpen    vs `convert -morphology Convolve`
  wav10s-lowpass   10 s mono 44.1 kHz wav, lowpass  vs `sox IN OUT sinc -2000`
  wav60s-ir2s      60 s stereo 48 kHz wav, 2 s IR   vs `ffmpeg -filter_complex afir`
  loop40           a shell loop over 40 PNGs, one call per file, vs the same loop with `convert`
  help/shapes/params                               vs `python -c pass`
  cold             the 512² sharpen with the worker off: wall time and peak memory
  idle             the worker's CPU time over 10 idle seconds, and its memory
The worker is started by the first warm call; each timed warm call is served by it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import afir, music_and_ir, photo  # noqa: E402
from common import Results, add_results_option, save  # noqa: E402

CONVCLI = str(Path(sys.executable).with_name("convcli"))
SHARPEN_IM = "3x3: 0,-1,0 -1,5,-1 0,-1,0"
TIME = "/usr/bin/time"
MEMORY = os.path.join(tempfile.gettempdir(), f"bench-warm-{os.getpid()}.mem")
WARM = {**os.environ, "CONVCLI_SERVER": "1"}
COLD = {**os.environ, "CONVCLI_SERVER": "0"}


def timed(command: list[str] | str, env: dict | None = None) -> tuple[float, int]:
    """Wall seconds of one run, and its peak resident memory in KiB (from /usr/bin/time, which
    forks small: the rusage of a child forked from this process counts this process's pages)."""
    shell = isinstance(command, str)
    measured = command if shell or not Path(TIME).exists() else [TIME, "-f", "%M", "-o", MEMORY, *command]
    start = time.perf_counter()
    status = subprocess.run(measured, env=env, shell=shell, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{command} failed with status {status}")
    peak = int(Path(MEMORY).read_text().split()[-1]) if measured is not command else 0
    return elapsed, peak


def alternate(commands: dict[str, tuple], rounds: int) -> dict[str, tuple[float, int]]:
    """Best wall time (and its peak memory) of each command, the commands alternating each round."""
    for command, env in commands.values():
        timed(command, env)  # warm-up: file cache, the worker's start
    best = {name: (float("inf"), 0) for name in commands}
    for _ in range(rounds):
        for name, (command, env) in commands.items():
            result = timed(command, env)
            best[name] = min(best[name], result)
    return best


def wait_for_worker(seconds: float = 120.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = subprocess.run(
            [CONVCLI, "server", "status", "--json"], capture_output=True, text=True, env=WARM
        )
        status = json.loads(out.stdout)
        if status.get("worker"):
            return status["worker"]
        time.sleep(0.5)
    raise RuntimeError("the worker did not start")


RESULTS = Results("bench_warm", note="whole processes, alternating round by round")


def show(case: str, ours: float, others: dict[str, float], note: str = "", as_json: bool = False,
         **figures) -> None:
    ratios = {name: theirs / ours for name, theirs in others.items()}
    RESULTS.add(case, speedup_vs=ratios, **figures)
    if as_json:
        print(json.dumps({"case": case, "speedup_vs": ratios, "note": note}))
        return
    parts = ", ".join(
        f"{name} {ratio:5.2f}x (ours {1 / ratio:4.2f}x theirs)" for name, ratio in ratios.items()
    )
    print(f"{case:<22} convcli speed-up vs {parts} {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    add_results_option(parser)
    args = parser.parse_args()
    RESULTS.note += f", best of {args.rounds} rounds"
    with tempfile.TemporaryDirectory() as tmp:
        run_cases(Path(tmp), args.rounds, args.json)
    save(RESULTS, args)


def run_cases(folder: Path, rounds: int, as_json: bool) -> None:
    import soundfile
    from PIL import Image

    png = folder / "photo512.png"
    Image.fromarray(photo(512, 512, 0)).save(png)
    rng = np.random.default_rng(0)
    t = np.arange(10 * 44100) / 44100
    soundfile.write(
        folder / "clip10s.wav",
        0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size),
        44100,
        subtype="PCM_16",
    )
    out = folder / "out"
    out.mkdir()
    subprocess.run([CONVCLI, "--version"], env=WARM, capture_output=True)  # starts the worker
    worker = wait_for_worker()
    ours_png = [CONVCLI, "convolve", str(png), "-k", "sharpen", "-o", str(out / "a.png"), "--force", "-q"]
    convert, sox, ffmpeg = (shutil.which(tool, path="/usr/bin") for tool in ("convert", "sox", "ffmpeg"))
    if convert:
        best = alternate(
            {
                "warm": (ours_png, WARM),
                "cold": (ours_png, COLD),
                "im": ([convert, str(png), "-morphology", "Convolve", SHARPEN_IM, str(out / "im.png")], None),
            },
            rounds,
        )
        show("png512-sharpen", best["warm"][0], {"ImageMagick": best["im"][0]}, as_json=as_json)
        show(
            "png512-sharpen cold",
            best["cold"][0],
            {"ImageMagick": best["im"][0]},
            f"[worker off: {best['cold'][0]:.3f} s wall ({best['cold'][0] / 0.5:.2f}x the 0.5 s goal), "
            f"peak {best['cold'][1] / 1024:.0f} MiB; ImageMagick {best['im'][1] / 1024:.0f} MiB]",
            as_json,
            wall_s=best["cold"][0],
            peak_mib=best["cold"][1] / 1024,
            imagemagick_peak_mib=best["im"][1] / 1024,
        )
    if sox:
        wav = str(folder / "clip10s.wav")
        best = alternate(
            {
                "warm": (
                    [
                        CONVCLI,
                        "convolve",
                        wav,
                        "-k",
                        "lowpass:cutoff=2000",
                        "-o",
                        str(out / "l.wav"),
                        "--force",
                        "-q",
                    ],
                    WARM,
                ),
                "sox": ([sox, wav, str(out / "sox.wav"), "sinc", "-2000"], None),
            },
            rounds,
        )
        show("wav10s-lowpass", best["warm"][0], {"SoX sinc": best["sox"][0]}, as_json=as_json)
    if ffmpeg:
        case_ir(folder, out, ffmpeg, rounds, as_json)
    if convert:
        case_loop(folder, convert, max(2, rounds // 3), as_json)
    case_short(rounds, as_json)
    case_idle(worker, as_json)


def case_ir(folder: Path, out: Path, ffmpeg: str, rounds: int, as_json: bool) -> None:
    wav, ir = music_and_ir(folder)
    best = alternate(
        {
            "warm": ([CONVCLI, "convolve", wav, "-k", ir, "-o", str(out / "r.wav"), "--force", "-q"], WARM),
            "ffmpeg": (afir(ffmpeg, wav, ir, out / "ff.wav"), None),
        },
        rounds,
    )
    show("wav60s-ir2s", best["warm"][0], {"ffmpeg afir": best["ffmpeg"][0]}, as_json=as_json)


def case_loop(folder: Path, convert: str, rounds: int, as_json: bool) -> None:
    from PIL import Image

    files = folder / "many"
    files.mkdir()
    for index in range(40):
        Image.fromarray(photo(512, 512, index)).save(files / f"img{index:02d}.png")
    (folder / "loop_ours").mkdir()
    (folder / "loop_im").mkdir()
    ours = (
        f'for f in {files}/*.png; do {CONVCLI} convolve "$f" -k sharpen -o {folder}/loop_ours/ --force -q; '
        "done"
    )
    theirs = (
        f'for f in {files}/*.png; do {convert} "$f" -morphology Convolve "{SHARPEN_IM}" '
        f'{folder}/loop_im/$(basename "$f"); done'
    )
    best = alternate({"warm": (ours, WARM), "im": (theirs, None)}, rounds)
    show("loop40", best["warm"][0], {"ImageMagick loop": best["im"][0]}, as_json=as_json)


def case_short(rounds: int, as_json: bool) -> None:
    commands = {
        "help": ([CONVCLI, "--help"], WARM),
        "shapes": (
            [CONVCLI, "shapes", "--size", "224", "--kernel", "11", "--stride", "4", "--padding", "2"],
            WARM,
        ),
        "params": ([CONVCLI, "params", "--model", "alexnet"], WARM),
        "pass": ([sys.executable, "-c", "pass"], None),
    }
    best = alternate(commands, rounds)
    for name in ("help", "shapes", "params"):
        show(name, best[name][0], {"python -c pass": best["pass"][0]}, as_json=as_json)


def case_idle(worker: dict, as_json: bool) -> None:
    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu_seconds(worker["pid"])
    time.sleep(10)
    used = cpu_seconds(worker["pid"]) - before
    status = json.loads(
        subprocess.run(
            [CONVCLI, "server", "status", "--json"], capture_output=True, text=True, env=WARM
        ).stdout
    )["worker"]
    memory = status["memory"]
    RESULTS.add("idle worker", cpu_seconds_in_10_s=used, memory=memory)
    text = (
        f"idle worker: {used:.2f} CPU seconds in 10 s; {memory.get('rss', 0) / 2**20:.0f} MiB resident, "
        f"{memory.get('pss', 0) / 2**20:.0f} MiB proportional"
    )
    print(json.dumps({"case": "idle", "cpu_seconds": used, "memory": memory}) if as_json else text)


if __name__ == "__main__":
    main()
