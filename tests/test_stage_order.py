"""Imports run down the pipeline's stages, never up (the layout of retarget_jax, checked).

Every module of the package is parsed with :mod:`ast` (nothing is imported) and each of
its ``retarget_jax`` imports, at the top of the file or inside a function, is checked
against :data:`STAGES`: a module may import its own stage and the stages before it.
Imports under ``if TYPE_CHECKING:`` (annotations only; they never run) are not counted.

A module's stage is that of its first name under ``retarget_jax`` (``retarget_jax.solve.batch``
is ``solve``), so importing any module of a package never runs a later stage through the
package's ``__init__``. A new top-level module or subpackage must be given a stage here.

Function-local imports of the package are allowed in the command-line drivers, which defer
their heavy imports so ``--help`` and argument errors answer at once; anywhere else they
hide a dependency (or a cycle), so each one needs an entry in :data:`LOCAL_IMPORTS_ALLOWED`
saying why.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "retarget_jax"

#: Stage of each top-level name under ``retarget_jax``, in pipeline order. Equal numbers
#: are one stage (they may import each other); base modules (0) hold what every stage uses
#: and import nothing of the pipeline.
STAGES: dict[str, int] = {
    # base: array annotations, errors, format names, array math, shipped files and file
    # primitives, length buckets
    "": 0,  # retarget_jax/__init__.py
    "arrays": 0,  # jaxtyping annotations of the jit boundary; no code runs there
    "errors": 0,
    "formats": 0,
    "rotations": 0,
    "xla_flags": 0,
    "files": 0,
    "buckets": 0,
    # motion file -> HumanMotion (host)
    "motion": 1,
    "body_models": 1,
    # robot models, jit kinematics and collision geometry
    "robots": 2,
    # HumanMotion + recipe + robot -> CompiledProblem
    "problem": 3,
    # the jitted solve and what it returns
    "solve": 4,
    "result": 4,
    # the whole path as one function (prepare, solve, finish a clip)
    "pipeline": 5,
    # quality figures of results
    "metrics": 6,
    # readers and writers of results and robot trajectories, the BVH writer
    "io": 7,
    # many files, resumably
    "batch": 8,
    "manifest": 8,
    # products built from batches of results
    "dataset": 9,
    "motionlib": 9,
    "render": 9,
    "report": 9,
    "calibrate": 9,
    # drivers: typed run config, Hydra entry point, command line
    "config": 10,
    "run": 10,
    "cli": 10,
}

#: Modules that defer their package imports to the function that needs them, for start-up
#: time: ``retarget-jax --help`` (and each subcommand's parser) must not import JAX,
#: MuJoCo or the solver, and the Hydra driver sets the XLA flags before JAX starts.
DRIVERS: frozenset[str] = frozenset(
    {
        "retarget_jax.cli",
        "retarget_jax.run",
        "retarget_jax.dataset.cli",
        "retarget_jax.dataset.run",
        "retarget_jax.motionlib.cli",
        "retarget_jax.motionlib.run",
        "retarget_jax.report.cli",
        "retarget_jax.calibrate.cli",
    }
)

#: (module, imported module) -> why the import sits inside a function there.
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    (
        "retarget_jax.report.build",
        "retarget_jax.render",
    ): "optional: the report is written without stills (and says why) when the renderer cannot be imported",
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def stage_key(module: str) -> str:
    """``retarget_jax.solve.batch`` -> ``solve``; ``retarget_jax`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_imports(
    source: str, module: str, *, is_package: bool = False, known: frozenset[str] = frozenset()
) -> list[tuple[int, str, bool]]:
    """``(line, imported module, inside a function)`` of every ``retarget_jax`` import of a
    module's source. ``from retarget_jax.x import y`` names ``retarget_jax.x.y`` when that is
    a module of ``known``, else ``retarget_jax.x``; relative imports are resolved."""
    tree = ast.parse(source)
    typing_only: set[int] = set()  # ``if TYPE_CHECKING:`` blocks never run
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for b in node.body for n in ast.walk(b))
    local: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            local.update(id(n) for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom))
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            targets = [f"{parent}.{a.name}" if f"{parent}.{a.name}" in known else parent for a in node.names]
        else:
            continue
        for t in dict.fromkeys(targets):
            if t == "retarget_jax" or t.startswith("retarget_jax."):
                out.append((node.lineno, t, id(node) in local))
    return sorted(out)


def stage_violations(sources: dict[str, tuple[str, bool]], stages: dict[str, int] = STAGES) -> list[str]:
    """Every import of a later stage, and every module without a stage, as
    ``module:line imports target (stage a -> stage b)``. ``sources``: module -> (source,
    is a package)."""
    known = frozenset(sources)
    bad: list[str] = []
    for mod, (src, is_pkg) in sorted(sources.items()):
        key = stage_key(mod)
        if key not in stages:
            bad.append(f"{mod}: no stage for '{key}' in STAGES")
            continue
        for line, target, _ in package_imports(src, mod, is_package=is_pkg, known=known):
            tkey = stage_key(target)
            if tkey not in stages:
                bad.append(f"{mod}:{line} imports {target}: no stage for '{tkey}' in STAGES")
            elif stages[tkey] > stages[key]:
                bad.append(
                    f"{mod}:{line} imports {target} (stage {key or 'base'} = {stages[key]} -> {tkey} = {stages[tkey]})"
                )
    return bad


def local_imports(sources: dict[str, tuple[str, bool]]) -> dict[tuple[str, str], list[int]]:
    """(module, imported module) -> lines, for package imports inside functions outside
    the drivers."""
    known = frozenset(sources)
    out: dict[tuple[str, str], list[int]] = {}
    for mod, (src, is_pkg) in sorted(sources.items()):
        if mod in DRIVERS:
            continue
        for line, target, inside in package_imports(src, mod, is_package=is_pkg, known=known):
            if inside:
                out.setdefault((mod, target), []).append(line)
    return out


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    return {module_name(p, root): (p.read_text(), p.name == "__init__.py") for p in sorted(root.rglob("*.py"))}


@pytest.fixture(scope="module")
def sources():
    return package_sources()


def test_every_import_runs_down_the_stages(sources):
    bad = stage_violations(sources)
    assert not bad, "imports that run back up the stages:\n" + "\n".join(bad)


def test_function_local_package_imports_only_in_drivers_or_with_a_reason(sources):
    found = local_imports(sources)
    unexplained = [
        f"{m}:{','.join(map(str, lines))} imports {t}"
        for (m, t), lines in found.items()
        if (m, t) not in LOCAL_IMPORTS_ALLOWED
    ]
    assert not unexplained, (
        "package imports inside functions outside the drivers (move them to the top, "
        "or add the pair to LOCAL_IMPORTS_ALLOWED with the reason):\n" + "\n".join(unexplained)
    )
    stale = sorted(set(LOCAL_IMPORTS_ALLOWED) - set(found))
    assert not stale, f"LOCAL_IMPORTS_ALLOWED names imports that are gone: {stale}"


def test_the_checker_catches_a_back_import_at_the_top_and_inside_a_function():
    clean = {
        "retarget_jax": ("", True),
        "retarget_jax.motion": ("", True),
        "retarget_jax.motion.reader": ("from retarget_jax.errors import MotionFormatError\n", False),
        "retarget_jax.solve": ("from retarget_jax.solve.step import step\n", True),
        "retarget_jax.solve.step": ("from retarget_jax.motion import reader\n", False),
        "retarget_jax.errors": ("", False),
    }
    assert stage_violations(clean) == []
    top = dict(clean)
    top["retarget_jax.motion.reader"] = ("from retarget_jax.solve.step import step\n", False)
    assert stage_violations(top) == [
        "retarget_jax.motion.reader:1 imports retarget_jax.solve.step (stage motion = 1 -> solve = 4)"
    ]
    hidden = dict(clean)
    hidden["retarget_jax.motion.reader"] = ("def read():\n    from ..solve import step\n    return step\n", False)
    assert stage_violations(hidden) == [
        "retarget_jax.motion.reader:2 imports retarget_jax.solve.step (stage motion = 1 -> solve = 4)"
    ]
    assert local_imports(hidden) == {("retarget_jax.motion.reader", "retarget_jax.solve.step"): [2]}
    typing_only = dict(clean)
    typing_only["retarget_jax.motion.reader"] = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from retarget_jax.solve.step import step\n",
        False,
    )
    assert stage_violations(typing_only) == []
    unranked = dict(clean)
    unranked["retarget_jax.helpers"] = ("import retarget_jax.motion\n", False)
    assert stage_violations(unranked) == ["retarget_jax.helpers: no stage for 'helpers' in STAGES"]


def test_the_checker_fails_on_a_back_import_added_to_a_real_module(sources):
    """The real package plus one line: the motion stage reaching for the solver."""
    src, is_pkg = sources["retarget_jax.motion.canonical"]
    edited = dict(sources)
    edited["retarget_jax.motion.canonical"] = (src + "\n\ndef _late():\n    import retarget_jax.solve.batch\n", is_pkg)
    bad = stage_violations(edited)
    assert len(bad) == 1 and bad[0].startswith("retarget_jax.motion.canonical:")
    assert bad[0].endswith("imports retarget_jax.solve.batch (stage motion = 1 -> solve = 4)")


def test_the_command_line_parser_starts_without_jax_or_mujoco():
    """What the drivers' deferred imports buy: ``retarget-jax --help`` (every subcommand's
    parser) loads none of the heavy stages."""
    code = (
        "import sys, retarget_jax.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('jax', 'mujoco', 'retarget_jax.solve', 'retarget_jax.robots') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
