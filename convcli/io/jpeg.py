"""JPEG integrity: the entropy-coded data walked as libjpeg decodes it, so that what libjpeg only
warns about is refused (import this module lazily; its walker is compiled by Numba).

libjpeg decodes a damaged stream with warnings ("Corrupt JPEG data: 31 extraneous bytes before
marker 0xd9", "premature end of data segment", "bad Huffman code", "Premature end of JPEG file")
and fills what it could not decode with gray; Pillow and imagecodecs drop those warnings, so a
damaged photo would be filtered and written as if it were whole. JPEG holds no checksum: what can
be checked is the syntax of the Huffman-coded scans, which a damaged byte almost always breaks (a
code no table has, a block longer than 64 coefficients, a scan that ends before or after its
last block, restart markers out of order). :func:`check_jpeg` walks every scan of a Huffman-coded
JPEG (baseline, extended and progressive) without dequantizing or transforming anything and
raises :class:`ValueError` naming the first damage, in libjpeg's words. Arithmetic-coded and
lossless JPEGs (rare) have their marker structure checked only.
"""

from __future__ import annotations

import numpy as np

from convcli.jit import njit

_SOI, _EOI, _SOS, _DHT, _DRI = 0xD8, 0xD9, 0xDA, 0xC4, 0xDD
_HUFFMAN_FRAMES = {0xC0: False, 0xC1: False, 0xC2: True}  # SOF type -> progressive
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, arithmetic
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
_MAX_COMPONENTS = 10  # libjpeg's limit (each holds a mask per block while a progressive JPEG is walked)

# what the walker finds (its first return value), in libjpeg's words
_OK, _HIT_MARKER, _BAD_CODE, _END_OF_FILE, _EXTRANEOUS, _BAD_RESTART, _OVERFLOW = range(7)
_PROBLEMS = {
    _HIT_MARKER: "Corrupt JPEG data: premature end of data segment",
    _BAD_CODE: "Corrupt JPEG data: bad Huffman code",
    _END_OF_FILE: "Premature end of JPEG file",
    _BAD_RESTART: "Corrupt JPEG data: restart markers out of order",
    _OVERFLOW: "Corrupt JPEG data: a block of more than 64 coefficients",
}

_LOOKAHEAD = 9  # bits a Huffman code is looked up by at once (longer codes: the slow path)
_SLACK = 512  # zero bytes after a scan's data: a block's walk may read past it before it is checked


@njit(cache=True, nogil=True, inline="always")
def _peek(clean, bit):  # pragma: no cover - compiled
    """32 bits of the unstuffed data from bit ``bit`` on, as an unsigned integer."""
    byte = bit >> 3
    value = np.uint64(0)
    for i in range(5):
        value = (value << np.uint64(8)) | np.uint64(clean[byte + i])
    return (value >> np.uint64(8 - (bit & 7))) & np.uint64(0xFFFFFFFF)


@njit(cache=True, nogil=True, inline="always")
def _bits(clean, bit, count):  # pragma: no cover - compiled
    """(the next ``count`` bits, 0 to 16, as an integer; the bit after them)"""
    if count == 0:
        return 0, bit
    return np.int64(_peek(clean, bit) >> np.uint64(32 - count)), bit + count


@njit(cache=True, nogil=True, inline="always")
def _symbol(clean, bit, lookup, maxcode, valptr, mincode, values, table):  # pragma: no cover - compiled
    """(one Huffman-decoded symbol, ITU T.81 F.2.2.3, or -1 for a code the table does not have;
    the bit after it)"""
    window = _peek(clean, bit) >> np.uint64(16)  # 16 bits: the longest code
    entry = lookup[table, window >> np.uint64(16 - _LOOKAHEAD)]
    if entry >= 0:
        return entry & 255, bit + (entry >> 8)
    for length in range(_LOOKAHEAD + 1, 17):
        code = np.int64(window >> np.uint64(16 - length))
        if code <= maxcode[table, length]:
            return values[table, valptr[table, length] + code - mincode[table, length]], bit + length
    return -1, bit


@njit(cache=True, nogil=True)
def _block(clean, bit, tables, dc, ac, start, end, high, nonzero, index, eobrun):  # pragma: no cover
    """Walk one block's data in a scan of band [start, end] (successive approximation bit ``high``:
    0 for a first scan). ``index`` < 0 marks a sequential scan; else ``nonzero[index]`` holds the
    block's nonzero coefficients as bits (a progressive refinement scan reads one correction bit
    per nonzero one). Returns (problem, the bit after the block, the end-of-band run left)."""
    lookup, maxcode, valptr, mincode, values = tables
    if start == 0:  # a DC scan (sequential scans go on to the AC band below)
        if high == 0:
            size, bit = _symbol(clean, bit, lookup, maxcode, valptr, mincode, values, dc)
            if size < 0:
                return _BAD_CODE, bit, 0
            _v, bit = _bits(clean, bit, size)
        else:
            bit += 1
        if end == 0:
            return _OK, bit, eobrun
        start = 1
    if high == 0:
        if eobrun > 0:
            return _OK, bit, eobrun - 1
        k = start
        while k <= end:
            symbol, bit = _symbol(clean, bit, lookup, maxcode, valptr, mincode, values, ac)
            if symbol < 0:
                return _BAD_CODE, bit, 0
            run, size = symbol >> 4, symbol & 15
            if size:
                k += run
                if k > end:
                    return _OVERFLOW, bit, 0
                bit += size
                if index >= 0:
                    nonzero[index] |= np.uint64(1) << np.uint64(k)
                k += 1
            elif run == 15:
                k += 16
            elif index < 0 or run == 0:  # end of block
                return _OK, bit, 0
            else:  # a run of blocks, counted in `run` more bits, ends its band here (progressive EOBn)
                extra, bit = _bits(clean, bit, run)
                return _OK, bit, (1 << run) + extra - 1
        return _OK, bit, 0
    # an AC refinement scan (ITU T.81 G.1.2.3, as libjpeg's decode_mcu_AC_refine)
    mask = nonzero[index]
    k = start
    if eobrun == 0:
        while k <= end:
            symbol, bit = _symbol(clean, bit, lookup, maxcode, valptr, mincode, values, ac)
            if symbol < 0:
                return _BAD_CODE, bit, 0
            run, size = symbol >> 4, symbol & 15
            if size:
                if size != 1:
                    return _BAD_CODE, bit, 0
                bit += 1
            elif run != 15:
                extra, bit = _bits(clean, bit, run)
                eobrun = (1 << run) + extra
                break
            while k <= end:  # over nonzero coefficients (a correction bit each) and `run` zero ones
                if mask >> np.uint64(k) & np.uint64(1):
                    bit += 1
                else:
                    if run == 0:
                        break
                    run -= 1
                k += 1
            if size:
                if k > end:
                    return _OVERFLOW, bit, 0
                mask |= np.uint64(1) << np.uint64(k)
            k += 1
        nonzero[index] = mask
        if eobrun == 0:
            return _OK, bit, 0
    while k <= end:
        if mask >> np.uint64(k) & np.uint64(1):
            bit += 1
        k += 1
    return _OK, bit, eobrun - 1


@njit(cache=True, nogil=True)
def _unstuff(data, position, clean):  # pragma: no cover - compiled
    """Write into ``clean`` the entropy-coded data of the scan starting at ``position``, as bytes
    without stuffing (0xFF 0x00 -> 0xFF; 0xFF fill skipped), followed by _SLACK zeros. Returns
    where each restart interval starts in it and the restart marker before each, and the position
    in ``data`` of the marker that ends the scan (-1: the file ends first)."""
    starts, codes = [0], [0]
    size = 0
    i = position
    while i < data.size:
        value = data[i]
        if value != 0xFF:
            clean[size] = value
            size += 1
            i += 1
            continue
        following = i + 1
        while following < data.size and data[following] == 0xFF:
            following += 1
        if following >= data.size:
            break
        code = data[following]
        if code == 0:
            clean[size] = 0xFF
            size += 1
        elif 0xD0 <= code <= 0xD7:
            starts.append(size)
            codes.append(np.int64(code))
        else:
            clean[size : size + _SLACK] = 0
            starts.append(size)
            return np.array(starts), np.array(codes), i
        i = following + 1
    clean[size : size + _SLACK] = 0
    starts.append(size)
    return np.array(starts), np.array(codes), -1


@njit(cache=True, nogil=True)
def _walk_scan(clean, starts, codes, tables, components, mcus_across, mcus_down, interleaved,
               restart_interval, start, end, high, nonzero, progressive):  # pragma: no cover - compiled
    """Walk one scan's unstuffed data (:func:`_unstuff`) to its last block.

    ``components``: a row per component of the scan: horizontal and vertical blocks per MCU, DC
    and AC table (their row in ``tables``), blocks across and down the component's own grid
    (non-interleaved scans cover these), the grid's width in ``nonzero`` and its offset there.
    Returns ``(problem, count)``: for extraneous bytes, their count."""
    interval = 0
    bit, limit = 0, starts[1] * 8
    eobrun = 0
    units = mcus_across * mcus_down if interleaved else components[0, 4] * components[0, 5]
    for unit in range(units):
        if restart_interval and unit and unit % restart_interval == 0:
            aligned = (bit + 7) >> 3
            if aligned * 8 < limit:
                return _EXTRANEOUS, limit // 8 - aligned
            interval += 1
            if interval + 1 >= starts.size:  # the scan ended at its last restart interval
                return _HIT_MARKER, 0
            if codes[interval] != 0xD0 + (interval - 1) % 8:
                return _BAD_RESTART, 0
            bit, limit = starts[interval] * 8, starts[interval + 1] * 8
            eobrun = 0
        row, column = divmod(unit, mcus_across if interleaved else components[0, 4])
        for c in range(components.shape[0]):
            _a, _d, dc, ac, _w, _h, width, offset = components[c]
            across, down = (components[c, 0], components[c, 1]) if interleaved else (1, 1)  # blocks per unit
            for v in range(down):
                for h in range(across):
                    index = offset + (row * down + v) * width + column * across + h if progressive else -1
                    problem, bit, eobrun = _block(clean, bit, tables, dc, ac, start, end, high, nonzero,
                                                  index, eobrun)
                    if problem != _OK or bit > limit:  # checked per block: the slack holds one
                        return problem if problem != _OK else _HIT_MARKER, 0
    extraneous = limit // 8 - ((bit + 7) >> 3)
    for later in range(interval + 1, starts.size - 1):  # restart markers after the last block
        extraneous += starts[later + 1] - starts[later]
    if extraneous:
        return _EXTRANEOUS, extraneous
    return _OK, 0


@njit(cache=True, nogil=True)
def _next_marker(data, position):  # pragma: no cover - compiled
    """The position of the first marker (0xFF, any 0xFF fill, then a code other than 0) at or after
    ``position``, or -1."""
    while position < data.size:
        if data[position] == 0xFF:
            following = position + 1
            while following < data.size and data[following] == 0xFF:
                following += 1
            if following >= data.size:
                return -1
            if data[following] != 0:
                return position
            position = following + 1
        else:
            position += 1
    return -1


@njit(cache=True, nogil=True)
def _marker_code(data, marker):  # pragma: no cover - compiled
    while data[marker] == 0xFF:
        marker += 1
    return data[marker]


@njit(cache=True, nogil=True)
def _after_marker(data, marker):  # pragma: no cover - compiled
    while data[marker] == 0xFF:
        marker += 1
    return marker + 1


def is_jpeg(encoded: bytes) -> bool:
    return encoded[:3] == b"\xff\xd8\xff"


class _Frame:
    """What the frame header (SOFn) says: the sizes and sampling of each component."""

    def __init__(self, body: bytes, kind: int, size: int):
        self.clean = np.empty(size + _SLACK, dtype=np.uint8)  # each scan's data, unstuffed (_unstuff)
        self.progressive = _HUFFMAN_FRAMES.get(kind)  # None: not Huffman-coded, not walked
        if len(body) < 6:
            raise ValueError("Bogus marker length")
        self.height, self.width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
        count = body[5]
        if self.width == 0 or self.height == 0:
            raise ValueError("Empty JPEG image (DNL not supported)")
        if not 1 <= count <= _MAX_COMPONENTS:
            raise ValueError(f"Too many color components: {count}, max {_MAX_COMPONENTS}")
        if len(body) < 6 + 3 * count:
            raise ValueError("Bogus marker length")
        self.components = {}
        for i in range(count):
            identifier, sampling = body[6 + 3 * i], body[7 + 3 * i]
            across, down = sampling >> 4, sampling & 15
            if not (1 <= across <= 4 and 1 <= down <= 4):
                raise ValueError("Bogus sampling factors")
            self.components[identifier] = (i, across, down)
        self.most_across = max(a for _i, a, _d in self.components.values())
        self.most_down = max(d for _i, _a, d in self.components.values())
        self.mcus_across = _ceil_div(self.width, 8 * self.most_across)
        self.mcus_down = _ceil_div(self.height, 8 * self.most_down)
        # each component's block grid, padded to whole MCUs, in one array of nonzero-coefficient masks
        self.grids, offset = {}, 0
        for identifier, (_i, across, down) in self.components.items():
            width, height = self.mcus_across * across, self.mcus_down * down
            blocks_across = _ceil_div(_ceil_div(self.width * across, self.most_across), 8)
            blocks_down = _ceil_div(_ceil_div(self.height * down, self.most_down), 8)
            self.grids[identifier] = (blocks_across, blocks_down, width, offset)
            offset += width * height
        self.nonzero = np.zeros(offset if self.progressive else 1, dtype=np.uint64)
        self.coefficient_bits = {identifier: [-1] * 64 for identifier in self.components}


class _Tables:
    """Huffman tables as ITU T.81 F.2.2.3 decodes with them: rows 0-3 DC, 4-7 AC."""

    def __init__(self):
        self.lookup = np.full((8, 1 << _LOOKAHEAD), -1, dtype=np.int64)  # length << 8 | symbol
        self.maxcode = np.full((8, 18), -1, dtype=np.int64)
        self.valptr = np.zeros((8, 17), dtype=np.int64)
        self.mincode = np.zeros((8, 17), dtype=np.int64)
        self.values = np.zeros((8, 256), dtype=np.int64)
        self.defined = [False] * 8

    def define(self, body: bytes) -> None:
        """Read a DHT segment (one or more tables)."""
        position = 0
        while position < len(body):
            if position + 17 > len(body):
                raise ValueError("Bogus DHT length")
            kind, slot = body[position] >> 4, body[position] & 15
            counts = list(body[position + 1 : position + 17])
            total = sum(counts)
            symbols = body[position + 17 : position + 17 + total]
            if kind > 1 or slot > 3 or total > 256 or len(symbols) < total:
                raise ValueError("Bogus Huffman table definition")
            self._build(4 * kind + slot, counts, symbols)
            position += 17 + total

    def _build(self, row: int, counts: list[int], symbols: bytes) -> None:
        self.maxcode[row] = -1
        self.lookup[row] = -1
        self.values[row, : len(symbols)] = list(symbols)
        code = index = 0
        for length in range(1, 17):
            count = counts[length - 1]
            if length <= _LOOKAHEAD:
                for offset in range(count):  # every window that starts with this code
                    first = (code + offset) << (_LOOKAHEAD - length)
                    self.lookup[row, first : first + (1 << (_LOOKAHEAD - length))] = (
                        length << 8 | symbols[index + offset])
            if count:
                self.valptr[row, length] = index
                self.mincode[row, length] = code
                code += count
                index += count
                self.maxcode[row, length] = code - 1
            if code > (1 << length):
                raise ValueError("Bogus Huffman table definition")
            code <<= 1
        self.maxcode[row, 17] = 1 << 62  # never reached: the walker stops at 16 bits
        self.defined[row] = True

    def arrays(self) -> tuple:
        return self.lookup, self.maxcode, self.valptr, self.mincode, self.values


def check_jpeg(encoded: bytes) -> None:
    """Raise ValueError (in libjpeg's words) when the JPEG ``encoded`` is damaged or cut short."""
    data = np.frombuffer(encoded, dtype=np.uint8)
    tables, frame, restart_interval, scanned = _Tables(), None, 0, False
    position = 2  # after SOI
    while True:
        marker = _next_marker(data, position)
        if marker < 0:
            raise ValueError(_PROBLEMS[_END_OF_FILE])
        if marker != position:
            raise ValueError(_extraneous(marker - position, _marker_code(data, marker)))
        code = int(_marker_code(data, marker))
        position = int(_after_marker(data, marker))
        if code == _EOI:
            if not scanned:
                raise ValueError("Invalid JPEG file structure: missing SOS marker")
            return
        if code in _STANDALONE:
            continue
        if position + 2 > len(encoded):
            raise ValueError(_PROBLEMS[_END_OF_FILE])
        length = int.from_bytes(encoded[position : position + 2], "big")
        body = encoded[position + 2 : position + length]
        if length < 2 or len(body) < length - 2:
            raise ValueError(_PROBLEMS[_END_OF_FILE] if len(body) < length - 2 else "Bogus marker length")
        position += length
        if code in _HUFFMAN_FRAMES or code in _OTHER_FRAMES:
            if frame is not None:  # the decoders read the first frame header's size; so is the budget
                raise ValueError("Invalid JPEG file structure: two SOF markers")
            frame = _Frame(body, code, len(encoded))
        elif code == _DHT:
            tables.define(body)
        elif code == _DRI:
            restart_interval = int.from_bytes(body[:2], "big")
        elif code == _SOS:
            if frame is None:
                raise ValueError("Invalid JPEG file structure: SOS before SOF")
            position = _scan(data, position, body, frame, tables, restart_interval)
            scanned = True


def _scan(data: np.ndarray, position: int, header: bytes, frame: _Frame, tables: _Tables,
          restart_interval: int) -> int:
    """Walk the scan whose header is ``header`` and whose data starts at ``position``; the position
    of the marker after it."""
    count = header[0] if header else 0
    if count == 0 or len(header) < 4 + 2 * count:
        raise ValueError("Bogus marker length")
    start, end = header[1 + 2 * count], header[2 + 2 * count]
    high, low = header[3 + 2 * count] >> 4, header[3 + 2 * count] & 15
    if frame.progressive is None:  # arithmetic-coded or lossless: not walked, only skipped
        marker = _unstuff(data, position, frame.clean)[2]
        if marker < 0:
            raise ValueError(_PROBLEMS[_END_OF_FILE])
        return int(marker)
    if not frame.progressive:
        if (start, end, high, low) != (0, 63, 0, 0):
            raise ValueError("Invalid SOS parameters for sequential JPEG")
    rows = []
    for i in range(count):
        identifier, selectors = header[1 + 2 * i], header[2 + 2 * i]
        if identifier not in frame.components:
            raise ValueError("Invalid component ID in SOS")
        _index, across, down = frame.components[identifier]
        dc, ac = selectors >> 4, selectors & 15  # table slots; their rows: dc, 4 + ac
        reads_dc = start == 0 and high == 0
        for slot, row, used in ((dc, dc, reads_dc), (ac, 4 + ac, end > 0)):
            if used and (slot > 3 or not tables.defined[row]):
                raise ValueError(f"Huffman table 0x{slot:02x} was not defined")
        if reads_dc and tables.values[dc].max() > 15:
            raise ValueError("Bogus Huffman table definition")
        if frame.progressive:
            _follow_progression(frame, identifier, start, end, high, low)
        blocks_across, blocks_down, width, offset = frame.grids[identifier]
        rows.append([across, down, dc % 4, 4 + ac % 4, blocks_across, blocks_down, width, offset])
    band_ok = end <= 63 and start <= end and (end == 0 if start == 0 else count == 1)
    if frame.progressive and not band_ok:
        raise ValueError(f"Invalid progressive parameters Ss={start} Se={end} Ah={high} Al={low}")
    components = np.array(rows, dtype=np.int64)
    starts, codes, marker = _unstuff(data, position, frame.clean)
    if marker < 0:
        raise ValueError(_PROBLEMS[_END_OF_FILE])
    problem, count = _walk_scan(
        frame.clean, starts, codes, tables.arrays(), components, frame.mcus_across, frame.mcus_down,
        count > 1, restart_interval, start, end, high, frame.nonzero, frame.progressive,
    )
    if problem == _EXTRANEOUS:
        raise ValueError(_extraneous(int(count), int(_marker_code(data, marker))))
    if problem != _OK:
        raise ValueError(_PROBLEMS[int(problem)])
    return int(marker)


def _follow_progression(frame: _Frame, identifier: int, start: int, end: int, high: int, low: int) -> None:
    """Successive approximation must go on from where the earlier scans left each coefficient
    (libjpeg: "Inconsistent progression sequence")."""
    bits = frame.coefficient_bits[identifier]
    if start > 0 and bits[0] < 0:
        raise ValueError(f"Inconsistent progression sequence for component {identifier} coefficient 0")
    for k in range(start, min(end, 63) + 1):
        expected = max(bits[k], 0)
        if high != expected or (high and low != high - 1):
            raise ValueError(f"Inconsistent progression sequence for component {identifier} coefficient {k}")
        bits[k] = low


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _extraneous(count: int, code: int) -> str:
    return f"Corrupt JPEG data: {count} extraneous bytes before marker 0x{code:02x}"
