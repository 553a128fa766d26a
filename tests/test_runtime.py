"""Process-level runtime tuning."""

from __future__ import annotations

import ctypes
import sys

import pytest

from core import runtime


def test_trim_threshold_fits_a_c_int() -> None:
    # mallopt takes a C int; a wider value would wrap (1 << 40 became 0 = trim on every free).
    assert 0 < runtime._TRIM_THRESHOLD <= 2**31 - 1
    assert ctypes.c_int(runtime._TRIM_THRESHOLD).value == runtime._TRIM_THRESHOLD


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_allocator_applies_and_is_idempotent() -> None:
    assert runtime.tune_allocator() is True
    assert runtime.tune_allocator() is True
