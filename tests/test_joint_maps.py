"""Tests for retarget_jax.motion.joint_maps: shipped maps, YAML validation, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retarget_jax.errors import ConfigError, UnknownNameError
from retarget_jax.files.resources import joint_maps_dir
from retarget_jax.motion.bvh import parse_bvh
from retarget_jax.motion.conventions import NAMES, get_conventions
from retarget_jax.motion.demo import DEMO_PARENTS
from retarget_jax.motion.joint_maps import (
    JointMap,
    joint_map_from_dict,
    load_joint_map,
    shipped_joint_maps,
)
from retarget_jax.motion.skeleton import (
    CANONICAL_PARENT,
    LAFAN1_JOINT_MAP,
    HumanJoint,
    canonical_parents,
)

SHIPPED = ("hc_mocap", "lafan1", "mixamo", "mocapbank_19", "nokov", "smpl", "smpl_phc")

# The decision per map (see each YAML's comment for why); pinned so a change is deliberate.
CONVENTIONS = {
    "lafan1": "lafan1",
    "mixamo": "world_tpose_z_forward",
    "nokov": None,
    "hc_mocap": None,
    "mocapbank_19": None,
    "smpl": "smpl",
    "smpl_phc": "smpl",
}
UNITS = {
    "lafan1": 0.01,
    "nokov": 0.01,
    "mixamo": 0.01,
    "mocapbank_19": 0.01,
    "hc_mocap": 1.0,
    "smpl": 1.0,
    "smpl_phc": 1.0,
}


def _yaml(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "length_unit: cm\nup_axis: y\nconventions: null\njoints:\n  Hips: pelvis\n  Head: head\n"


# --------------------------------------------------------------------------------------
# Shipped maps


def test_shipped_maps_are_the_expected_set():
    assert shipped_joint_maps() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_map_loads_with_valid_unique_roles(name):
    jm = load_joint_map(name)
    assert jm.name == name and jm.path == str(joint_maps_dir() / f"{name}.yaml")
    assert all(isinstance(r, HumanJoint) for r in jm.roles)
    assert len(set(jm.roles)) == len(jm.roles)
    assert HumanJoint.PELVIS in jm.roles  # every map can root a motion
    assert jm.conventions == CONVENTIONS[name]
    assert jm.length_scale == UNITS[name]
    assert jm.up_axis == ("z" if name.startswith("smpl") else "y")
    if jm.conventions is not None:
        assert jm.conventions in NAMES
        table = jm.conventions_table()
        assert set(table) == set(HumanJoint)
        for frame in table.values():
            np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)
            assert np.linalg.det(frame) == pytest.approx(1.0)
    else:
        assert jm.conventions_table() is None


def test_lafan1_map_equals_the_skeleton_constant():
    jm = load_joint_map("lafan1")
    assert dict(jm.joints) == dict(LAFAN1_JOINT_MAP)
    assert list(jm.joints) == list(LAFAN1_JOINT_MAP)  # file order too


def test_nokov_and_mixamo_spell_lafan1_roles_their_way():
    nokov, mixamo = load_joint_map("nokov"), load_joint_map("mixamo")
    assert nokov.joints["LeftToeBase"] is HumanJoint.LEFT_TOE and "LeftToe" not in nokov.joints
    assert all(k.startswith("mixamorig:") for k in mixamo.joints)
    # Same roles as LAFAN1, names differing only at the toes / by the prefix.
    assert set(nokov.roles) == set(mixamo.roles) == set(HumanJoint)
    strip = {k.removeprefix("mixamorig:"): r for k, r in mixamo.joints.items()}
    assert strip == dict(nokov.joints)


def test_hc_mocap_uses_its_prefixed_names():
    jm = load_joint_map("hc_mocap")
    assert jm.joints["hc_Abdomen"] is HumanJoint.PELVIS
    assert jm.joints["hc_Hand_L"] is HumanJoint.LEFT_WRIST and jm.joints["hc_Hand_R"] is HumanJoint.RIGHT_WRIST
    assert jm.joints["RightShoulder1"] is HumanJoint.RIGHT_COLLAR  # sic, in the exporter
    assert not any("Index" in k or "Thumb" in k for k in jm.joints)


def test_mocapbank_19_map_matches_the_real_file(shared_data_dir):
    path = shared_data_dir / "mocapbank_19joint_clip.bvh"
    if not path.is_file():
        pytest.skip(f"mocapbank_19joint_clip.bvh not found in {shared_data_dir}")
    clip = parse_bvh(path)
    jm = load_joint_map("mocapbank_19")
    assert set(jm.joints) == set(clip.joint_names) and len(jm.joints) == 19

    # Why conventions is null: the zero pose (all channels 0) is no T-pose.
    P = np.zeros((len(clip.joint_names), 3))
    for j, p in enumerate(clip.parents):
        if p >= 0:
            P[j] = P[p] + clip.offsets[j]
    at = {n: P[i] for i, n in enumerate(clip.joint_names)}
    for side in ("Left", "Right"):
        drop = at[f"{side}Shoulder"][1] - at[f"{side}Elbow"][1]  # Y is up
        assert drop > 20.0, "arms hang down in the zero pose"
        assert abs(at[f"{side}Wrist"][0]) < abs(at[f"{side}Shoulder"][0]) + 10.0  # not out sideways
    # ... a figure facing +Z with its left on +X (Y-up): head ahead of the neck, left hip at +X.
    assert at["LeftHip"][0] > 0 > at["RightHip"][0]
    assert at["Head"][1] > at["Neck"][1] > at["Hips"][1] > at["LeftKnee"][1] > at["LeftAnkle"][1]
    assert jm.conventions is None


def test_smpl_phc_map_covers_the_omomo_names(shared_data_dir):
    path = shared_data_dir / "omomo_sub3_largebox_003_joints.npz"
    if not path.is_file():
        pytest.skip(f"omomo_sub3_largebox_003_joints.npz not found in {shared_data_dir}")
    with np.load(path, allow_pickle=False) as z:
        names = [str(n) for n in z["joint_names"]]
    jm = load_joint_map("smpl_phc")
    assert set(jm.joints) <= set(names)
    assert set(jm.roles) == set(HumanJoint)
    unmapped = set(names) - set(jm.joints)
    assert len(unmapped) == 30 and all(
        n[2:].rstrip("123") in {"Index", "Middle", "Pinky", "Ring", "Thumb"} for n in unmapped
    )


def test_standard_smpl_map():
    jm = load_joint_map("smpl")
    assert jm.joints["spine1"] is HumanJoint.SPINE_LOWER and jm.joints["spine3"] is HumanJoint.SPINE_UPPER
    assert jm.joints["left_foot"] is HumanJoint.LEFT_TOE and "left_hand" not in jm.joints


# --------------------------------------------------------------------------------------
# Canonical role tree


def test_canonical_parent_table_matches_the_demo_skeleton():
    assert dict(CANONICAL_PARENT) == dict(DEMO_PARENTS)
    assert list(CANONICAL_PARENT) == list(HumanJoint)  # parents before children


def test_canonical_parent_table_matches_the_compiler_layout():
    from retarget_jax.motion.canonical import CANONICAL_JOINTS, CANONICAL_PARENTS

    expect = [
        -1 if CANONICAL_PARENT[j] is None else CANONICAL_JOINTS.index(CANONICAL_PARENT[j]) for j in CANONICAL_JOINTS
    ]
    assert list(CANONICAL_PARENTS) == expect


def test_canonical_parents_reindex_to_the_nearest_present_ancestor():
    roles = ["pelvis", "left_ankle", "spine_upper", "head", "right_wrist", "right_collar"]
    # left_ankle -> (knee, hip absent) pelvis; spine_upper -> pelvis; head -> (neck absent)
    # spine_upper; right_wrist -> (elbow, shoulder absent) right_collar -> spine_upper.
    assert canonical_parents(roles).tolist() == [-1, 0, 0, 2, 5, 2]
    assert canonical_parents(list(HumanJoint)).tolist() == [
        -1 if p is None else list(HumanJoint).index(p) for p in CANONICAL_PARENT.values()
    ]
    assert canonical_parents(["head", "neck"]).tolist() == [1, -1]  # no pelvis: a root of its own


# --------------------------------------------------------------------------------------
# Loading by path and validation errors


def test_load_by_path_with_a_numeric_unit_and_the_stem_as_name(tmp_path):
    p = _yaml(
        tmp_path, "length_unit: 0.001\nup_axis: Z\njoints: {root: pelvis, 'Left Knee': left_knee}\n", "mm_rig.yml"
    )
    for arg in (p, str(p)):
        jm = load_joint_map(arg)
        assert jm.name == "mm_rig" and jm.length_scale == 0.001 and jm.up_axis == "z"
        assert dict(jm.joints) == {"root": HumanJoint.PELVIS, "Left Knee": HumanJoint.LEFT_KNEE}
        assert jm.conventions is None  # optional, positions only by default
    assert load_joint_map(jm) is jm


def test_joint_map_is_frozen_and_its_table_read_only():
    jm = load_joint_map("lafan1")
    with pytest.raises(AttributeError):
        jm.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        jm.joints["Extra"] = HumanJoint.HEAD  # type: ignore[index]


@pytest.mark.parametrize(
    "unit, scale",
    [
        ("metre", 1.0),
        ("meters", None),
        ("m", 1.0),
        ("centimetre", 0.01),
        ("centimeter", 0.01),
        ("CM", 0.01),
        ("millimetre", 0.001),
        ("inch", 0.0254),
        ("2.5", 2.5),
        (0.01, 0.01),
        (1, 1.0),
    ],
)
def test_length_units(tmp_path, unit, scale):
    p = _yaml(tmp_path, f"length_unit: {unit}\nup_axis: y\njoints: {{Hips: pelvis}}\n")
    if scale is None:
        with pytest.raises(ConfigError, match=r"mine\.yaml, field 'length_unit': unknown unit 'meters'"):
            load_joint_map(p)
    else:
        assert load_joint_map(p).length_scale == scale


def test_unknown_shipped_name_lists_the_shipped_maps():
    with pytest.raises(UnknownNameError, match=r"joint map 'xsens' not found; valid: " + ", ".join(SHIPPED)):
        load_joint_map("xsens")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.yaml: joint map file not found"):
        load_joint_map(tmp_path / "nothere.yaml")


def test_unknown_role_names_file_field_and_valid_roles(tmp_path):
    p = _yaml(tmp_path, GOOD + "  LeftHand: left_hand\n")
    with pytest.raises(
        UnknownNameError,
        match=r"mine\.yaml, field 'joints\.LeftHand': human joint 'left_hand' not found; "
        r"valid: .*left_wrist",
    ) as ei:
        load_joint_map(p)
    assert "left_elbow" in ei.value.valid and len(ei.value.valid) == 22


def test_unknown_key(tmp_path):
    p = _yaml(tmp_path, GOOD + "scale: 2\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml, field 'scale': unknown key; valid keys: name, "):
        load_joint_map(p)


@pytest.mark.parametrize("key", ["length_unit", "up_axis", "joints"])
def test_missing_required_key(tmp_path, key):
    lines = [ln for ln in GOOD.split("\n") if not ln.startswith(key) and not (key == "joints" and ln.startswith("  "))]
    p = _yaml(tmp_path, "\n".join(lines))
    with pytest.raises(ConfigError, match=rf"mine\.yaml, field '{key}': missing required key"):
        load_joint_map(p)


def test_duplicated_role(tmp_path):
    p = _yaml(tmp_path, GOOD + "  Head_End: head\n")
    with pytest.raises(
        ConfigError,
        match=r"mine\.yaml, field 'joints\.Head_End': role 'head' is already mapped "
        r"from 'Head'",
    ):
        load_joint_map(p)


def test_duplicated_yaml_key_is_not_silently_dropped(tmp_path):
    p = _yaml(tmp_path, GOOD + "  Hips: spine_lower\n")
    with pytest.raises(
        ConfigError, match=r"mine\.yaml, line 7: invalid YAML: duplicated key 'Hips' \(first at line 5\)"
    ):
        load_joint_map(p)


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("length_unit", "-1", r"field 'length_unit': expected a unit name .*found -1"),
        ("length_unit", "0", r"field 'length_unit': expected .*found 0"),
        ("length_unit", ".nan", r"field 'length_unit': expected .*found nan"),
        ("length_unit", "true", r"field 'length_unit': expected .*found True"),
        ("length_unit", "furlong", r"field 'length_unit': unknown unit 'furlong'; expected one of metre"),
        ("up_axis", "x", r"field 'up_axis': expected one of y, z, found 'x'"),
        ("up_axis", "1", r"field 'up_axis': expected one of y, z, found 1"),
        ("conventions", "[lafan1]", r"field 'conventions': expected a table name or null"),
        ("joints", "[Hips, Head]", r"field 'joints': expected a non-empty mapping"),
        ("joints", "{}", r"field 'joints': expected a non-empty mapping"),
        ("joints", "{1: pelvis}", r"field 'joints': source joint names must be strings, found 1"),
        ("joints", "{Hips: 3}", r"field 'joints\.Hips': expected a role name, found 3"),
        ("name", "''", r"field 'name': expected a non-empty string"),
        ("description", "[a]", r"field 'description': expected a string"),
    ],
)
def test_bad_fields_name_the_file_and_field(tmp_path, field, value, pattern):
    lines = GOOD.rstrip("\n").split("\n")
    if field == "joints":
        lines = [ln for ln in lines if not ln.startswith("  ") and not ln.startswith("joints")]
    else:
        lines = [ln for ln in lines if not ln.startswith(field)]
    p = _yaml(tmp_path, "\n".join(lines) + f"\n{field}: {value}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml, " + pattern):
        load_joint_map(p)


def test_unknown_conventions_lists_the_tables(tmp_path):
    p = _yaml(tmp_path, GOOD.replace("conventions: null", "conventions: bvh_tpose"))
    with pytest.raises(
        UnknownNameError,
        match=r"mine\.yaml, field 'conventions': source convention 'bvh_tpose' "
        r"not found; valid: lafan1, smpl, world_tpose_z_forward",
    ):
        load_joint_map(p)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("- a\n- b\n", r"a joint map must be a YAML mapping, found list"),
        ("", r"a joint map must be a YAML mapping, found NoneType"),
        ("joints: {Hips: pelvis\n", r"invalid YAML: expected ',' or '}'"),
    ],
)
def test_not_a_mapping_or_not_yaml(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=r"mine\.yaml(, line \d+)?: " + pattern):
        load_joint_map(_yaml(tmp_path, text))


def test_joint_map_built_in_code_is_validated_too():
    with pytest.raises(ConfigError, match=r"joint map 'x', field 'up_axis'"):
        JointMap("x", {"Hips": "pelvis"}, 0.01, "w")
    with pytest.raises(ConfigError, match=r"field 'length_unit': metres per unit must be a positive number"):
        JointMap("x", {"Hips": "pelvis"}, -1.0, "y")
    with pytest.raises(ConfigError, match=r"field 'joints\.B': role 'pelvis' is already mapped from 'A'"):
        JointMap("x", {"A": "pelvis", "B": HumanJoint.PELVIS}, 1.0, "z")
    with pytest.raises(ConfigError, match="maps no joint"):
        JointMap("x", {}, 1.0, "z")
    jm = joint_map_from_dict({"length_unit": "m", "up_axis": "z", "joints": {"P": "pelvis"}}, default_name="d")
    assert jm.name == "d" and jm.path == "" and jm.matched(["Q", "P"]) == ("P",)


def test_conventions_tables_named_by_maps_exist():
    for name in set(CONVENTIONS.values()) - {None}:
        assert get_conventions(name)
