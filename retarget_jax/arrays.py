"""Array annotations of the jit boundary (jaxtyping), with the house-style axis letters.

Stage: shared by every stage; no code runs here. The compiled problem, the solve's
output and the metric batch annotate their fields with these, and the tests check real
instances against them (``tests/test_annotations.py``): dtype kind, rank and every named
axis agreeing across the fields of one object.

Axes: ``B`` clips (a leading ``*batch`` where an object may be stacked), ``T`` frames,
``J`` canonical joints, ``Kp`` position targets, ``Kr`` orientation targets, ``L`` limbs,
``F`` feet, ``Ks`` sole points, ``P`` ground points, ``C`` self-collision pairs, ``Nb``
robot bodies, ``n`` actuated joints, ``nq = 7 + n``, ``nv = 6 + n``.

Fields may hold jax or numpy arrays (the host builds and pads problems in numpy), so the
array type is ``jax.Array | numpy.ndarray``.
"""

from __future__ import annotations

import dataclasses
import types
import typing

import equinox as eqx
import jax
import numpy as np
from jaxtyping import AbstractArray, Float, Int, jaxtyped

#: a jax array on device or a numpy array on the host
AnyArray = jax.Array | np.ndarray

__all__ = ["AnyArray", "Float", "Int", "annotation_errors", "unannotated_arrays"]


def _array_types(hint) -> tuple:
    """The jaxtyping array types of an annotation (a Union of them for AnyArray), else ()."""
    members = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    if isinstance(hint, types.UnionType):
        members = typing.get_args(hint)
    return tuple(m for m in members if isinstance(m, type) and issubclass(m, AbstractArray))


def annotation_errors(module: eqx.Module, where: str = "") -> list[str]:
    """Fields of ``module`` (and of the modules inside it) that do not match their jaxtyping
    annotation: dtype kind, rank, and named axes that must agree across one module's
    fields (each nested module is checked on its own axes). Empty when all match."""
    hints = typing.get_type_hints(type(module))
    nested: list[tuple[str, eqx.Module]] = []
    name = where or type(module).__name__

    @jaxtyped(typechecker=None)  # one memo of axis sizes for this module's fields
    def check() -> list[str]:
        bad = []
        for f in dataclasses.fields(module):
            value = getattr(module, f.name)
            if isinstance(value, eqx.Module):
                nested.append((f"{name}.{f.name}", value))
                continue
            expected = _array_types(hints.get(f.name))
            if expected and not any(isinstance(value, t) for t in expected):
                shape = getattr(value, "shape", None)
                dtype = getattr(value, "dtype", type(value).__name__)
                kind = expected[0].__name__.split("[")[0]
                bad.append(
                    f"{name}.{f.name}: expected {kind} '{expected[0].dim_str}', found shape {shape} dtype {dtype}"
                )
        return bad

    errors = check()
    for sub_where, sub in nested:
        errors += annotation_errors(sub, sub_where)
    return errors


def unannotated_arrays(cls: type) -> list[str]:
    """Fields of an eqx.Module class that hold arrays without a jaxtyping annotation (their
    annotation names ``jnp.ndarray`` / ``np.ndarray`` / ``jax.Array`` bare)."""
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if hints.get(f.name) in (jax.Array, np.ndarray) or str(hints.get(f.name)).endswith("ndarray'>")
    ]
