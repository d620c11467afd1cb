"""Make the small media the README commands and tests use (deterministic; run from anywhere).

    python samples/make_media.py      # writes samples/photo.png, samples/speech.wav, samples/signal.npy

photo.png   256x256 RGB: a gradient sky, hard-edged shapes (disc, square, stripes) and a
            band of fine noise texture, so blur, sharpen and edge kernels all show something.
speech.wav  2 s mono 16-bit 16 kHz: a speech-like voice (glottal pulse train at a gliding pitch
            through formant resonances, in syllables with pauses) plus a little breath noise.
signal.npy  1-D float32: a slow sine plus a fast one plus noise (for moving-average / lowpass).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def photo(size: int = 256, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.3 + 0.4 * y, 0.5 + 0.3 * y, 0.9 - 0.2 * y], axis=-1)
    disc = (x - 0.3) ** 2 + (y - 0.35) ** 2 < 0.18**2
    image[disc] = (0.95, 0.8, 0.1)
    square = (np.abs(x - 0.72) < 0.14) & (np.abs(y - 0.38) < 0.14)
    image[square] = (0.8, 0.1, 0.15)
    stripes = (y > 0.62) & (y < 0.78)
    image[stripes] = np.where((np.floor(x[stripes] * 24) % 2)[:, None] == 0, 0.1, 0.9)
    texture = y > 0.8
    image[texture] = 0.45 + 0.25 * rng.random((int(texture.sum()), 3))
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def speech(rate: int = 16000, seconds: float = 2.0, seed: int = 1) -> np.ndarray:
    """(L,) float in [-1, 1]: source-filter vowels in syllables."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)  # gliding fundamental, Hz
    phase = np.cumsum(pitch / rate)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
    voice = np.zeros(n)
    vowels = [(700, 1200, 2600), (300, 2300, 3000), (500, 900, 2400), (400, 2000, 2550)]
    syllable = n // 8
    for index in range(8):
        start, stop = index * syllable, index * syllable + int(syllable * 0.75)  # then a pause
        part = pulses[start:stop]
        for formant in vowels[index % len(vowels)]:
            radius = np.exp(-np.pi * 80 / rate)
            a = [1, -2 * radius * np.cos(2 * np.pi * formant / rate), radius**2]
            voice[start:stop] += lfilter([1 - radius], a, part)
        voice[start:stop] *= np.hanning(stop - start)
    voice += 0.01 * rng.standard_normal(n)
    return 0.8 * voice / np.max(np.abs(voice))


def signal(n: int = 1000, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    return (
        np.sin(2 * np.pi * 3 * t) + 0.3 * np.sin(2 * np.pi * 60 * t) + 0.1 * rng.standard_normal(n)
    ).astype(np.float32)


def main(folder: Path = HERE) -> None:
    import soundfile
    from PIL import Image

    Image.fromarray(photo()).save(folder / "photo.png")
    soundfile.write(folder / "speech.wav", speech(), 16000, subtype="PCM_16")
    np.save(folder / "signal.npy", signal())
    for name in ("photo.png", "speech.wav", "signal.npy"):
        print(folder / name)


if __name__ == "__main__":
    main()
