"""Hardening tests: print how many fuzz examples were tried, per target, at the end."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    from fuzz_support import COUNTS, EXAMPLES

    if not COUNTS:
        return
    terminalreporter.section("fuzz examples tried")
    for target, count in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{target:<44} {count:>7}")
    terminalreporter.write_line(
        f"{'TOTAL':<44} {sum(COUNTS.values()):>7}  (max_examples={EXAMPLES} per property; "
        "raise with PREFECT_TINKER_FUZZ_EXAMPLES)"
    )
