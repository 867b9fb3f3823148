"""Offscreen rendering (retarget_jax.render): stills and videos of results, no display.

The images are judged by what is in them: not blank, the robot present (MuJoCo's
segmentation pass says which pixels are the robot) and moving between frames, stance
feet green and penetrating geoms red where the geometry says so, one video frame per
clip frame. The solver runs once, on the embedded demo walk in the 64-frame bucket that
tests/test_sources_e2e.py compiles too.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from inputs import result_of
from PIL import Image

from retarget_jax.cli import main
from retarget_jax.errors import ConfigError, RenderError
from retarget_jax.files.atomic import is_temp_file
from retarget_jax.io import load_result, save_result
from retarget_jax.render import (
    RenderOptions,
    ResultRenderer,
    gl_backend,
    parse_frames,
    render_contact_sheet,
    render_stills,
    render_video,
    skeleton_from_motion,
    skeleton_from_result,
)
from retarget_jax.result import RetargetingResult, SolveStatus

SMALL = RenderOptions(width=240, height=180)
# ffmpeg (the encoder, the frame counter) is started by fork+exec, which JAX warns of needlessly
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def _standing(robot, T: int, dz: np.ndarray | None = None, **extra) -> RetargetingResult:
    """The robot at its default pose with its lowest geom on the floor, lowered by ``dz``."""
    m = robot.mj_model
    root = (
        np.tile([0.0, 0.0, robot.standing_height], (T, 1))
        - np.c_[np.zeros((T, 2)), dz if dz is not None else np.zeros(T)]
    )
    quat = np.tile([1.0, 0, 0, 0], (T, 1))
    dof = np.tile(m.qpos0[7:], (T, 1))
    return result_of(robot, root, quat, dof, **extra)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _not_blank(img: np.ndarray) -> None:
    assert img.ndim == 3 and img.shape[2] == 3
    assert img.std() > 20, "an image of one flat colour"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200, "too few colours for a rendered scene"


@pytest.fixture(scope="module")
def walk(g1, tmp_path_factory):
    """The demo walk (60 frames, 30 fps) as a keypoints file, and its G1 result saved."""
    from retarget_jax.motion import read_motion
    from retarget_jax.motion.demo import demo_motion
    from retarget_jax.motion.skeleton import LAFAN1_JOINT_MAP
    from retarget_jax.pipeline import retarget_motions
    from retarget_jax.problem import load_recipe

    d = tmp_path_factory.mktemp("walk")
    m = demo_motion(num_frames=60)
    names = {role: name for name, role in LAFAN1_JOINT_MAP.items()}
    src = d / "walk.npz"
    np.savez(
        src,
        positions=m.positions.astype(np.float32),
        joint_names=np.array([names[j] for j in m.joint_names]),
        fps=np.float32(m.fps),
    )
    motion = read_motion(src, "keypoints")
    recipe = load_recipe("keypoints_g1")
    (res,) = retarget_motions([motion], recipe, g1)
    assert SolveStatus.ok(res.status)
    save_result(res, d / "walk.result.npz")
    return {
        "dir": d,
        "source": src,
        "result_path": d / "walk.result.npz",
        "result": res,
        "motion": motion,
        "recipe": recipe,
    }


def test_stills_of_a_retargeted_walk_are_not_blank_and_the_robot_moves(walk, g1, tmp_path, capsys):
    """The acceptance test: `retarget-jax render --frames` writes PNGs of a real solve; they
    are scenes, not blanks, and the robot's pixels move from frame to frame."""
    out = tmp_path / "stills"
    rc = main(
        [
            "render",
            "--result",
            str(walk["result_path"]),
            "--frames",
            "0,30,-1",
            "--output-dir",
            str(out),
            "--width",
            "320",
            "--height",
            "240",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["backend"] == gl_backend()
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"walk.result.frame_{t:05d}.png" for t in (0, 30, 59)]  # the result's name less .npz
    images = [_png(out / n) for n in names]
    for img in images:
        assert img.shape == (240, 320, 3)
        _not_blank(img)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])

    opts = RenderOptions(width=320, height=240)
    with ResultRenderer(walk["result"], g1, options=opts) as r:
        masks = [r.robot_mask(t) for t in (0, 30, 59)]
        again = r.render(30)
    for mask in masks:  # the robot is in view and a fair part of the picture
        assert 0.01 < mask.mean() < 0.5
    for a, b in zip(masks[:-1], masks[1:], strict=True):  # its pixels move: the silhouettes overlap only in part
        assert (a & b).sum() / (a | b).sum() < 0.85
    np.testing.assert_array_equal(again, images[1])  # deterministic, and the PNG holds the frame exactly
    # robot pixels differ from the background the segmentation puts around them
    edge = images[1][masks[1]].mean(axis=0)
    assert np.abs(edge - images[1][~masks[1]].mean(axis=0)).max() > 10


def test_video_has_one_frame_per_clip_frame(walk, g1, tmp_path):
    import imageio_ffmpeg

    path = render_video(walk["result"], g1, tmp_path / "walk.mp4", options=SMALL)
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == walk["result"].num_frames and secs == pytest.approx(60 / 30, abs=0.05)
    half = render_video(walk["result"], g1, tmp_path / "half.mp4", options=dataclasses.replace(SMALL, fps=15))
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(half))
    assert frames == 30 and secs == pytest.approx(2.0, abs=0.1)  # every other frame, same duration
    assert [p.name for p in tmp_path.iterdir() if is_temp_file(p)] == []
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (240, 180)
    first = np.frombuffer(next(reader), np.uint8).reshape(180, 240, 3)
    _not_blank(first)


def test_cli_video_with_the_source_skeleton(walk, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    rc = main(
        [
            "render",
            "--result",
            str(walk["result_path"]),
            "--source",
            str(walk["source"]),
            "--output",
            str(out),
            "--width",
            "160",
            "--height",
            "120",
            "--layout",
            "beside",
            "--fps",
            "10",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["video"] == str(out)
    import imageio_ffmpeg

    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 20


def test_source_skeleton_is_the_scaled_figure_the_solver_tracked(walk, g1):
    """The whole skeleton from the source equals, at the target joints, the targets the
    result stores (the solver's scaled human, plus each target's vertical shift)."""
    from retarget_jax.pipeline import prepare_clip

    res = walk["result"]
    sk = skeleton_from_motion(res, g1, walk["motion"], walk["recipe"])
    assert sk.positions.shape == (res.num_frames, 22, 3) and sk.valid.all()
    cp = prepare_clip(walk["motion"], walk["recipe"], g1).compiled
    dz = np.asarray(cp.clip.pos_target_dz, np.float64)
    expected = sk.positions[:, list(cp.pos_joint)] + dz[None, :, None] * np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(expected, res.target_pos_w, atol=1e-5)
    assert sk.parents[0] == -1 and all(0 <= p < j for j, p in enumerate(sk.parents) if j)


def test_skeleton_from_result_joins_targets_along_the_robot_tree(walk, g1):
    res = walk["result"]
    sk = skeleton_from_result(res, g1)
    names = list(res.target_body_names)
    assert sk.positions is not None and len(sk.parents) == len(names)
    for k, p in enumerate(sk.parents):
        if p < 0:
            continue
        # the parent target's body is an ancestor of this target's body in the robot's tree
        b, anc = g1.body_index(names[k]), g1.body_index(names[p])
        while b >= 0 and b != anc:
            b = g1.tree.parents[b]
        assert b == anc, (names[k], names[p])
    assert sum(p < 0 for p in sk.parents) == 1  # one root: every target hangs from the pelvis's
    assert skeleton_from_result(dataclasses.replace(res, target_pos_w=None, target_body_names=()), g1) is None


def test_stance_feet_are_green_and_penetrating_geoms_red(g1):
    """Frames 0-1 stand on the floor, frames 2-3 sink 5 cm; the left foot is in stance in
    frames 1 and 3. Green and red pixels appear exactly where the plan and the geometry
    say, and the geoms flagged are the ones whose lowest point is under the floor."""
    import mujoco

    feet = ("left_ankle_roll_link", "right_ankle_roll_link")
    stance = np.array([[False, False], [True, False], [False, False], [True, False]])
    res = _standing(g1, 4, dz=np.array([0.0, 0.0, 0.05, 0.05]), contacts=stance, contact_body_names=feet)
    opts = RenderOptions(width=320, height=240, layout="robot", label=False, distance=2.0)

    def count(img, channel):
        c = img.astype(int)
        others = [c[..., i] for i in range(3) if i != channel]
        return int(((c[..., channel] > 1.6 * others[0] + 20) & (c[..., channel] > 1.6 * others[1] + 20)).sum())

    m = g1.mj_model
    d = mujoco.MjData(m)
    with ResultRenderer(res, g1, options=opts) as r:
        states = [r.frame_state(t) for t in range(4)]
        images = [r.render(t) for t in range(4)]
    left = g1.body_index(feet[0]) + 1
    assert [s["stance"] for s in states] == [[], [left], [], [left]]
    for t in range(4):  # independent check of "under the floor": MuJoCo C's contact with a plane
        d.qpos[:] = res.qpos[t]
        mujoco.mj_kinematics(m, d)
        under = []
        for g in g1.collision.geoms:
            lowest = d.geom_xpos[g][2] - m.geom_rbound[g]  # a bound: the geom reaches at most this low
            if lowest < -opts.penetration_tolerance:
                under.append(g)
        assert set(states[t]["below_ground"]) <= set(under)
        assert bool(states[t]["below_ground"]) == (t >= 2)
    green = [count(img, 1) for img in images]
    red = [count(img, 0) for img in images]
    assert green[1] > 200 and green[3] > 0 and green[0] < 20, green
    assert red[2] > 200 and red[3] > 200 and red[0] < 20 and red[1] < 20, red


def test_contact_sheet_tiles_the_frames(walk, g1, tmp_path):
    path = render_contact_sheet(walk["result"], g1, tmp_path / "sheet.png", options=SMALL)
    img = _png(path)
    assert img.shape == (180, 4 * 240 + 3 * 4, 3)
    tiles = [img[:, i * 244 : i * 244 + 240] for i in range(4)]
    for tile in tiles:
        _not_blank(tile)
    assert not np.array_equal(tiles[0], tiles[3])


def test_bad_requests_get_typed_errors(walk, g1, tmp_path, monkeypatch, capsys):
    res = walk["result"]
    with pytest.raises(RenderError, match=r"frames: frame 60 is outside the clip \(0\.\.59\)"):
        render_stills(res, g1, [0, 60], tmp_path, stem="x", options=SMALL)
    with pytest.raises(RenderError, match="'a' is not a frame number"):
        parse_frames("0,a", 10)
    with pytest.raises(ConfigError, match="render width must be an even integer"):
        RenderOptions(width=641)
    with pytest.raises(ConfigError, match="layout 'side' is not one of: overlay, beside, robot"):
        RenderOptions(layout="side")
    monkeypatch.setenv("MUJOCO_GL", "wgl")
    with pytest.raises(ConfigError, match="valid: egl, osmesa, glfw"):
        gl_backend()
    monkeypatch.delenv("MUJOCO_GL")
    bad = dataclasses.replace(res, root_pos=res.root_pos.copy())
    bad.root_pos[5, 2] = np.nan
    with ResultRenderer(bad, g1, options=SMALL) as r:
        r.render(4)
        with pytest.raises(RenderError, match="frame 5 holds non-finite joint values"):
            r.render(5)
    short = walk["motion"].slice(0, 30)
    with pytest.raises(RenderError, match="has 30 frames, the result 60"):
        skeleton_from_motion(res, g1, short, walk["recipe"])
    assert not list(tmp_path.glob("*.png"))  # nothing written by the refused requests
    # the CLI turns them into exit status 2 and one line naming the problem
    assert main(["render", "--result", str(walk["result_path"])]) == 2
    assert "give --output R.mp4" in capsys.readouterr().err
    assert main(["render", "--result", str(walk["result_path"]), "--output", str(tmp_path / "a.gif")]) == 2
    assert "a video is written as .mp4" in capsys.readouterr().err
    assert main(["render", "--result", str(tmp_path / "missing.npz"), "--frames", "0"]) == 2
    assert "missing.npz" in capsys.readouterr().err


def test_hydra_run_renders_every_clip_and_keeps_its_settings(g1, tmp_path):
    """``render.stills`` / ``render.video`` on a batch run draw each result beside it (here
    robot-space GMR files, loaded without a solve), and the run writes run_config.yaml."""
    import yaml
    from hydra import compose, initialize_config_dir
    from inputs import synthetic_trajectory

    from retarget_jax.files.resources import config_dir
    from retarget_jax.io import write_gmr_pkl
    from retarget_jax.manifest import RUN_CONFIG_NAME
    from retarget_jax.run import execute, typed_config

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        write_gmr_pkl(synthetic_trajectory(g1, 10, seed=i), inp / f"clip{i}.pkl")
    (inp / "broken.pkl").write_bytes(b"not a pickle")
    out = tmp_path / "out"
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "source=gmr_pkl",
                "robot=unitree_g1",
                f"input.path={inp}",
                f"output.dir={out}",
                "batch.progress=false",
                "render.stills=[0,-1]",
                "render.video=true",
                "render.width=160",
                "render.height=120",
                "jax_cache_dir=null",
            ],
        )
    summary = execute(typed_config(cfg))
    assert summary["failed_count"] == 1 and summary["render_failed"] == []
    for i in range(2):
        for name in (f"clip{i}.frame_00000.png", f"clip{i}.frame_00009.png", f"clip{i}.mp4"):
            assert (out / name).exists(), name
        _not_blank(_png(out / f"clip{i}.frame_00009.png"))
    assert len(summary["rendered"]) == 6
    settings = yaml.safe_load((out / RUN_CONFIG_NAME).read_text())
    assert settings["render"]["stills"] == [0, -1] and settings["input"]["format"] == "gmr_pkl"
    with pytest.raises(ConfigError, match="render layout"):
        execute(typed_config(compose_bad(cfg)))


def compose_bad(cfg):
    from omegaconf import OmegaConf

    bad = OmegaConf.to_container(cfg)
    bad["render"]["layout"] = "sideways"
    return OmegaConf.create(bad)


def test_result_npz_round_trip_renders_the_same(walk, g1, tmp_path):
    """A result read back from disk renders pixel for pixel like the one in memory."""
    loaded = load_result(walk["result_path"])
    with ResultRenderer(walk["result"], g1, options=SMALL) as a, ResultRenderer(loaded, g1, options=SMALL) as b:
        np.testing.assert_array_equal(a.render(17), b.render(17))
