"""FIX tag=value codec: stream framing, message parsing and encoding.

Framing follows what the wire dictates: skip to ``8=``, read BodyLength, then
take everything up to the SOH that ends the first ``10=`` field found at or
after the declared end of the body.  A frame whose BodyLength or CheckSum is
wrong, whose first three fields are not 8, 9, 35 in that order, or whose tags
are not numbers is *garbled*: :func:`parse_frame` raises :class:`GarbledMessage`
and the session ignores it (FIX: "garbled messages are ignored").

Encoding writes fields the way QuickFIX does: 8, 9, 35, the other header tags
in ascending order, then the body as given by the caller, then 10.
"""

from __future__ import annotations

import calendar
import re
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final
from zlib import adler32

from mypy_extensions import i64

from gateway.fix import spec44

SOH: Final = b"\x01"
_SOH_INT: Final = 1

# Tags we know are well-formed numbers, mapped to their int, so that parsing a
# field costs one dict lookup instead of an int() call.
_TAG_CACHE: dict[bytes, int] = {str(t).encode(): t for t in range(1, 10_000)}
_TAG_RE = re.compile(rb"-?[0-9]+\Z")
# Every frame starts with BeginString "FIX.x.y" or "FIXT.1.1"; resynchronising
# on this rather than on a bare "8=" cannot land inside a field like "448=".
_FRAME_START: Final = b"8=FIX"
# The fields framing looks for after a frame start: BodyLength, CheckSum.
_LENGTH_FIELD: Final = b"\x019="
_CHECKSUM_FIELD: Final = b"\x0110="
# How far past where a field should be it is looked for before the general
# reading's remembering search takes over.
_NEAR: Final = 32
# Longest number accepted in a tag or a length (int() of longer digit strings
# is slow, and refused outright beyond a few thousand digits).
_MAX_NUMBER_LEN: Final = 9
# Most digits the general framing reads in a BodyLength (leading zeros
# included) before it gives up on the frame.
_MAX_LENGTH_DIGITS: Final = 12
# FixMessage.get looks through messages of up to this many fields in order;
# a longer one gets a tag -> value map on first use (building one costs about
# as much as a dozen look-ups in a message this long).
_SCAN_FIELDS: Final = 40
# length tag -> data tag: the data field's value may contain SOH.
_DATA_LENGTH_TAGS = frozenset(spec44.DATA_LENGTH_FIELDS)


class GarbledMessage(ValueError):
    """The bytes are not a well-formed FIX message (framing, length, checksum,
    tag syntax).  FIX says to ignore such a message and not count it."""


class FixMessage:
    """One parsed inbound message.

    ``fields`` holds every field from MsgType (35) up to, not including,
    CheckSum (10), in wire order, as ``(tag, value)`` with the value as raw
    bytes.  ``get`` answers the first occurrence of a tag.
    """

    __slots__ = ("_map", "begin_string", "fields", "msg_type", "raw")

    def __init__(
        self, begin_string: bytes, msg_type: bytes, fields: list[tuple[int, bytes]], raw: bytes
    ) -> None:
        self.begin_string = begin_string
        self.msg_type = msg_type
        self.fields = fields
        self.raw = raw
        self._map: dict[int, bytes] | None = None

    def get(self, tag: int, default: bytes | None = None) -> bytes | None:
        fields = self.fields
        if len(fields) <= _SCAN_FIELDS:
            for t, value in fields:
                if t == tag:
                    return value
            return default
        m = self._map
        if m is None:
            m = self._map = dict(reversed(fields))
        return m.get(tag, default)

    def __contains__(self, tag: int) -> bool:
        return self.get(tag) is not None

    def __repr__(self) -> str:
        return f"FixMessage({self.raw.replace(SOH, b'|').decode('latin-1')!r})"


# What :meth:`FrameDecoder.start_problem` finds wrong with the bytes a
# stream starts with.
NOT_FIX: Final = "not FIX"
"""Bytes no FIX frame starts with (``8=FIX``, then ``9=`` and digits)."""
TOO_LARGE: Final = "too large"
"""A frame that cannot end within ``max_message_size``."""
GARBLED: Final = "garbled"
"""A frame that can end, but not well formed (CheckSum is not where
BodyLength says the body ends)."""

# The last bytes of a well-formed frame, from the SOH that ends its body:
# '#' stands for a digit.
_TRAILER_SHAPE: Final = b"\x0110=###\x01"
_ANY_DIGIT: Final = 35  # "#"


LOGGED_CHARS: Final = 64
"""Client-supplied text in a log line is cut to this many characters."""


def loggable(value: bytes | str) -> str:
    """Client-supplied text as a log line shows it: control characters
    escaped, cut to :data:`LOGGED_CHARS` characters, and ``...`` when
    there was more."""
    cut = value[:LOGGED_CHARS]
    shown = repr(cut)[2:-1] if isinstance(cut, bytes) else repr(cut)[1:-1]
    if len(shown) > LOGGED_CHARS or len(value) > LOGGED_CHARS:
        return shown[:LOGGED_CHARS] + "..."
    return shown


class GarbageRuns:
    """A count of runs of garbage: stretches of consecutive bytes a
    :class:`FrameDecoder` dropped between two frames it handed on.  One
    object may be shared by successive decoders (a session's, one per
    connection), so that the count outlives each of them."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs = 0


class FrameDecoder:
    """Cuts a byte stream into candidate frames.

    ``feed`` appends bytes; ``next_frame`` returns the next complete frame or
    None when more bytes are needed.  Junk before ``8=`` is dropped and counted
    in ``discarded``.  Nothing buffered ever exceeds ``max_message_size`` plus
    one read: a frame that cannot complete within that bound is dropped
    (``oversized`` counts them) and the decoder resynchronises on the next
    ``8=``.  Every run of dropped bytes -- everything dropped from one frame
    handed on (or the start) to the next, however many reads it spans and
    whatever made it unreadable -- adds one to ``garbage.runs`` when its
    first byte is dropped.

    The work is linear in the bytes fed, whatever they hold: no byte is
    searched or copied more than a few times, however many frames (or frame
    starts given up on) it is part of.  ``scanned`` counts what the general
    reading searched and copied.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_end_at",
        "_end_of",
        "_end_to",
        "_fed",
        "_in_garbage",
        "_length_at",
        "_length_from",
        "_length_to",
        "_pos",
        "_scanned",
        "_sums",
        "_sums_head",
        "_sums_to",
        "discarded",
        "garbage",
        "max_message_size",
        "oversized",
    )

    # The bytes of the last read are kept as they came (``_data``, consumed
    # up to ``_pos``): whole frames are cut from them directly, and the general
    # reading works on them in place when they hold anything else.  What a
    # read leaves unread when the next one comes (a frame that continues in
    # it) moves to ``_buf``, the next reads are appended there, and once the
    # general reading has taken a frame out of it, the rest goes back to
    # ``_data``: each byte is copied at most twice, not once per frame.
    #
    # The general reading remembers what it searched, by position in the
    # stream (``_fed`` bytes fed so far): the first BodyLength field
    # ("<SOH>9=") from a point on, every CheckSum field ("<SOH>10=") found,
    # and where the last one asked about ends.  A frame start given up on
    # moves it only a few bytes on, but the bytes after it are not searched
    # again.

    def __init__(self, max_message_size: int = 65536) -> None:
        self._data = b""
        self._pos: i64 = 0
        self._buf = bytearray()
        self._fed = 0
        self.max_message_size = max_message_size
        self.discarded = 0
        self.oversized = 0
        self.garbage = GarbageRuns()
        self._in_garbage = False
        self._scanned = 0
        # no "<SOH>9=" lies wholly in [_length_from, _length_to); the first
        # one from _length_from on is at _length_at (-1: not found yet)
        self._length_from = -1
        self._length_to = -1
        self._length_at = -1
        # every "<SOH>10=" starting before _sums_to, from the frame start where
        # the search began on, in order (those before _sums_head are behind)
        self._sums: list[int] = []
        self._sums_head = 0
        self._sums_to = -1
        # the first SOH after the "<SOH>10=" at _end_of is at _end_at (-1:
        # none before _end_to)
        self._end_of = -1
        self._end_at = -1
        self._end_to = -1

    @property
    def scanned(self) -> int:
        """Bytes the general reading has searched through or copied from one
        buffer to the other: a few times the bytes fed at most."""
        return self._scanned

    def feed(self, data: bytes) -> None:
        self._fed += len(data)
        if not self._buf and self._pos == len(self._data):
            self._data = bytes(data)
            self._pos = 0
        else:
            self._spill()
            self._buf += data

    def _spill(self) -> None:
        """Move what is left of ``_data`` to the end of ``_buf``."""
        if self._pos < len(self._data):
            self._scanned += len(self._data) - self._pos
            self._buf += memoryview(self._data)[self._pos :]
        self._data = b""
        self._pos = 0

    def buffered(self) -> int:
        return len(self._buf) + len(self._data) - self._pos

    def take_rest(self) -> bytes:
        """Hand over whatever is buffered (used when a connection is bound to
        a session and the session's own decoder takes over)."""
        self._spill()
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None when more bytes are needed."""
        if not self._buf:
            end = self._plain_frame_end()
            if end > 0:
                whole = self._data[self._pos : end]
                self._pos = end
                self._in_garbage = False
                return whole
            if self._pos == len(self._data):
                return None
            return self._search()
        frame = self._search()
        buf = self._buf
        if frame is not None and buf:
            self._scanned += len(buf)
            self._data = bytes(buf)
            self._pos = 0
            buf.clear()
        return frame

    def next_frame_by_search(self) -> bytes | None:
        """``next_frame`` without the shortcut for a plainly whole frame: the
        reading that handles junk, partial and malformed input, and the
        reference the shortcut is tested against."""
        return self._search()

    def _search(self) -> bytes | None:
        """The general reading, on the bytes buffered where they are (in
        ``_buf``, or else in ``_data`` from ``_pos``).  Positions are indices
        into that buffer; ``base`` is where what is left of it starts."""
        in_buf = len(self._buf) > 0
        buf: bytes | bytearray = self._buf if in_buf else self._data
        base: int = 0 if in_buf else self._pos
        n = len(buf)
        limit = self.max_message_size
        near = limit if limit < _NEAR else _NEAR
        frame: bytes | None = None
        while base < n:
            start = buf.find(_FRAME_START, base)
            if start != base:
                self._scanned += (n if start < 0 else start) - base
                if start < 0:
                    base = self._drop(base, n - _partial_start(buf, n - base))
                    break
                base = self._drop(base, start)
            # BodyLength: looked for right after the BeginString first (the
            # search that remembers what it saw costs more)
            lpos = buf.find(_LENGTH_FIELD, base, base + near)
            if lpos < 0:
                lpos = self._length_field(buf, base, base + limit)
            if lpos < 0:
                if n - base >= limit:
                    base = self._resync(buf, base)
                    continue
                break
            lend = buf.find(SOH, lpos + 3, lpos + 4 + _MAX_LENGTH_DIGITS)
            if lend < 0:
                if n > lpos + 4 + _MAX_LENGTH_DIGITS:
                    base = self._resync(buf, base)  # BodyLength longer than any sane number
                    continue
                break
            digits = buf[lpos + 3 : lend]
            if not digits.isdigit():
                base = self._resync(buf, base)
                continue
            body_end = lend + 1 + int(digits)
            if body_end - base > limit:
                self.oversized += 1
                base = self._resync(buf, base)
                continue
            if n < body_end:
                break
            # CheckSum: the first "<SOH>10=" from the end of the body on, and
            # the SOH after it, both within what a frame may span
            span_end = base + limit + 16
            hi = body_end - 1 + _NEAR
            cpos = buf.find(_CHECKSUM_FIELD, body_end - 1, hi if hi < span_end else span_end)
            end = -1
            if cpos >= 0:
                hi = cpos + 4 + _NEAR
                end = buf.find(SOH, cpos + 4, hi if hi < span_end else span_end)
            if end < 0:
                cpos = self._checksum_field(buf, base, body_end - 1, span_end)
                end = self._field_end(buf, cpos, span_end) if cpos >= 0 else -1
            if end < 0:
                if n - base >= limit + 16:
                    self.oversized += 1
                    base = self._resync(buf, base)
                    continue
                break
            frame = bytes(buf[base : end + 1])
            base = end + 1
            self._in_garbage = False
            break
        if not in_buf:
            self._pos = base
        elif base:
            del self._buf[:base]
        return frame

    def _drop(self, base: int, to: int) -> int:
        """Drop the bytes from ``base`` to ``to``; returns ``to``."""
        if to > base:
            if not self._in_garbage:
                self._in_garbage = True
                self.garbage.runs += 1
            self.discarded += to - base
            return to
        return base

    def _resync(self, buf: bytes | bytearray, base: int) -> int:
        """Drop the frame start at ``base`` and everything up to the next one;
        returns where what is left starts."""
        nxt = buf.find(_FRAME_START, base + 2)
        n = len(buf)
        self._scanned += (n if nxt < 0 else nxt) - base - 2
        return self._drop(base, nxt if nxt >= 0 else n - _partial_start(buf, n - base))

    def _length_field(self, buf: bytes | bytearray, lo: int, hi: int) -> int:
        """``buf.find(b"\\x019=", lo, hi)``, not searching again what an
        earlier call searched (``lo`` never goes back)."""
        origin = self._fed - len(buf)  # the stream position of buf[0]
        at_lo = origin + lo
        at_hi = origin + min(hi, len(buf))
        known = self._length_from
        if known < 0 or known > at_lo or 0 <= self._length_at < at_lo:
            self._length_from = self._length_to = at_lo
            self._length_at = -1
        at = self._length_at
        if at < 0:
            if at_hi <= self._length_to:
                return -1
            begin = max(at_lo, self._length_to - 2)
            found = buf.find(_LENGTH_FIELD, begin - origin, at_hi - origin)
            self._scanned += (at_hi - origin if found < 0 else found) - (begin - origin)
            if found < 0:
                self._length_to = at_hi
                return -1
            at = self._length_at = origin + found
        return at - origin if at + 3 <= origin + hi else -1

    def _checksum_field(self, buf: bytes | bytearray, start: int, lo: int, hi: int) -> int:
        """``buf.find(b"\\x0110=", lo, hi)`` for the frame starting at
        ``start`` (``lo`` may go back, never before ``start``), each byte
        searched once."""
        origin = self._fed - len(buf)
        sums = self._sums
        at_start = origin + start
        if self._sums_to < at_start:
            sums.clear()
            self._sums_to = at_start
            self._sums_head = 0
        head = bisect_left(sums, at_start, self._sums_head)
        if head > 64 and 2 * head > len(sums):
            del sums[:head]
            head = 0
        self._sums_head = head
        i = bisect_left(sums, origin + lo, head)
        if i < len(sums):
            at = sums[i]
            return at - origin if at + 4 <= origin + hi else -1
        # none from lo up to _sums_to: search on from there
        at_hi = origin + min(hi, len(buf))
        begin = self._sums_to
        while True:
            found = buf.find(_CHECKSUM_FIELD, begin - origin, at_hi - origin)
            self._scanned += max((at_hi - origin if found < 0 else found) - (begin - origin), 0)
            if found < 0:
                self._sums_to = max(begin, at_hi - 3)
                return -1
            sums.append(origin + found)
            begin = self._sums_to = origin + found + 4
            if found >= lo:
                return found

    def _field_end(self, buf: bytes | bytearray, cpos: int, hi: int) -> int:
        """``buf.find(SOH, cpos + 4, hi)``, searching on where the last call
        for the same ``cpos`` stopped."""
        origin = self._fed - len(buf)
        at_cpos = origin + cpos
        if self._end_of != at_cpos:
            self._end_of = at_cpos
            self._end_at = -1
            self._end_to = at_cpos + 4
        at = self._end_at
        if at < 0:
            at_hi = origin + min(hi, len(buf))
            if at_hi <= self._end_to:
                return -1
            begin = self._end_to - origin
            found = buf.find(SOH, begin, at_hi - origin)
            self._scanned += (at_hi - origin if found < 0 else found) - begin
            if found < 0:
                self._end_to = at_hi
                return -1
            at = self._end_at = origin + found
        return at - origin if at < origin + hi else -1

    def start_problem(self) -> tuple[str, str] | None:
        """Why the bytes buffered can never begin with a well-formed frame
        of at most ``max_message_size`` bytes: ``(kind, detail)``, kind
        being :data:`NOT_FIX`, :data:`TOO_LARGE` or :data:`GARBLED`; None
        while they still may, bytes still to come being no reason.

        For the start of a stream, where nothing may come before the first
        frame.  Whenever this answers None, ``next_frame`` drops nothing and
        hands on the frame once it is whole.  Only the header and the bytes
        where CheckSum must be are looked at, so asking after every read
        costs no more than framing does."""
        self._spill()
        buf = self._buf
        n = len(buf)
        limit = self.max_message_size
        if buf[: len(_FRAME_START)] != _FRAME_START[:n]:
            return NOT_FIX, "does not start with 8=FIX"
        begin_end = buf.find(SOH, len(_FRAME_START))
        if begin_end < 0:
            if n >= limit:
                return TOO_LARGE, f"no BodyLength within max_message_size {limit}"
            return None
        digits_start = begin_end + 3
        if buf[begin_end + 1 : digits_start] != b"9="[: n - begin_end - 1]:
            return NOT_FIX, "second field is not BodyLength (9)"
        value = 0
        pos = digits_start
        # each digit read moves the end of the body further: stop once past
        while pos < n and _DIGIT_0 <= buf[pos] <= _DIGIT_9 and pos + 1 + value <= limit:
            if pos - digits_start == _MAX_LENGTH_DIGITS:
                return NOT_FIX, f"BodyLength of more than {_MAX_LENGTH_DIGITS} digits"
            value = value * 10 + buf[pos] - _DIGIT_0
            pos += 1
        body_end = pos + 1 + value
        if body_end > limit:
            more = "" if pos < n and buf[pos] == _SOH_INT else "..."
            return TOO_LARGE, f"BodyLength {value}{more} over max_message_size {limit}"
        if pos >= n:
            return None  # "9=" or its digits not all here yet
        if buf[pos] != _SOH_INT or pos == digits_start:
            return NOT_FIX, "BodyLength is not a number"
        shape = _TRAILER_SHAPE
        for k in range(min(n - body_end + 1, len(shape))):
            c = buf[body_end - 1 + k]
            want = shape[k]
            if c != want and not (want == _ANY_DIGIT and _DIGIT_0 <= c <= _DIGIT_9):
                return GARBLED, "CheckSum is not where BodyLength says the body ends"
        return None

    def _plain_frame_end(self) -> i64:
        """Where the frame at ``_pos`` in ``_data`` ends when it is plainly
        whole (``8=FIX``, BodyLength of 1 to 9 digits within the size limit,
        and ``10=`` with three digits right where BodyLength says the body
        ends); 0 when the general reading must decide.  Whenever this finds a
        frame, the general reading finds the same one."""
        data = self._data
        start = self._pos
        n: i64 = len(data)
        if n - start < 20 or data[start] != 56 or data[start + 1] != _EQUALS:
            return 0  # not "8="
        if data[start + 2] != 70 or data[start + 3] != 73 or data[start + 4] != 88:
            return 0  # not "FIX"
        pos = start + 5
        while pos < n and data[pos] != _SOH_INT:
            pos += 1
        if pos + 3 >= n or data[pos + 1] != 57 or data[pos + 2] != _EQUALS:
            return 0  # not "9="
        digits_start = pos + 3
        length, pos = _read_number(data, digits_start, n)
        if pos >= n or data[pos] != _SOH_INT or pos == digits_start:
            return 0
        if pos - digits_start > _MAX_NUMBER_LEN:
            return 0
        body_end = pos + 1 + length
        end = body_end + _TRAILER_LEN
        if body_end - start > self.max_message_size or end > n:
            return 0
        if data[body_end - 1] != _SOH_INT or data[end - 1] != _SOH_INT:
            return 0
        if data[body_end] != 49 or data[body_end + 1] != 48 or data[body_end + 2] != _EQUALS:
            return 0  # not "10="
        _, digits_end = _read_number(data, body_end + 3, end - 1)
        return end if digits_end == end - 1 else 0


def _partial_start(buf: bytes | bytearray, avail: int) -> int:
    """How many of the last ``avail`` bytes of ``buf`` could be the
    beginning of a frame."""
    for n in range(min(len(_FRAME_START) - 1, avail), 0, -1):
        if buf.endswith(_FRAME_START[:n]):
            return n
    return 0


def _tag_of(raw: bytes) -> int:
    tag = _TAG_CACHE.get(raw)
    if tag is None:
        if len(raw) > _MAX_NUMBER_LEN or not _TAG_RE.match(raw):
            raise GarbledMessage(f"field tag is not a number: {raw[:20]!r}")
        tag = int(raw)
    return tag


def parse_frame(frame: bytes) -> FixMessage:
    """Parse one frame from :class:`FrameDecoder`, verifying BodyLength and
    CheckSum; raise :class:`GarbledMessage` when it is not well formed.

    A well-formed frame whose tags are plain numbers and which carries no
    data field is read by one scan over its bytes (``scan_frame``); any
    other frame takes the split-based reading, which alone decides what is
    wrong with it.  Both give the same message for every frame the scan
    accepts (a property the codec tests check on random frames)."""
    msg = scan_frame(frame)
    if msg is None:
        return parse_frame_by_split(frame)
    return msg


# CheckSum is the last field, "10=" and three digits: the frame's last 7 bytes.
_TRAILER_LEN: Final = 7
# Per tag below its length: 1 when the tag is a data field's length.
_DATA_LENGTH_TABLE = bytes(
    1 if t in spec44.DATA_LENGTH_FIELDS else 0 for t in range(max(spec44.DATA_LENGTH_FIELDS) + 1)
)
_DIGIT_0: Final = 48
_DIGIT_9: Final = 57
_EQUALS: Final = 61
_POINT: Final = 46


def _read_number(data: bytes, pos: i64, end: i64) -> tuple[i64, i64]:
    """The number written in ASCII digits from ``pos`` of ``data`` (before
    ``end``) and the position after its last digit; it stops after
    _MAX_NUMBER_LEN + 1 digits, which callers refuse anyway."""
    value: i64 = 0
    stop = pos + _MAX_NUMBER_LEN + 1
    if stop > end:
        stop = end
    while pos < stop:
        c: i64 = data[pos]
        if c < _DIGIT_0 or c > _DIGIT_9:
            break
        value = value * 10 + c - _DIGIT_0
        pos += 1
    return value, pos


def scan_frame(frame: bytes) -> FixMessage | None:
    """The message in ``frame`` when it is plainly well formed, else None.

    Indexing bytes with native integers keeps the loop in C: no slice per
    field but the value, no tag text looked up.  Every index stays below
    ``body_end``: the byte before it is checked to be SOH first, and each
    inner loop stops at the first SOH (or earlier)."""
    n: i64 = len(frame)
    body_end: i64 = n - _TRAILER_LEN
    if body_end < 8 or frame[n - 1] != _SOH_INT or frame[body_end - 1] != _SOH_INT:
        return None
    if frame[body_end] != 49 or frame[body_end + 1] != 48 or frame[body_end + 2] != _EQUALS:
        return None  # not "10="
    checksum, digits_end = _read_number(frame, body_end + 3, n - 1)
    if digits_end != n - 1:
        return None  # not three digits
    if frame[0] != 56 or frame[1] != _EQUALS:
        return None  # not "8="
    pos: i64 = 2
    while frame[pos] != _SOH_INT:
        pos += 1
    begin_end = pos
    if pos + 3 >= body_end or frame[pos + 1] != 57 or frame[pos + 2] != _EQUALS:
        return None  # not "9="
    digits_start = pos + 3
    declared, pos = _read_number(frame, digits_start, body_end)
    if frame[pos] != _SOH_INT or pos == digits_start or pos - digits_start > _MAX_NUMBER_LEN:
        return None
    body_start = pos + 1
    if declared != body_end - body_start or body_start + 3 >= body_end:
        return None
    if frame[body_start] != 51 or frame[body_start + 1] != 53 or frame[body_start + 2] != _EQUALS:
        return None  # not "35="
    if checksum != byte_sum(frame, body_end):
        return None
    fields: list[tuple[int, bytes]] = []
    table = _DATA_LENGTH_TABLE
    table_len: i64 = len(table)
    pos = body_start
    while pos < body_end:
        # the tag's digits, read here rather than by _read_number: this loop
        # runs for every field, where a call per field is a fifth of the scan
        tag: i64 = 0
        tag_start = pos
        # one digit past the most a tag may have is enough to refuse it
        tag_stop: i64 = pos + _MAX_NUMBER_LEN + 1
        c: i64 = frame[pos]
        while _DIGIT_0 <= c <= _DIGIT_9 and pos < tag_stop:
            tag = tag * 10 + c - _DIGIT_0
            pos += 1
            c = frame[pos]
        if c != _EQUALS or pos == tag_start or pos - tag_start > _MAX_NUMBER_LEN:
            return None
        if tag < table_len:
            if table[tag]:
                return None
        elif tag in _DATA_LENGTH_TAGS:
            return None
        pos += 1
        value_start = pos
        while frame[pos] != _SOH_INT:
            pos += 1
        fields.append((tag, frame[value_start:pos]))
        pos += 1
    return FixMessage(frame[2:begin_end], fields[0][1], fields, frame)


def parse_frame_by_split(frame: bytes) -> FixMessage:
    """``parse_frame`` by splitting on SOH: the reference the scan is tested
    against, and the path that names what is wrong with a garbled frame."""
    if frame[-1:] != SOH:
        raise GarbledMessage("message does not end with SOH")
    parts = frame.split(SOH)
    parts.pop()
    if len(parts) < 4:
        raise GarbledMessage("too few fields")
    p0, p1, p2 = parts[0], parts[1], parts[2]
    if p0[:2] != b"8=" or p1[:2] != b"9=" or p2[:3] != b"35=":
        raise GarbledMessage("first three fields are not BeginString, BodyLength, MsgType")
    last = parts[-1]
    if last[:3] != b"10=":
        raise GarbledMessage("last field is not CheckSum")
    body_start = len(p0) + len(p1) + 2
    body_end = len(frame) - len(last) - 1
    declared = p1[2:]
    if not declared.isdigit() or int(declared) != body_end - body_start:
        raise GarbledMessage(
            f"BodyLength {declared.decode('latin-1')} but body has {body_end - body_start} bytes"
        )
    checksum = last[3:]
    if len(checksum) != 3 or not checksum.isdigit() or int(checksum) != byte_sum(frame, body_end):
        raise GarbledMessage(f"CheckSum {checksum.decode('latin-1')} is wrong")
    fields: list[tuple[int, bytes]] = []
    cache = _TAG_CACHE
    data_tags = _DATA_LENGTH_TAGS
    for i in range(2, len(parts) - 1):
        raw_tag, sep, value = parts[i].partition(b"=")
        if not sep:
            raise GarbledMessage("field without '='")
        tag = cache.get(raw_tag)
        if tag is None:
            tag = _tag_of(raw_tag)
        if tag in data_tags:
            return _parse_with_data(frame, p0[2:], body_start, body_end)
        fields.append((tag, value))
    return FixMessage(p0[2:], fields[0][1], fields, frame)


def _parse_with_data(frame: bytes, begin: bytes, start: int, end: int) -> FixMessage:
    """Slow path for messages carrying data fields, whose values may contain
    SOH: a data field's length is taken from the length field before it."""
    fields: list[tuple[int, bytes]] = []
    pos = start
    pending_length: tuple[int, int] | None = None
    while pos < end:
        eq = frame.find(b"=", pos, end)
        if eq < 0:
            raise GarbledMessage("field without '='")
        tag = _tag_of(frame[pos:eq])
        if pending_length is not None and pending_length[0] == tag:
            vend = eq + 1 + pending_length[1]
            if vend >= end or frame[vend] != _SOH_INT:
                raise GarbledMessage(f"data field {tag} does not match its length")
        else:
            vend = frame.find(SOH, eq + 1, end)
            if vend < 0:
                raise GarbledMessage("field without SOH")
        value = frame[eq + 1 : vend]
        pending_length = None
        data_tag = spec44.DATA_LENGTH_FIELDS.get(tag)
        if data_tag is not None and value.isdigit() and len(value) <= _MAX_NUMBER_LEN:
            pending_length = (data_tag, int(value))
        fields.append((tag, value))
        pos = vend + 1
    if not fields or fields[0][0] != 35:
        raise GarbledMessage("MsgType is not the third field")
    return FixMessage(begin, fields[0][1], fields, frame)


# --------------------------------------------------------------------------
# encoding

# zlib.adler32's low 16 bits are 1 + the sum of the bytes modulo 65521: exact
# (no modulo taken) for up to 256 bytes, since 1 + 255 * 256 < 65521.
_ADLER_CHUNK: Final = 256


def byte_sum(data: bytes, end: int) -> int:
    """The sum of ``data[:end]``'s bytes modulo 256, as CheckSum (10) wants
    it; C speed by way of zlib.adler32, 256 bytes at a time."""
    if end <= _ADLER_CHUNK:
        return ((adler32(data if end == len(data) else data[:end]) & 0xFFFF) - 1) & 255
    # slices of bytes, copied, cost less than views of them
    total = 0
    start = 0
    while start < end:
        stop = start + _ADLER_CHUNK
        if stop > end:
            stop = end
        total += (adler32(data[start:stop]) & 0xFFFF) - 1
        start = stop
    return total & 255


_CHECKSUM_FIELDS: Final = [b"10=%03d\x01" % value for value in range(256)]
"""The CheckSum field of each value, written once."""


def checksum_field(head: bytes) -> bytes:
    """The ``10=NNN<SOH>`` that ends a message whose bytes before it are
    ``head``."""
    return _CHECKSUM_FIELDS[byte_sum(head, len(head))]


CHECKSUM_FIELD: Final = 7
"""Bytes of the ``10=NNN<SOH>`` that ends every whole message."""


def split_header(msg: FixMessage, header: frozenset[int]) -> tuple[int, int]:
    """Where ``msg``'s body starts: the index in ``msg.fields`` of the first
    field after MsgType and the header tags that follow it, and that field's
    offset in ``msg.raw`` (-1 when ``msg.raw`` is not the whole message the
    fields were parsed from, or there is no body).  The offsets are summed
    from the fields as parsed, so a value holding SOH (XmlData) is stepped
    over whole."""
    raw = msg.raw
    fields = msg.fields
    start = raw.find(b"\x0135=") + 5 + len(fields[0][1])
    k = 1
    while k < len(fields) and fields[k][0] in header:
        start += len(str(fields[k][0])) + 2 + len(fields[k][1])
        k += 1
    end = len(raw) - CHECKSUM_FIELD
    if k == len(fields) or start >= end or raw[start - 1] != 1:
        return k, -1
    if not raw.startswith(b"%d=" % fields[k][0], start):  # a tag written 034=, say
        return k, -1
    if raw[end - 1 : end + 3] != b"\x0110=":
        return k, -1
    return k, start


def scan_header(
    raw: bytes, header: frozenset[int]
) -> tuple[bytes, list[tuple[int, bytes]], int] | None:
    """Read only the header of ``raw``, a whole message as written (a stored
    one, well formed): its MsgType, the header fields after MsgType in their
    order, and the offset of its body's first field; the body is not read.

    None when that cannot be done plainly (a tag not written as a plain
    number, a data field or its length in the header, no body): parse the
    message whole then."""
    end: i64 = len(raw) - CHECKSUM_FIELD
    pos: i64 = 0
    msg_type = b""
    fields: list[tuple[int, bytes]] = []
    while pos < end:
        # indexing bytes with native integers keeps the loop in C
        if raw[pos] == _DIGIT_0:
            return None
        tag, at = _read_number(raw, pos, end)
        if at == pos or at >= end or raw[at] != _EQUALS:
            return None
        start: i64 = pos
        value: i64 = at + 1
        pos = value
        while pos < end and raw[pos] != _SOH_INT:
            pos += 1
        if pos >= end:
            return None
        if tag == 35:
            msg_type = raw[value:pos]
        elif tag != 8 and tag != 9:
            if not msg_type:
                return None
            if tag not in header:
                return msg_type, fields, start
            if tag in spec44.DATA_LENGTH_FIELDS:
                return None
            fields.append((tag, raw[value:pos]))
        pos += 1
    return None


def encode_fields(fields: Iterable[tuple[int, bytes]]) -> bytes:
    """``tag=value<SOH>`` for each field, in the order given."""
    return b"".join([b"%d=%b\x01" % (t, v) for t, v in fields])


def encode_message(
    begin_string: bytes,
    msg_type: bytes,
    header: Iterable[tuple[int, bytes]],
    body: bytes,
) -> bytes:
    """A whole message: ``header`` holds header fields other than 8, 9 and 35
    (any order; written ascending), ``body`` is already encoded, in order."""
    payload = b"35=%b\x01%b%b" % (msg_type, encode_fields(sorted(header)), body)
    head = b"8=%b\x019=%d\x01%b" % (begin_string, len(payload), payload)
    return head + checksum_field(head)


def _decimal_width(value: int) -> int:
    """How many digits ``value`` (not negative) takes in decimal."""
    width = 1
    while value >= 10:
        value //= 10
        width += 1
    return width


def encode_standard(
    begin_string: bytes,
    msg_type: bytes,
    seq: int,
    sender: bytes,
    sending_time: bytes,
    target: bytes,
    body: bytes,
) -> bytes:
    """A whole message whose header is MsgType, MsgSeqNum, SenderCompID,
    SendingTime and TargetCompID alone, ``body`` already encoded: the
    same bytes as :func:`finish_message` of that payload, written in one
    piece (its BodyLength counted before)."""
    # "35=" "34=" "49=" "52=" "56=", each with its SOH: 20 bytes
    length = (
        20
        + len(msg_type)
        + _decimal_width(seq)
        + len(sender)
        + len(sending_time)
        + len(target)
        + len(body)
    )
    head = b"8=%b\x019=%d\x0135=%b\x0134=%d\x0149=%b\x0152=%b\x0156=%b\x01%b" % (
        begin_string,
        length,
        msg_type,
        seq,
        sender,
        sending_time,
        target,
        body,
    )
    return head + checksum_field(head)


def finish_message(begin_string: bytes, payload: bytes) -> bytes:
    """Wrap an encoded payload (everything from ``35=`` on) with BeginString,
    BodyLength and CheckSum."""
    head = b"8=%b\x019=%d\x01%b" % (begin_string, len(payload), payload)
    return head + checksum_field(head)


# --------------------------------------------------------------------------
# UTCTimestamp


class _TimestampFormatter:
    __slots__ = ("_last", "_last_ms", "_last_now", "_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""
        # one batch of work passes the same `now` to every message it sends,
        # and at any rate worth speaking of the next call falls in the same
        # millisecond
        self._last_now = -1.0
        self._last_ms = -1
        self._last = b""

    def __call__(self, now: float) -> bytes:
        if now == self._last_now:
            return self._last
        self._last_now = now
        # truncate to the millisecond; the microsecond of slack keeps a time
        # parsed from text (".001" is 0.000999... in binary) on its millisecond
        ms = int(now * 1000.0 + 0.001)
        if ms == self._last_ms:
            return self._last
        self._last_ms = ms
        second, millis = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second)).encode()
        stamp = self._last = b"%b.%03d" % (self._prefix, millis)
        return stamp


format_utc_timestamp = _TimestampFormatter()
"""``YYYYMMDD-HH:MM:SS.sss`` for an epoch time (cached per second)."""

_TS_RE = re.compile(rb"(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3}|\d{6}|\d{9}))?\Z")
_DATE_RE = re.compile(rb"(\d{4})(\d{2})(\d{2})\Z")
_TIME_RE = re.compile(rb"(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3}|\d{6}|\d{9}))?\Z")


def _valid_date(y: int, mo: int, d: int) -> bool:
    return 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] if y > 0 else False


_SECONDS_CACHE: dict[bytes, int | None] = {}
_SECONDS_CACHE_SIZE: Final = 4096


def _whole_seconds(text: bytes) -> int | None:
    """Epoch seconds of ``YYYYMMDD-HH:MM:SS`` (None if malformed), cached:
    consecutive messages mostly carry the same second."""
    cached = _SECONDS_CACHE.get(text, -1)
    if cached != -1:
        return cached
    m = _TS_RE.match(text)
    seconds: int | None = None
    if m is not None and m.group(7) is None:
        y, mo, d, hh, mm, ss = (int(g) for g in m.groups()[:6])
        if _valid_date(y, mo, d) and hh <= 23 and mm <= 59 and ss <= 60:
            seconds = calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0))
    if len(_SECONDS_CACHE) >= _SECONDS_CACHE_SIZE:
        _SECONDS_CACHE.clear()
    _SECONDS_CACHE[text] = seconds
    return seconds


class _TimestampReader:
    """Reads UTCTimestamps, remembering the last whole second it read:
    consecutive messages mostly carry the same one, and then only the
    fraction is left to read."""

    __slots__ = ("_prefix", "_seconds")

    def __init__(self) -> None:
        self._prefix = b""  # the last valid YYYYMMDD-HH:MM:SS read
        self._seconds = 0

    def read(self, value: bytes) -> float | None:
        n: i64 = len(value)
        if n != 17 and n != 21 and n != 24 and n != 27:
            return None
        prefix = self._prefix
        seconds = self._seconds
        if not prefix or not value.startswith(prefix):
            head = value[:17]
            found = _whole_seconds(head)
            if found is None:
                return None
            self._prefix = head
            self._seconds = seconds = found
        if n == 17:
            return float(seconds)
        if value[17] != _POINT:
            return None
        fraction, digits_end = _read_number(value, 18, n)
        if digits_end != n:
            return None
        unit = 1000.0 if n == 21 else 1000000.0 if n == 24 else 1000000000.0
        return seconds + float(fraction) / unit


_TIMESTAMPS: Final = _TimestampReader()


def parse_utc_timestamp(value: bytes) -> float | None:
    """Epoch seconds of a UTCTimestamp (``YYYYMMDD-HH:MM:SS`` with 0, 3, 6 or
    9 fractional digits), or None when it is malformed."""
    return _TIMESTAMPS.read(value)


def is_utc_date(value: bytes) -> bool:
    m = _DATE_RE.match(value)
    return m is not None and _valid_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def is_utc_time(value: bytes) -> bool:
    m = _TIME_RE.match(value)
    return (
        m is not None
        and int(m.group(1)) <= 23
        and int(m.group(2)) <= 59
        and (int(m.group(3)) <= 60)
    )
