"""A series' state between points (SeriesState) and its checkpoint codec: the current format and the
four before it, which are still read (an older one starts with no alarm)."""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)  # slots: attribute reads are on the per-point hot path
class SeriesState:
    """Everything a series carries from one point to the next."""

    first_ts_us: int | None = None
    window_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    window_values: np.ndarray = field(default_factory=lambda: np.empty(0))
    window_residuals: np.ndarray = field(default_factory=lambda: np.empty(0))  # against the same time 1-3 days earlier (NaN: none)
    window_weekly_residuals: np.ndarray = field(default_factory=lambda: np.empty(0))  # ... and 1-3 weeks earlier
    lowest: float = math.inf
    highest: float = -math.inf
    last_alert_us: int | None = None
    gain_at_alert: float = 1.0
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    cusum_day: int = -(2**62)
    cusum_up_since: int | None = None  # the first point (µs) of the excursion each CUSUM is summing
    cusum_down_since: int | None = None
    run_length: int = 0
    run_alerted: bool = False  # a flatline alerts once per run, however long it lasts
    recent_abs_z: np.ndarray = field(default_factory=lambda: np.empty(0))
    # The baseline in effect since the last refresh.
    bucket: int = -(2**62)
    median: float = math.nan
    scale: float = math.nan
    plain_mad: float = math.nan
    period_days: int = 0  # the seasonal period in use: 0 (none), 1 (daily) or 7 (weekly)
    longest_run: int = 0
    # Raw excursions (|z| over the residual threshold at gain 1, alerted or not) of the last four
    # weeks, by 5-minute slot: key = slot × 2 + (1 if above), and the largest |z| of each. What a
    # recurring daily or weekly pattern is recognised from.
    excursion_keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    excursion_peaks: np.ndarray = field(default_factory=lambda: np.empty(0))
    excursions_known: bool = True  # False for a checkpoint written before excursions were kept
    # The alarm (v5): the newest point outside the model band (gain 1), when the alarm now going on
    # began (None: ok), the signed deviation of its peak alert, and when the last alarm ended.
    last_out_us: int | None = None
    alarm_since_us: int | None = None
    alarm_peak: float = math.nan
    recovered_us: int | None = None

    _SCALARS_V2 = struct.Struct("<qddqdddqqqdddqqqII")
    _SCALARS_V3 = struct.Struct("<qddqdddqqqdddqqqIIqq")  # v3: the CUSUMs' start times appended
    _SCALARS_V4 = struct.Struct("<qddqdddqqqdddqqqIIqqI")  # v4: and the number of excursions kept
    _SCALARS = struct.Struct("<qddqdddqqqdddqqqIIqqIqqdq")  # v5: and the alarm
    _NONE = -(2**63)
    _MAGIC_V2 = b"CWD2"
    _MAGIC_V3 = b"CWD3"
    _MAGIC_V4 = b"CWD4"
    _MAGIC = b"CWD5"  # zlib streams, the first format, start with 0x78

    def to_bytes(self) -> bytes:
        """The checkpoint written for every series on every run, so cheap to make: timestamp steps
        compressed (regular, they shrink to almost nothing), residuals without their NaNs, values raw
        (random doubles do not compress; trying costs ten times the rest)."""
        none = self._NONE
        head = self._SCALARS.pack(
            none if self.first_ts_us is None else self.first_ts_us, self.lowest, self.highest,
            none if self.last_alert_us is None else self.last_alert_us, self.gain_at_alert, self.cusum_up,
            self.cusum_down, self.cusum_day, self.run_length, self.bucket, self.median, self.scale, self.plain_mad,
            self.period_days, self.longest_run, int(self.run_alerted), len(self.window_ts), len(self.recent_abs_z),
            none if self.cusum_up_since is None else self.cusum_up_since,
            none if self.cusum_down_since is None else self.cusum_down_since, len(self.excursion_keys),
            none if self.last_out_us is None else self.last_out_us,
            none if self.alarm_since_us is None else self.alarm_since_us, self.alarm_peak,
            none if self.recovered_us is None else self.recovered_us,
        )
        steps = zlib.compress(np.diff(np.asarray(self.window_ts, "<i8"), prepend=0).astype("<i8").tobytes(), 1)
        parts = [self._MAGIC, head, struct.pack("<I", len(steps)), steps, np.asarray(self.window_values, "<f8").tobytes()]
        for residuals in (self.window_residuals, self.window_weekly_residuals):
            residuals = np.asarray(residuals, "<f8")
            present = ~np.isnan(residuals)
            parts += [np.packbits(present).tobytes(), residuals[present].tobytes()]
        parts.append(np.asarray(self.recent_abs_z, "<f8").tobytes())
        keys = zlib.compress(np.diff(np.asarray(self.excursion_keys, "<i8"), prepend=0).astype("<i8").tobytes(), 1)
        parts += [struct.pack("<I", len(keys)), keys, np.asarray(self.excursion_peaks, "<f8").tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes | None) -> "SeriesState":
        if not blob:
            return cls()
        blob = bytes(blob)
        if blob.startswith(cls._MAGIC):
            scalars = cls._SCALARS
        elif blob.startswith(cls._MAGIC_V4):
            scalars = cls._SCALARS_V4
        elif blob.startswith(cls._MAGIC_V3):
            scalars = cls._SCALARS_V3
        elif blob.startswith(cls._MAGIC_V2):
            scalars = cls._SCALARS_V2
        else:
            return cls._from_first_format(blob)
        head = scalars.unpack_from(blob, len(cls._MAGIC))
        count, recent = head[16:18]
        offset = len(cls._MAGIC) + scalars.size
        (steps_size,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        window_ts = np.cumsum(np.frombuffer(zlib.decompress(blob[offset:offset + steps_size]), "<i8")).astype(np.int64)
        offset += steps_size
        window_values = np.frombuffer(blob, "<f8", count, offset).astype(np.float64)
        offset += 8 * count
        residual_arrays = []
        for _ in range(2):
            mask_size = (count + 7) // 8
            present = np.unpackbits(np.frombuffer(blob, np.uint8, mask_size, offset), count=count).astype(bool)
            offset += mask_size
            residuals = np.full(count, math.nan)
            kept = int(present.sum())
            residuals[present] = np.frombuffer(blob, "<f8", kept, offset)
            offset += 8 * kept
            residual_arrays.append(residuals)
        recent_abs_z = np.frombuffer(blob, "<f8", recent, offset).astype(np.float64)
        state = cls._from_parts(head, window_ts, window_values, *residual_arrays, recent_abs_z)
        state.excursions_known = len(head) > 20
        if state.excursions_known:  # v4: the excursions
            offset += 8 * recent
            (keys_size,) = struct.unpack_from("<I", blob, offset)
            offset += 4
            state.excursion_keys = np.cumsum(np.frombuffer(zlib.decompress(blob[offset:offset + keys_size]), "<i8"),
                                             dtype=np.int64)
            offset += keys_size
            state.excursion_peaks = np.frombuffer(blob, "<f8", head[20], offset).astype(np.float64)
        if len(head) > 21:  # v5: the alarm
            last_out, since, peak, recovered = head[21:25]
            state.last_out_us = None if last_out == cls._NONE else last_out
            state.alarm_since_us = None if since == cls._NONE else since
            state.alarm_peak = peak
            state.recovered_us = None if recovered == cls._NONE else recovered
        return state

    @classmethod
    def _from_first_format(cls, blob: bytes) -> "SeriesState":
        """Checkpoints written before the current format: everything zlib-compressed."""
        blob = zlib.decompress(blob)
        head = cls._SCALARS_V2.unpack_from(blob)
        count, recent = head[-2:]
        offset = cls._SCALARS_V2.size
        arrays = []
        for dtype, size in (("<i8", count), ("<f8", count), ("<f8", count), ("<f8", count), ("<f8", recent)):
            arrays.append(np.frombuffer(blob, dtype=dtype, count=size, offset=offset).astype(dtype[1:]))
            offset += 8 * size
        state = cls._from_parts(head, *arrays)
        state.excursions_known = False
        return state

    @classmethod
    def _from_parts(cls, head: tuple, window_ts, window_values, window_residuals, window_weekly_residuals,
                    recent_abs_z) -> "SeriesState":
        (first, lowest, highest, last_alert, gain, up, down, day, run, bucket, median, scale, plain_mad, period,
         longest, run_alerted, _, _) = head[:18]
        up_since, down_since = head[18:20] if len(head) > 18 else (cls._NONE, cls._NONE)
        return cls(
            cusum_up_since=None if up_since == cls._NONE else up_since,
            cusum_down_since=None if down_since == cls._NONE else down_since,
            first_ts_us=None if first == cls._NONE else first, window_ts=window_ts, window_values=window_values,
            window_residuals=window_residuals, window_weekly_residuals=window_weekly_residuals, lowest=lowest,
            highest=highest, last_alert_us=None if last_alert == cls._NONE else last_alert, gain_at_alert=gain,
            cusum_up=up, cusum_down=down, cusum_day=day, run_length=run, run_alerted=bool(run_alerted),
            recent_abs_z=recent_abs_z, bucket=bucket, median=median, scale=scale, plain_mad=plain_mad,
            period_days=period, longest_run=longest,
        )
