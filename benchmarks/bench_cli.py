"""End-to-end benchmarks of `convcli convolve`: whole processes, against the tools a user would
run instead. Every result is a ratio (reference time / convcli time; > 1 means convcli is faster).

    python benchmarks/bench_cli.py [--repeat 3] [--json] [--results DIR | --no-results]

Cases (inputs are generated in a temporary folder):
  4k-png-sharpen     one 3840x2160 RGB PNG, 3x3 sharpen   vs ImageMagick `convert -morphology Convolve`
  batch-40x512-j2    40 RGB PNGs of 512x512, sharpen, -j 2 vs `mogrify -morphology Convolve`
  wav-60s-ir-2s      60 s stereo 48 kHz wav, 2 s stereo IR  vs `ffmpeg -filter_complex afir`
Tools come from Debian (apt-get install imagemagick ffmpeg); a missing tool skips its case.
/usr/local/bin/convert may be a stand-in, so ImageMagick is taken from /usr/bin only.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Results, add_results_option, best_time, report, save  # noqa: E402

CONVCLI = [sys.executable, "-m", "convcli"]
SHARPEN_IM = "3x3: 0,-1,0 -1,5,-1 0,-1,0"


def imagemagick(tool: str) -> str | None:
    for candidate in (f"/usr/bin/{tool}", "/usr/bin/magick"):
        if Path(candidate).exists():
            return candidate
    return None


def run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth picture with edges and fine texture (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(11 * x * y)], axis=-1)
    blocks = (np.floor(x * 12) + np.floor(y * 9)) % 2
    image = 0.5 + 0.3 * base + 0.15 * blocks[..., None] + 0.04 * rng.standard_normal((height, width, 3))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def case_4k(folder: Path, repeat: int, as_json: bool, results: Results) -> None:
    from PIL import Image

    convert = imagemagick("convert")
    if convert is None:
        print("4k-png-sharpen: skipped (no ImageMagick in /usr/bin)")
        return
    source = folder / "4k.png"
    Image.fromarray(photo(2160, 3840, 0)).save(source)
    ours = best_time(
        lambda: run(
            [*CONVCLI, "convolve", str(source), "-k", "sharpen", "-o", str(folder / "o.png"), "--force", "-q"]
        ),
        repeat=repeat,
        min_seconds=0,
    )
    magick = best_time(
        lambda: run([convert, str(source), "-morphology", "Convolve", SHARPEN_IM, str(folder / "im.png")]),
        repeat=repeat,
        min_seconds=0,
    )
    report("4k-png-sharpen (3840x2160 RGB, 3x3)", ours, {"imagemagick convert": magick}, as_json=as_json,
           results=results)


def case_batch(folder: Path, repeat: int, as_json: bool, results: Results) -> None:
    from PIL import Image

    mogrify = imagemagick("mogrify")
    if mogrify is None:
        print("batch-40x512-j2: skipped (no mogrify in /usr/bin)")
        return
    inputs = folder / "batch"
    inputs.mkdir()
    for index in range(40):
        Image.fromarray(photo(512, 512, index)).save(inputs / f"img{index:02d}.png")
    ours_out, theirs_out = folder / "batch_ours", folder / "batch_im"
    ours_out.mkdir()
    theirs_out.mkdir()
    files = sorted(str(p) for p in inputs.iterdir())
    ours = best_time(
        lambda: run(
            [
                *CONVCLI,
                "convolve",
                str(inputs),
                "-k",
                "sharpen",
                "-o",
                str(ours_out),
                "-j",
                "2",
                "--force",
                "-q",
            ]
        ),
        repeat=repeat,
        min_seconds=0,
    )
    theirs = best_time(
        lambda: run([mogrify, "-path", str(theirs_out), "-morphology", "Convolve", SHARPEN_IM, *files]),
        repeat=repeat,
        min_seconds=0,
    )
    report("batch-40x512-j2 (40 PNGs, sharpen, -j 2)", ours, {"mogrify": theirs}, as_json=as_json,
           results=results)


def music_and_ir(folder: Path) -> tuple[str, str]:
    """A 60 s stereo 48 kHz 16-bit wav and a 2 s stereo float impulse response (decaying noise)."""
    import soundfile

    rate = 48000
    rng = np.random.default_rng(1)
    t = np.arange(60 * rate) / rate
    music = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))[:, None]
    music = music + 0.05 * rng.standard_normal((t.size, 2))
    soundfile.write(folder / "music.wav", music, rate, subtype="PCM_16")
    decay = np.exp(-np.arange(2 * rate) / (0.3 * rate))[:, None]
    soundfile.write(
        folder / "ir.wav", 0.05 * rng.standard_normal((2 * rate, 2)) * decay, rate, subtype="FLOAT"
    )
    return str(folder / "music.wav"), str(folder / "ir.wav")


def afir(ffmpeg: str, wav: str, ir: str, out: Path) -> list[str]:
    """ffmpeg's convolution reverb: the wav through the impulse response."""
    return [ffmpeg, "-y", "-loglevel", "error", "-i", wav, "-i", ir, "-filter_complex", "afir", str(out)]


def case_audio(folder: Path, repeat: int, as_json: bool, results: Results) -> None:
    ffmpeg = shutil.which("ffmpeg", path="/usr/bin")
    if ffmpeg is None:
        print("wav-60s-ir-2s: skipped (no ffmpeg in /usr/bin)")
        return
    wav, ir = music_and_ir(folder)
    ours = best_time(
        lambda: run([*CONVCLI, "convolve", wav, "-k", ir, "-o", str(folder / "o.wav"), "--force", "-q"]),
        repeat=repeat,
        min_seconds=0,
    )
    theirs = best_time(lambda: run(afir(ffmpeg, wav, ir, folder / "ff.wav")), repeat=repeat, min_seconds=0)
    report("wav-60s-ir-2s (stereo 48 kHz, 2 s IR)", ours, {"ffmpeg afir": theirs}, as_json=as_json,
           results=results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool (best is kept)")
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    add_results_option(parser)
    args = parser.parse_args()
    results = Results("bench_cli", note=f"whole processes, best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in (case_4k, case_batch, case_audio):
            case(folder, args.repeat, args.json, results)
    save(results, args)


if __name__ == "__main__":
    main()
