"""Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date."""
from __future__ import annotations

import datetime as dt

import pytest

from importcore.net.retry import parse_retry_after

NOW = dt.datetime(2024, 1, 1, 0, 0, 0, tzinfo=dt.timezone.utc)

CASES = [
    # id, header value, seconds
    ("seconds", "120", 120.0),
    ("zero", "0", 0.0),
    ("padded", " 5 ", 5.0),
    ("leading-zeros", "007", 7.0),
    ("large", "86400", 86400.0),
    ("imf-fixdate-future", "Mon, 01 Jan 2024 00:00:30 GMT", 30.0),
    ("imf-fixdate-past", "Sun, 31 Dec 2023 23:00:00 GMT", 0.0),
    ("imf-fixdate-now", "Mon, 01 Jan 2024 00:00:00 GMT", 0.0),
    ("rfc850", "Monday, 01-Jan-24 00:01:00 GMT", 60.0),
    ("asctime", "Mon Jan  1 00:00:30 2024", 30.0),
    ("no-zone-is-utc", "Mon, 01 Jan 2024 00:00:30", 30.0),
    ("offset", "Mon, 01 Jan 2024 02:00:30 +0200", 30.0),
    ("far-future", "Tue, 02 Jan 2024 00:00:00 GMT", 86400.0),
    ("empty", "", None),
    ("none", None, None),
    ("blank", "   ", None),
    ("garbage", "soon", None),
    ("negative", "-5", None),
    ("fraction", "1.5", None),
    ("exponent", "1e3", None),
    ("hex", "0x10", None),
    ("bad-day", "Mon, 32 Jan 2024 00:00:30 GMT", None),
    ("superscript-digit", "\u00b9", None),  # str.isdigit() is true for it; float() is not
    ("arabic-indic-digit", "\u0663", None),
    ("date-garbage", "Mon, 01 Foo 2024 00:00:30 GMT", None),
]


@pytest.mark.parametrize(("value", "seconds"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


def test_http_date_without_now_uses_the_clock():
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=100)
    got = parse_retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert got is not None and 90 <= got <= 100
