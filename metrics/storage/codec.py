"""The encoding of a compressed chunk: a series' timestamps (µs, strictly increasing) and values
(float64) over one closed period, as one byte string. Pure numpy, no Django: tested and measured on
arrays (`bench/storage.py --codecs` compares the codecs on the benchmark data).

Two codecs, told apart by the first byte, so chunks written by either stay readable:
- `pco`: pcodec (the default). It finds the regular step of timestamps (delta encoding) and the
  decimal or integer structure of values (e.g. a CPU percentage with two decimals is stored as a
  small integer times 0.01, exactly), then entropy-codes what is left.
- `gorilla_zstd`: the classic alternative, as Prometheus and Gorilla do it but with zstd in place of
  bit packing: delta-of-delta timestamps, values XORed with the previous value and byte-shuffled
  (all first bytes, then all second bytes, ...), each part compressed by zstd.
Both are lossless: decode(encode(ts, v)) gives the same bits back (NaN payloads and -0.0 included).
"""
from __future__ import annotations

import struct

import cramjam
import numpy as np
import pcodec
from pcodec import standalone

PCO = 1
GORILLA_ZSTD = 2
CODEC_IDS = {"pco": PCO, "gorilla_zstd": GORILLA_ZSTD}
DEFAULT_CODEC = "pco"

_HEADER = struct.Struct("<BII")  # codec, point count, length of the timestamp part
# Level 6 against pcodec's default 8: 0.2 % larger, 1.7x faster to encode (bench/storage.py's data).
_PCO_CONFIG = pcodec.ChunkConfig(compression_level=6)
_ZSTD_LEVEL = 3


def encode(ts_us: np.ndarray, values: np.ndarray, codec: str = DEFAULT_CODEC) -> bytes:
    """Encode one chunk's points (timestamps increasing)."""
    ts_us = np.ascontiguousarray(ts_us, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if len(ts_us) != len(values):
        raise ValueError("timestamps and values differ in length")
    codec_id = CODEC_IDS[codec]
    if len(ts_us) == 0:
        return _HEADER.pack(codec_id, 0, 0)
    if codec_id == PCO:
        ts_part = standalone.simple_compress(ts_us, _PCO_CONFIG)
        # Values as their bit patterns would lose pcodec's float modes; as floats, NaN payloads and
        # -0.0 still round-trip (pcodec is lossless on the bits).
        value_part = standalone.simple_compress(values, _PCO_CONFIG)
    else:
        ts_part = bytes(cramjam.zstd.compress(_delta_of_delta(ts_us).tobytes(), level=_ZSTD_LEVEL))
        bits = values.view(np.uint64)
        xored = bits ^ np.concatenate(([np.uint64(0)], bits[:-1]))
        shuffled = xored.view(np.uint8).reshape(-1, 8).T.copy()
        value_part = bytes(cramjam.zstd.compress(shuffled.tobytes(), level=_ZSTD_LEVEL))
    return _HEADER.pack(codec_id, len(ts_us), len(ts_part)) + ts_part + value_part


def decode(blob: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
    """The (timestamps µs, values) of an encoded chunk."""
    blob = memoryview(blob)
    codec_id, count, ts_length = _HEADER.unpack_from(blob)
    if count == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    ts_part = blob[_HEADER.size:_HEADER.size + ts_length]
    value_part = blob[_HEADER.size + ts_length:]
    if codec_id == PCO:
        ts_us = standalone.simple_decompress(bytes(ts_part)).astype(np.int64, copy=False)
        values = standalone.simple_decompress(bytes(value_part)).astype(np.float64, copy=False)
    elif codec_id == GORILLA_ZSTD:
        ts_us = _undo_delta_of_delta(np.frombuffer(bytes(cramjam.zstd.decompress(bytes(ts_part))), np.int64))
        shuffled = np.frombuffer(bytes(cramjam.zstd.decompress(bytes(value_part))), np.uint8).reshape(8, count)
        xored = shuffled.T.copy().view(np.uint64).ravel()
        values = np.bitwise_xor.accumulate(xored).view(np.float64)
    else:
        raise ValueError(f"unknown chunk codec {codec_id}")
    if len(ts_us) != count or len(values) != count:
        raise ValueError("chunk is damaged: point count does not match")
    return ts_us, values


def _delta_of_delta(ts_us: np.ndarray) -> np.ndarray:
    # first timestamp, first step, then the changes of the step (zero for a regular series)
    out = np.empty_like(ts_us)
    out[0] = ts_us[0]
    if len(ts_us) > 1:
        steps = np.diff(ts_us)
        out[1] = steps[0]
        out[2:] = np.diff(steps)
    return out


def _undo_delta_of_delta(encoded: np.ndarray) -> np.ndarray:
    if len(encoded) == 1:
        return encoded.copy()
    steps = np.cumsum(np.concatenate(([encoded[1]], encoded[2:])))
    return np.concatenate(([encoded[0]], encoded[0] + np.cumsum(steps)))
