"""Licensed SMPL / SMPL-H / SMPL-X model files -> betas-aware rest skeletons (host, numpy).

Only four fields of a model file are read: ``v_template`` (V, 3), ``shapedirs``
(V, 3, S), ``J_regressor`` (J, V; dense, or scipy.sparse in ``.pkl`` files) and
``kintree_table`` (2, J). The rest joints of a body with shape ``betas`` are

    J = J_regressor @ (v_template + shapedirs[..., :nb] @ betas[:nb])

for the 22 body joints; the regressor is applied once at load time (the map is linear),
so a model keeps a (22, 3) template and (22, 3, S) joint shape directions only.
``nb`` is the number of betas the file has shape directions for: S for SMPL and SMPL-H,
300 for SMPL-X files with 400 directions (300 shape, 100 expression) and 10 for older
SMPL-X files with 20 (the split the smplx package uses). Expression is not used.

``.npz`` files are read with ``allow_pickle=False`` (only the four fields are touched, so
official SMPL-X files whose other entries are pickled objects load too). ``.pkl`` files
go through :func:`retarget_jax.files.safe_pickle.restricted_load` with scipy.sparse allowed
and Python 2 strings decoded as latin1; a file holding chumpy objects is refused with a
message saying how to convert it.

File lookup (:func:`find_model_file`), in ``body_model_dir``, names matched without
regard to case, ``.npz`` before ``.pkl``:

    <family>/<PREFIX>_<GENDER>.npz|.pkl   (the smplx package's layout, e.g. smplx/SMPLX_NEUTRAL.npz)
    <PREFIX>_<GENDER>.npz|.pkl            (files directly in the folder, e.g. SMPLH_MALE.pkl)
    <family>/<gender>/model.npz           (AMASS / human_body_prior layout, e.g. smplh/male/model.npz)

with PREFIX = SMPL, SMPLH or SMPLX. A missing male or female file falls back to the
neutral one with a warning. ``body_model_dir`` may also name one model file directly.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from pathlib import Path

import numpy as np

from retarget_jax.body_models.topology import (
    FAMILIES,
    GENDERS,
    NUM_BODY_JOINTS,
    SMPL_BODY_PARENTS,
    BodySkeleton,
)
from retarget_jax.errors import MotionFormatError, UnknownNameError
from retarget_jax.files.npz import load_npz
from retarget_jax.files.safe_pickle import restricted_load

__all__ = [
    "MODEL_PREFIX",
    "MODEL_JOINTS",
    "BodyModel",
    "model_file_candidates",
    "find_model_file",
    "load_body_model",
    "model_skeleton",
]

#: Family -> file name prefix of the official files.
MODEL_PREFIX = {"smpl": "SMPL", "smplh": "SMPLH", "smplx": "SMPLX"}
#: Joints in the official files of each family.
MODEL_JOINTS = {"smpl": 24, "smplh": 52, "smplx": 55}
_FIELDS = ("v_template", "shapedirs", "J_regressor", "kintree_table")


@dataclasses.dataclass(frozen=True)
class BodyModel:
    """The joint-space part of a model file.

    Attributes:
        path: the model file.
        family: "smpl", "smplh" or "smplx".
        joint_template: (22, 3) ``J_regressor @ v_template`` for the body joints.
        joint_shapedirs: (22, 3, nb) ``J_regressor @ shapedirs`` over the shape directions.
        num_joints: number of joints in the file (24, 52, 55...).
    """

    path: str
    family: str
    joint_template: np.ndarray
    joint_shapedirs: np.ndarray
    num_joints: int

    @property
    def num_betas(self) -> int:
        return int(self.joint_shapedirs.shape[-1])

    def rest_joints(self, betas: np.ndarray | None = None) -> np.ndarray:
        """(22, 3) rest joints for ``betas``; betas past :attr:`num_betas` are ignored
        (with a warning when they are not zero)."""
        J = self.joint_template.copy()
        if betas is None:
            return J
        b = np.asarray(betas, dtype=np.float64).reshape(-1)
        nb = min(b.size, self.num_betas)
        if np.any(b[nb:] != 0):
            warnings.warn(
                f"{self.path}: the model has {self.num_betas} shape directions; betas {nb}..{b.size - 1} are ignored",
                stacklevel=2,
            )
        return J + self.joint_shapedirs[..., :nb] @ b[:nb]


def model_file_candidates(family: str, gender: str) -> list[str]:
    """Relative paths tried for one family and gender, in order of preference."""
    p, g = MODEL_PREFIX[family], gender.upper()
    return [
        f"{family}/{p}_{g}.npz",
        f"{family}/{p}_{g}.pkl",
        f"{p}_{g}.npz",
        f"{p}_{g}.pkl",
        f"{family}/{gender}/model.npz",
    ]


def _resolve(base: Path, rel: str) -> Path | None:
    """``base / rel`` matching each component without regard to case, or None."""
    cur = base
    for part in rel.split("/"):
        nxt = cur / part
        if not nxt.exists():
            try:
                matches = sorted(e for e in os.listdir(cur) if e.lower() == part.lower())
            except OSError:
                return None
            if not matches:
                return None
            nxt = cur / matches[0]
        cur = nxt
    return cur if cur.is_file() else None


def find_model_file(body_model_dir: str | os.PathLike, family: str, gender: str = "neutral") -> tuple[Path, str]:
    """The model file for a family and gender: (path, gender found).

    Raises:
        FileNotFoundError: ``body_model_dir`` does not exist, or holds no file for the
            gender nor the neutral fallback (the message lists the names tried).
    """
    if family not in FAMILIES:
        raise UnknownNameError("SMPL family", family, FAMILIES)
    if gender not in GENDERS:
        raise UnknownNameError("gender", gender, GENDERS)
    base = Path(body_model_dir)
    if base.is_file():
        return base, gender
    if not base.is_dir():
        raise FileNotFoundError(f"body model folder not found: {base}")
    tried: list[str] = []
    for g in (gender, "neutral") if gender != "neutral" else ("neutral",):
        for rel in model_file_candidates(family, g):
            tried.append(rel)
            found = _resolve(base, rel)
            if found is not None:
                if g != gender:
                    warnings.warn(
                        f"{base}: no {family} model file for gender '{gender}' "
                        f"({', '.join(model_file_candidates(family, gender))}); "
                        f"using the neutral one {found}",
                        stacklevel=2,
                    )
                return found, g
    raise FileNotFoundError(
        f"no {family} model file for gender '{gender}' in {base}; looked for (any case): {', '.join(tried)}"
    )


def _read_pkl(path: str) -> dict[str, object]:
    data = restricted_load(path, allow_scipy_sparse=True, encoding="latin1")
    if not isinstance(data, dict):
        raise MotionFormatError(path, f"expected a dict of arrays, found {type(data).__name__}")
    return data


def _numeric(path: str, key: str, value: object, ndim: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.ndim not in ndim:
        raise MotionFormatError(
            path,
            f"expected a numeric array with {' or '.join(map(str, ndim))} "
            f"dimensions, found dtype {a.dtype} shape {a.shape}",
            field=key,
        )
    if not np.isfinite(a).all():
        raise MotionFormatError(path, "contains NaN or infinite values", field=key)
    return a


def _shape_dim(family: str, S: int) -> int:
    if family == "smplx":  # 300 shape + 100 expression, or the older 10 + 10
        return 300 if S >= 400 else min(S, 10)
    return min(S, 300)


def load_body_model(path: str | os.PathLike, family: str) -> BodyModel:
    """Read the joint-space part of a model file (``.npz`` or ``.pkl``).

    Raises:
        FileNotFoundError: the file does not exist.
        MotionFormatError: unreadable file, missing field, wrong shape, a refused pickle
            class (chumpy included), or a kinematic tree that is not the SMPL body's.
    """
    path = os.fspath(path)
    if family not in FAMILIES:
        raise UnknownNameError("SMPL family", family, FAMILIES)
    st = os.stat(path)  # FileNotFoundError before anything else
    return _load_cached(path, family, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, family: str, _mtime_ns: int, _size: int) -> BodyModel:
    data = _read_pkl(path) if path.lower().endswith(".pkl") else load_npz(path, _FIELDS)
    missing = [k for k in _FIELDS if k not in data]
    if missing:
        raise MotionFormatError(path, f"not a body model file: missing {', '.join(missing)}", field=missing[0])
    v_template = _numeric(path, "v_template", data["v_template"], (2,))
    V = v_template.shape[0]
    if v_template.shape != (V, 3):
        raise MotionFormatError(path, f"expected (V, 3), found {v_template.shape}", field="v_template")
    shapedirs = _numeric(path, "shapedirs", data["shapedirs"], (2, 3))
    if shapedirs.ndim == 2:
        shapedirs = shapedirs[:, :, None]
    if shapedirs.shape[:2] != (V, 3):
        raise MotionFormatError(path, f"expected ({V}, 3, S), found {shapedirs.shape}", field="shapedirs")
    kintree = _numeric(path, "kintree_table", data["kintree_table"], (2,))
    n_joints = kintree.shape[1] if kintree.shape[0] == 2 else 0
    if n_joints < NUM_BODY_JOINTS:
        raise MotionFormatError(path, f"expected (2, J) with J >= 22, found {kintree.shape}", field="kintree_table")
    if n_joints != MODEL_JOINTS[family]:
        warnings.warn(
            f"{path}: {n_joints} joints, but {family} model files have "
            f"{MODEL_JOINTS[family]}; is it the right family's file?",
            stacklevel=3,
        )
    parents = kintree[0, :NUM_BODY_JOINTS].astype(np.int64)
    if tuple(parents[1:]) != SMPL_BODY_PARENTS[1:]:
        raise MotionFormatError(
            path,
            f"the first 22 joints are not the SMPL body tree: parents "
            f"{parents[1:].tolist()}, expected {list(SMPL_BODY_PARENTS[1:])}",
            field="kintree_table",
        )
    regressor = data["J_regressor"]
    if hasattr(regressor, "tocsr") and hasattr(regressor, "nnz"):  # scipy.sparse from the pkl
        if regressor.shape != (n_joints, V):
            raise MotionFormatError(path, f"expected ({n_joints}, {V}), found {regressor.shape}", field="J_regressor")
        rows = regressor.tocsr()[:NUM_BODY_JOINTS]
        if not np.isfinite(rows.data).all():
            raise MotionFormatError(path, "contains NaN or infinite values", field="J_regressor")
    else:
        rows = _numeric(path, "J_regressor", regressor, (2,))
        if rows.shape != (n_joints, V):
            raise MotionFormatError(path, f"expected ({n_joints}, {V}), found {rows.shape}", field="J_regressor")
        rows = rows[:NUM_BODY_JOINTS].astype(np.float64)
    nb = _shape_dim(family, shapedirs.shape[2])
    dirs = shapedirs[:, :, :nb].astype(np.float64).reshape(V, 3 * nb)
    template = np.asarray(rows @ v_template.astype(np.float64))
    joint_dirs = np.asarray(rows @ dirs).reshape(NUM_BODY_JOINTS, 3, nb)
    template.setflags(write=False)
    joint_dirs.setflags(write=False)
    return BodyModel(
        path=path, family=family, joint_template=template, joint_shapedirs=joint_dirs, num_joints=int(n_joints)
    )


def model_skeleton(
    body_model_dir: str | os.PathLike, family: str, gender: str = "neutral", betas: np.ndarray | None = None
) -> BodySkeleton:
    """Rest skeleton of a family, gender and shape from the user's model files."""
    path, found_gender = find_model_file(body_model_dir, family, gender)
    model = load_body_model(path, family)
    return BodySkeleton(family=family, rest_joints=model.rest_joints(betas), source=str(path), gender=found_gender)
