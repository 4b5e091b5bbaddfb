"""Transfer progress: drawn on a terminal, quiet otherwise."""

from __future__ import annotations

import io

from cachesync.progress import Progress, human


def test_progress_draws_bytes_total_and_rate_when_enabled():
    out = io.StringIO()
    p = Progress("push team/x", total=4 * 1024 * 1024, stream=out, enabled=True, interval=0)
    p(1024 * 1024)
    p(1024 * 1024)
    p.close()
    text = out.getvalue()
    assert "push team/x: 2.0 MiB/4.0 MiB" in text and "/s" in text and text.endswith("\n")
    assert p.done == 2 * 1024 * 1024


def test_progress_is_quiet_when_not_a_terminal():
    out = io.StringIO()  # isatty() is False
    p = Progress("pull", total=10, stream=out)
    p(10)
    p.close()
    assert out.getvalue() == "" and p.done == 10


def test_human_sizes():
    assert [human(n) for n in (5, 2048, 3 * 1024**3)] == ["5 B", "2.0 KiB", "3.0 GiB"]
