"""The jaxtyping annotations of the jit boundary hold on real objects (retarget_jax.arrays).

Compiled problems (alone and stacked into a batch), solve outputs and metric batches are
checked field by field against their annotations: dtype kind, rank, and named axes (T, J,
Kp, L, ...) that agree across one object's fields. A field built with a wrong axis makes
the check fail, so the annotations are not decoration.
"""

from __future__ import annotations

import equinox as eqx
import numpy as np
import pytest

from retarget_jax.arrays import annotation_errors, unannotated_arrays
from retarget_jax.motion.demo import demo_motion
from retarget_jax.problem import RetargetingProblem, compile_problem
from retarget_jax.problem.compile import ClipArrays, CompiledProblem, RobotArrays
from retarget_jax.robots.collision import CollisionArrays, HeightField
from retarget_jax.robots.spec import KinematicTree
from retarget_jax.solve.batch import pad_problem, stack_problems
from retarget_jax.solve.gauss_newton import SolveOutput


@pytest.fixture(scope="module")
def problem(g1, lafan1_g1_recipe):
    return compile_problem(RetargetingProblem(demo_motion(num_frames=12), lafan1_g1_recipe, g1))


@pytest.mark.parametrize(
    "cls", [ClipArrays, RobotArrays, CompiledProblem, KinematicTree, CollisionArrays, HeightField, SolveOutput]
)
def test_every_array_field_is_annotated(cls):
    assert unannotated_arrays(cls) == []


def test_compiled_problem_matches_its_annotations(problem):
    assert annotation_errors(problem) == []
    # host numpy arrays (a padded problem) satisfy them too
    padded = pad_problem(problem, 16)
    assert annotation_errors(padded) == []
    # a batch: every clip field gains the leading B axis (*batch)
    batch = stack_problems([padded, padded, padded])
    assert np.shape(batch.clip.human_pos)[0] == 3
    assert annotation_errors(batch) == []


def test_a_field_with_a_wrong_axis_fails_the_check(problem):
    T, Kp = problem.num_frames, len(problem.pos_body)
    bad = eqx.tree_at(lambda p: p.clip.pos_valid, problem, np.ones((T, Kp + 1), np.float32))
    errors = annotation_errors(bad)
    # the first field binds Kp = Kp + 1; the other Kp fields then disagree
    assert any("pos_weight" in e and "*batch Kp" in e for e in errors), errors
    frames = eqx.tree_at(lambda p: p.clip.stance, problem, np.ones((T + 1, 2), np.float32))
    assert any("stance" in e and "T F" in e for e in annotation_errors(frames))
    ints = eqx.tree_at(lambda p: p.clip.fps, problem, np.asarray(30, np.int32))
    assert any("clip.fps" in e and "Float" in e for e in annotation_errors(ints))


def test_solve_output_matches_its_annotations(problem):
    out = SolveOutput(
        qpos=np.zeros((2, problem.num_frames, 36), np.float32),
        cost=np.zeros(2, np.float32),
        iterations=np.zeros(2, np.int32),
        status=np.zeros(2, np.int32),
    )
    assert annotation_errors(out) == []
    wrong = SolveOutput(qpos=out.qpos, cost=np.zeros(3, np.float32), iterations=out.iterations, status=out.status)
    assert annotation_errors(wrong)  # 3 costs for 2 clips


def test_metric_batch_matches_its_annotations(g1):
    from test_evaluate import make_result  # a solved-looking G1 clip with targets, contacts and a limb

    from retarget_jax.metrics.batch import MetricBatch, MetricGeometry, metric_geometry

    batch = MetricBatch.from_results([make_result(g1, 1), make_result(g1, 2, T=20)], g1, length=32)
    assert annotation_errors(batch) == []
    assert annotation_errors(metric_geometry(g1, batch.contact_bodies)) == []
    assert unannotated_arrays(MetricBatch) == [] and unannotated_arrays(MetricGeometry) == []
    wrong = eqx.tree_at(lambda b: b.limb_valid, batch, np.ones((2, 31, 9), np.float32))
    assert any("limb_valid" in e for e in annotation_errors(wrong))
