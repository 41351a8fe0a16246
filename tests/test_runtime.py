"""The glibc tuning that keeps large freed buffers for reuse applies on Linux and can be turned off."""

from __future__ import annotations

import sys

import pytest

from colorgan.runtime import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_on_glibc_and_obeys_the_switch(monkeypatch):
    monkeypatch.setenv("COLORGAN_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("COLORGAN_KEEP_FREED_MEMORY")
    assert keep_freed_memory() is True
