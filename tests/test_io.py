"""convcli.io: decoding/encoding round trips, range policies, atomic writes."""

import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from convcli.errors import InputError, OutputExistsError, UsageError
from convcli.io import Media, read_media, write_media
from convcli.io.files import atomic_output, kind_of, sniff_extension
from convcli.io.ranges import FLAT_ULPS, fit_range

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_lossless_image_round_trip(tmp_path, extension, mode):
    pixels = RNG.integers(0, 256, size=(9, 13, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    image.save(tmp_path / f"in{extension}")
    media = read_media(tmp_path / f"in{extension}", extension)
    assert media.data.shape == ((1 if mode == "L" else 3), 9, 13) and media.data.dtype == np.float32
    expected = np.asarray(image, dtype=np.float32) / 255
    assert np.allclose(np.moveaxis(media.data, 0, -1).squeeze(), expected)
    write_media(tmp_path / f"out{extension}", media)
    again = Image.open(tmp_path / f"out{extension}")
    assert again.mode == mode and np.array_equal(np.asarray(again), np.asarray(image))


@pytest.mark.parametrize("extension", [".jpg", ".webp"])
def test_lossy_formats_read_and_write(tmp_path, extension):
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / f"in{extension}")
    media = read_media(tmp_path / f"in{extension}", extension)
    write_media(tmp_path / f"out{extension}", media)
    assert abs(np.asarray(Image.open(tmp_path / f"out{extension}"), dtype=float).mean() - 200) < 3


def test_alpha_is_returned_apart_and_written_back(tmp_path):
    rgba = RNG.integers(0, 256, size=(6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    media = read_media(tmp_path / "a.png", ".png")
    assert media.data.shape == (3, 6, 7) and media.alpha.shape == (6, 7)
    write_media(tmp_path / "b.png", media)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgba)


def test_sixteen_bit_gray_stays_sixteen_bit(tmp_path):
    pixels = RNG.integers(0, 65536, size=(5, 6), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    media = read_media(tmp_path / "g.png", ".png")
    assert media.image.bits == 16
    write_media(tmp_path / "h.png", media)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "h.png")), pixels)


@pytest.mark.parametrize(
    ("extension", "subtype"), [(".wav", "PCM_24"), (".flac", "PCM_16"), (".wav", "FLOAT")]
)
def test_audio_keeps_rate_and_subtype(tmp_path, extension, subtype):
    samples = RNG.uniform(-0.5, 0.5, size=(300, 3))
    soundfile.write(tmp_path / f"in{extension}", samples, 22050, subtype=subtype)
    media = read_media(tmp_path / f"in{extension}", extension)
    assert media.data.shape == (3, 300) and media.sample_rate == 22050
    write_media(tmp_path / f"out{extension}", media)
    info = soundfile.info(tmp_path / f"out{extension}")
    assert (info.samplerate, info.subtype, info.channels) == (22050, subtype, 3)
    back, _ = soundfile.read(tmp_path / f"out{extension}")
    assert np.allclose(back, samples, atol=1e-4)


def test_audio_clip_counts_and_normalize_peaks(tmp_path):
    data = np.array([[0.5, 1.5, -2.0, 0.25]], dtype=np.float32)
    media = Media("audio", data)
    assert write_media(tmp_path / "c.wav", media, policy="clip") == 2
    assert np.allclose(soundfile.read(tmp_path / "c.wav")[0], [0.5, 1.0, -1.0, 0.25], atol=1e-4)
    assert write_media(tmp_path / "n.wav", media, policy="normalize") == 0
    assert np.allclose(soundfile.read(tmp_path / "n.wav")[0], data[0] / 2, atol=1e-4)


def test_ogg_vorbis_is_read(tmp_path):
    soundfile.write(tmp_path / "a.ogg", np.sin(np.arange(4000) / 10) * 0.3, 16000)
    media = read_media(tmp_path / "a.ogg", ".ogg")
    assert media.data.shape == (1, 4000) and media.audio.subtype == "VORBIS"


@pytest.mark.parametrize("extension", [".npy", ".npz", ".csv", ".txt"])
def test_array_round_trip(tmp_path, extension):
    array = RNG.standard_normal((4, 5))
    write_media(tmp_path / f"a{extension}", Media("array", array))
    assert np.allclose(read_media(tmp_path / f"a{extension}", extension).data, array, rtol=1e-7)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickle"):
        read_media(tmp_path / "o.npy", ".npy")


@pytest.mark.parametrize("blob", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_corrupt_image_is_one_clear_error(tmp_path, blob):
    (tmp_path / "bad.png").write_bytes(blob)
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        read_media(tmp_path / "bad.png", ".png")


def test_corrupt_audio_is_one_clear_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunkjunk")
    with pytest.raises(InputError, match="bad.wav: not a readable audio file"):
        read_media(tmp_path / "bad.wav", ".wav")


def test_extension_dispatch_and_sniffing():
    assert [kind_of(e) for e in (".PNG", ".flac", ".csv")] == ["image", "audio", "array"]
    with pytest.raises(UsageError, match="'.xyz'"):
        kind_of(".xyz")
    assert sniff_extension(b"RIFF\0\0\0\0WAVEfmt ") == ".wav"
    assert sniff_extension(b"\x93NUMPY\x01\x00") == ".npy"


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError), atomic_output(target) as temp:
        temp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_refuses_existing_without_force(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OutputExistsError), atomic_output(target) as temp:
        temp.write_text("new")
    assert target.read_text() == "old"
    with atomic_output(target, force=True) as temp:
        temp.write_text("new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


values = hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-3, 3))


@given(values)
def test_clip_counts_match_an_independent_count(x):
    out, clipped = fit_range(x, "clip", 0.0, 1.0)
    assert clipped == sum(1 for v in x if v < 0 or v > 1)
    assert np.array_equal(out, np.minimum(np.maximum(x, 0), 1))


@given(values)
def test_abs_offset_normalize_stay_in_range(x):
    for policy in ("abs", "offset", "normalize"):
        out, _ = fit_range(x, policy, 0.0, 1.0)
        assert out.min() >= 0 and out.max() <= 1 + 1e-12
    assert np.allclose(fit_range(x, "abs", 0.0, 1.0)[0], np.clip(np.abs(x), 0, 1))
    assert np.allclose(fit_range(x, "offset", 0.0, 1.0)[0], np.clip(x + 0.5, 0, 1))
    # a spread within float32 rounding of the data's scale (at least the output range's) is flat
    if np.ptp(x) > FLAT_ULPS * np.finfo(np.float32).eps * max(np.abs(x).max(), 1.0):
        normalized = fit_range(x, "normalize", 0.0, 1.0)[0]
        assert np.isclose(normalized.min(), 0) and np.isclose(normalized.max(), 1)


SPECIALS = [np.nan, np.inf, -np.inf, 1.0, -1.0, 1.5, -1.5, 0.99999, -0.5 / 32768, 0.4 / 32768, -0.0, 2**-40]


@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 300)),
               elements=st.floats(-1.25, 1.25, width=32) | st.sampled_from(SPECIALS)),
    st.sampled_from([".wav", ".flac"]),
)
def test_sixteen_bit_pcm_is_converted_as_libsndfile_converts_it(tmp_path_factory, samples, extension):
    """convcli converts 16-bit frames itself (5x faster): what libsndfile reads, and what it writes
    up to one step for values within a hair of a step."""
    from convcli.io.audio import AudioWriter, read_audio, read_audio_blocks

    if extension == ".flac":
        samples = np.nan_to_num(samples)  # libsndfile's FLAC encoder cannot take NaN
    folder = tmp_path_factory.mktemp("pcm16")
    ours, theirs = folder / f"ours{extension}", folder / f"theirs{extension}"
    with AudioWriter(ours, sample_rate=8000, channels=samples.shape[0], info=None, policy="clip") as writer:
        assert writer.subtype == "PCM_16"
        writer.write(samples)
    soundfile.write(theirs, samples.T, 8000, subtype="PCM_16")
    ours_frames = soundfile.read(ours, dtype="int16", always_2d=True)[0].astype(int)
    theirs_frames = soundfile.read(theirs, dtype="int16", always_2d=True)[0].astype(int)
    # libsndfile's float arithmetic rounds up a value within ~3e-5 of the next step (61.999996 -> 62,
    # -3e-6 -> 0); convcli's floor does not: one step apart there, equal everywhere else
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = (samples.T * np.float32(32768)).astype(np.float64)
        near_step = np.abs(scaled - np.round(scaled)) < 1e-4
    differ = ours_frames != theirs_frames
    assert np.all(np.abs(ours_frames - theirs_frames)[differ] == 1) and np.all(near_step[differ])
    data, _ = read_audio(theirs)
    assert data.dtype == np.float32 and data.flags.c_contiguous
    assert np.array_equal(data, soundfile.read(theirs, dtype="float32", always_2d=True)[0].T)
    assert np.array_equal(np.concatenate(list(read_audio_blocks(theirs, 7)), axis=1), data)


@given(
    st.sampled_from([np.float32, np.float64]).flatmap(
        lambda dtype: hnp.arrays(dtype, st.tuples(st.integers(1, 3), st.integers(0, 300)),
                                 elements=st.floats(-1.25, 1.25, width=32) | st.sampled_from(SPECIALS))
    ),
    st.booleans(),
)
def test_the_one_pass_pcm16_conversion_equals_numpys_clip_and_convert(samples, strided):
    """The writer's one pass (count, saturate, convert, interleave) gives the frames and the clip
    count of the numpy steps it replaced: fit_range's clip, then floor(32768·x) in float32 bounded
    to the 16-bit range with NaN at the lowest step."""
    from convcli.io.pcm16 import pcm16_frames

    if strided:
        samples = np.repeat(samples, 2, axis=1)[:, ::2]
    clipped_block, clipped = fit_range(samples, "clip", -1.0, 1.0)
    with np.errstate(invalid="ignore"):
        scaled = np.floor(np.multiply(clipped_block, np.float32(32768), dtype=np.float32))
        expected = np.minimum(np.fmax(scaled, -32768), 32767).T.astype(np.int16)
    frames, outside = pcm16_frames(samples)
    assert frames.flags.c_contiguous and frames.dtype == np.int16
    assert np.array_equal(frames, expected) and outside == clipped


def test_a_replaced_output_is_let_go_with_the_process_a_few_at_a_time(tmp_path):
    """An output written over an old file holds the old file open, so that freeing its pages
    comes after a warm call has answered; only the last few are held."""
    import os

    from convcli.io import files

    before = list(files._held)
    targets = [tmp_path / f"out{i}.npy" for i in range(files.HELD_REPLACED + 3)]
    for target in targets:
        target.write_bytes(b"old")
        with atomic_output(target, force=True) as temp:
            temp.write_bytes(b"new")
    assert all(target.read_bytes() == b"new" for target in targets)
    held = [fd for fd in files._held if fd not in before]
    assert len(files._held) <= files.HELD_REPLACED and held
    assert all(os.read(fd, 8) == b"old" for fd in held)  # the replaced files, not the new ones
