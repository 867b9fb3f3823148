"""Docstrings and comments point at names that exist.

Every fully qualified cross-reference in the package's source, a Sphinx role such as
:func:`retarget_jax.pipeline.retarget_motions` (with or without ``~``), must name a
module, or an attribute reachable from one. A rename or a move that leaves such a
pointer behind fails here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "retarget_jax"
ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc):`~?(retarget_jax(?:\.\w+)+)`")


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_qualified_reference_in_the_package_resolves():
    broken = [
        f"{p.relative_to(PACKAGE.parent)}:{i}: {m.group(1)}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        for m in ROLE.finditer(line)
        if not resolves(m.group(1))
    ]
    assert not broken, "references to names that do not exist:\n" + "\n".join(broken)
