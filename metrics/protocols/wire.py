"""Counting a protobuf body's points before it is parsed, so an oversized request costs milliseconds.

Protobuf puts millions of messages in a few megabytes (an empty data point is 2 bytes, and a
5 KB gzip body holds 2.6 million of them); parsing builds every one before anything can be
counted. Here the body's outer levels are walked on the wire instead: `Shape` names, level by
level, the fields that lead to the points and the fields that are points; each point is skipped
by its length, and the walk stops as soon as the request is over its limits. What lies inside a
point (attributes, exemplars) is left to the parser: it is bounded by the body size.
"""
from __future__ import annotations

from dataclasses import dataclass

from metrics.protocols import TooLarge

# A level: field number -> the level inside it, or POINT for a field whose every occurrence is a point.
POINT = "point"
Shape = dict


class Malformed(Exception):
    """The body is not valid protobuf wire format (answered 400)."""


@dataclass
class Count:
    points: int = 0
    fields: int = 0  # every field read on the way: the walk's own cost


def count(buf: bytes, shape: Shape, *, most_points: int, most_fields: int, noun: str) -> Count:
    """The points in `buf` per `shape`; TooLarge past `most_points` points or `most_fields` fields read."""
    counted = Count()
    levels = [(0, len(buf), shape)]
    try:
        while levels:
            start, end, level = levels.pop()
            for field, value_start, value_end in _fields(buf, start, end):
                counted.fields += 1
                if counted.fields > most_fields:
                    raise TooLarge(f"The request has more than {most_fields} fields around its {noun}s "
                                   f"(resources, series, metrics): this tenant's limit of {most_points} {noun}s a "
                                   "request (MAX_EVENTS_PER_REQUEST) allows no more; nothing was stored.")
                inner = level.get(field)
                if inner is POINT:
                    counted.points += 1
                    if counted.points > most_points:
                        raise TooLarge(f"The request has more than {most_points} {noun}s; this tenant's limit is "
                                       f"{most_points} a request (MAX_EVENTS_PER_REQUEST); nothing was stored.")
                elif inner is not None and value_start is not None:
                    levels.append((value_start, value_end, inner))
    except IndexError:
        raise Malformed("it ends inside a field") from None
    return counted


def _fields(buf: bytes, pos: int, end: int):
    """(field number, value start, value end) of each field from pos to end; the value's bounds are
    None for a field that is not length-delimited (nothing can be inside it)."""
    while pos < end:
        tag = buf[pos]  # one byte for nearly every tag and length of a real request: read inline
        tag, pos = (tag, pos + 1) if tag < 0x80 else _varint(buf, pos)
        wire_type = tag & 7
        if wire_type == 2:
            length = buf[pos]
            length, pos = (length, pos + 1) if length < 0x80 else _varint(buf, pos)
            if pos + length > end:
                raise Malformed(f"a field at byte {pos} runs past its message")
            yield tag >> 3, pos, pos + length
            pos += length
            continue
        if wire_type == 0:
            while buf[pos] & 0x80:
                pos += 1
            pos += 1
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise Malformed(f"wire type {wire_type} at byte {pos}")
        yield tag >> 3, None, None
    if pos > end:
        raise Malformed(f"a field runs past byte {end}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = buf[pos] & 0x7F, 7
    while True:
        pos += 1
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + 1
        shift += 7
        if shift > 63:
            raise Malformed(f"a varint longer than 10 bytes at byte {pos}")
