"""Export a motion library in ProtoMotions' packaged MotionLib layout (stage: motion
libraries, host code; needs torch, imported only here).

The layout is read from the public ProtoMotions source, ``protomotions/components/
motion_lib.py`` (``MotionLib.save_to_file`` / ``load_from_file``, NVlabs/ProtoMotions at
commit 607ca7a0): one ``torch.save``'d dict of the library's fields,

=====================  ===========  ==================================================
key                    shape        from this library
=====================  ===========  ==================================================
gts                    (N, B, 3)    body_pos_w (float32)
grs                    (N, B, 4)    body_quat_w, **reordered to xyzw** (ProtoMotions'
                                    common state is w-last)
gvs                    (N, B, 3)    body_lin_vel_w
gavs                   (N, B, 3)    body_ang_vel_w
dps, dvs               (N, n)       dof_pos, dof_vel
contacts               (N, B)       bool: this library's foot contacts on their bodies,
                                    False for every other body
length_starts          (M,)         motion_start (int64)
motion_num_frames      (M,)         int64
motion_lengths         (M,)         seconds, (frames - 1) / fps (float32)
motion_dt              (M,)         1 / fps (float32)
motion_weights         (M,)         float32
motion_files           tuple[str]   motion names (file @ slice)
lrs                    (N, B, 4)    body-model targets only: each body's rotation
                                    relative to its parent (the root's: global), xyzw
=====================  ===========  ==================================================

Only tensors, a tuple and strings: the file loads with ``torch.load(path,
weights_only=True)`` (no code runs on load). Body and DoF order are the library's: for
the ``smpl`` target the 24 bodies of ProtoMotions' SMPL humanoid in its MJCF order, for
robots the MJCF's bodies without the world body (check them against the robot config
of the trainer: ProtoMotions' own robot configs may list a different subset).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retarget_jax.errors import ConfigError
from retarget_jax.files.atomic import atomic_write
from retarget_jax.motionlib.library import MotionLibrary, load_library
from retarget_jax.motionlib.states import figure
from retarget_jax.rotations import quat_conj, quat_mul

__all__ = ["protomotions_dict", "export_protomotions"]


def _xyzw(q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(q[..., [1, 2, 3, 0]], dtype=np.float32)


def _parents(lib: MotionLibrary) -> np.ndarray | None:
    """Parent of each body for a body-model library (from its figure), else None."""
    model = lib.metadata.get("model", {})
    if model.get("kind") != "body_model":
        return None
    fig = figure(model["family"])
    if fig.body_names != lib.body_names:
        return None
    return fig.parents


def protomotions_dict(lib: MotionLibrary) -> dict:
    """The dict ProtoMotions' ``MotionLib.load_from_file`` expects (see the module docstring)."""
    try:
        import torch
    except ImportError:
        raise ConfigError("the ProtoMotions export needs torch (pip install torch)") from None
    f = lib.frames
    N, B = f["body_pos_w"].shape[:2]
    contacts = np.zeros((N, B), bool)
    for k, name in enumerate(lib.contact_body_names):
        contacts[:, lib.body_names.index(name)] = f["contacts"][:, k]
    t = lambda a, dt=torch.float32: torch.from_numpy(np.ascontiguousarray(a)).to(dt)  # noqa: E731
    out = {
        "gts": t(f["body_pos_w"]),
        "grs": t(_xyzw(f["body_quat_w"])),
        "gvs": t(f["body_lin_vel_w"]),
        "gavs": t(f["body_ang_vel_w"]),
        "dps": t(f["dof_pos"]),
        "dvs": t(f["dof_vel"]),
        "contacts": torch.from_numpy(contacts),
        "length_starts": t(lib.motion_start, torch.long),
        "motion_num_frames": t(lib.motion_num_frames, torch.long),
        "motion_lengths": t(lib.motion_duration_s),
        "motion_dt": t(1.0 / lib.motion_fps),
        "motion_weights": t(lib.motion_weight),
        "motion_files": tuple(lib.motion_name),
    }
    parents = _parents(lib)
    if parents is not None:
        q = f["body_quat_w"].astype(np.float64)
        local = q.copy()
        local[:, 1:] = quat_mul(quat_conj(q[:, parents[1:]]), q[:, 1:])
        out["lrs"] = t(_xyzw(local))
    return out


def export_protomotions(library: str | os.PathLike | MotionLibrary, path: str | os.PathLike) -> Path:
    """Write ``library`` (a path or a loaded library) as ProtoMotions' packaged ``.pt``,
    atomically; returns the path."""
    lib = library if isinstance(library, MotionLibrary) else load_library(library)
    path = Path(path)
    if path.suffix != ".pt":
        raise ConfigError(f"{path}: ProtoMotions loads packaged libraries from .pt files")
    data = protomotions_dict(lib)  # ConfigError when torch is missing
    import torch

    with atomic_write(path, suffix=".pt") as fh:
        torch.save(data, fh)
    return path
