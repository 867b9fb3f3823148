"""Type-check the package with mypy against a recorded baseline.

    python .ci/mypy_baseline.py            # fail on any error not in the baseline
    python .ci/mypy_baseline.py --update   # rewrite the baseline (after fixing errors)

mypy runs with the settings of ``[tool.mypy]`` in pyproject.toml. Each error is keyed by
file, message and code, without its line number, so moving code does not churn the
baseline. New errors fail the check and are printed; errors that are gone are listed so
the baseline can shrink (``--update``). The baseline, ``.ci/mypy-baseline.txt``, records
what the package had when the checker was introduced; docs/testing.md says why it exists.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "mypy-baseline.txt"
LINE = re.compile(r"^(?P<file>[^:]+):\d+(?::\d+)?: error: (?P<msg>.*)$")


def run_mypy() -> collections.Counter[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "retarget_jax", "--no-error-summary", "--no-pretty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0, 1):
        sys.exit(f"mypy failed to run (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    keys = collections.Counter()
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            keys[f"{m['file']}: {m['msg']}"] += 1
    return keys


def main(argv: list[str]) -> int:
    found = run_mypy()
    if "--update" in argv:
        BASELINE.write_text("".join(f"{k}\n" for k in sorted(found.elements())))
        print(f"baseline: {sum(found.values())} errors in {len({k.split(':')[0] for k in found})} files")
        return 0
    base = collections.Counter(BASELINE.read_text().splitlines()) if BASELINE.exists() else collections.Counter()
    new, gone = found - base, base - found
    for k in sorted(gone.elements()):
        print(f"fixed (remove from the baseline with --update): {k}")
    for k in sorted(new.elements()):
        print(f"NEW: {k}")
    print(
        f"mypy: {sum(found.values())} errors, baseline {sum(base.values())}, new {sum(new.values())}, "
        f"fixed {sum(gone.values())}"
    )
    return 1 if new else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
