"""``retarget-jax``: command-line tools (host). Hydra sweeps use ``python -m retarget_jax.run``.

    retarget-jax retarget INPUT --format F --robot R --output OUT.npz [options]
    retarget-jax formats        # the input format names and what they read
    retarget-jax batch --input-dir DIR --pattern "*.npz" --format smplx --robot unitree_g1 \
        [--config run.yaml] --output-dir OUT [--force] [--max-workers N]
    retarget-jax evaluate --result R.npz --output R.metrics.json
    retarget-jax evaluate --batch-manifest M.json --output-dir D [--output evaluation_manifest.json]
    retarget-jax render --result R.npz [--source S] --output R.mp4 [--frames 0,100 --output-dir D]
    retarget-jax report --evaluation-manifest D/evaluation_manifest.json --output report.html
    retarget-jax motionlib build ROOT OUT --motion-config train.yaml --target smpl   # docs/motionlib.md
    retarget-jax view LIBRARY_OR_RESULT_DIR
    retarget-jax dataset build --spec spec.yaml | reshard ... | check-fk ...  (docs/datasets.md)

``retarget`` reads one file, retargets it (or, for a robot-space format, loads it) and
writes one result. The output format follows the file name (``.npz`` result,
``.mjlab.npz`` mjlab/BeyondMimic, ``.pkl`` GMR) unless ``--output-format`` says.
``batch`` runs the batch driver (:mod:`retarget_jax.batch`) over a folder, with the same
config and semantics as ``python -m retarget_jax.run`` (resume, ``batch_manifest.json``,
buckets, windows); ``--config`` is a YAML file of RunConfig keys, the flags override it.
``evaluate`` writes metrics reports (:mod:`retarget_jax.metrics.report`): of one result,
or of every result a batch manifest lists, with an evaluation manifest. ``render`` draws a
result offscreen (:mod:`retarget_jax.render`): an MP4 and/or PNG stills. ``report`` writes
the HTML report of an evaluated batch (:mod:`retarget_jax.report`).
Errors are printed as ``error: <ErrorClass>: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from retarget_jax.errors import RetargetError
from retarget_jax.formats import OUTPUT_FORMATS, RESULT_FORMATS, output_format_of, result_stem

#: Metric plugins in the ``retarget`` summary (keys ``name`` or ``name.key``, see
#: :func:`retarget_jax.metrics.report_summary`).
CLI_METRICS = ("tracking_error", "upright", "joint_limit_violation")


def _retarget(args: argparse.Namespace) -> int:
    from retarget_jax.formats import MotionFormat, default_recipe
    from retarget_jax.io import read_robot_motion, write_result
    from retarget_jax.motion import read_motion
    from retarget_jax.robots import load_robot

    t0 = time.perf_counter()
    fmt = MotionFormat.parse(args.format, where="--format")
    robot = load_robot(args.robot)
    out = Path(args.output)
    out_fmt = args.output_format or output_format_of(out)
    if fmt.is_robot_space:
        result = read_robot_motion(args.input, fmt, robot)
        summary = {"frames": result.num_frames, "fps": result.fps, "solved": False}
    else:
        from retarget_jax.config import run_settings
        from retarget_jax.pipeline import ClipFailure, retarget_motions
        from retarget_jax.problem import load_recipe
        from retarget_jax.problem.contacts import load_contact_plan

        cfg = retarget_config(args)
        if cfg.jax_cache_dir:
            import jax

            jax.config.update("jax_compilation_cache_dir", str(Path(cfg.jax_cache_dir).expanduser()))
        rs = run_settings(cfg)
        motion = read_motion(
            args.input, fmt, joint_map=args.joint_map, body_model_dir=args.body_model_dir, gender=args.gender
        )
        recipe = load_recipe(args.recipe or default_recipe(fmt, robot.name, motion))
        print(
            f"[retarget-jax] {args.input}: {motion.num_frames} frames at {motion.fps:g} fps "
            f"({fmt.value}) -> {robot.name}, recipe {recipe.name}"
            + (f", resampled to {args.fps:g} fps" if args.fps else ""),
            file=sys.stderr,
            flush=True,
        )
        print(
            "[retarget-jax] compiling and solving (the first solve of a shape compiles; later runs reuse the cache)...",
            file=sys.stderr,
            flush=True,
        )
        plans = [load_contact_plan(args.contacts, recipe.ground_joints, motion.num_frames)] if args.contacts else None
        p = rs.problem
        (result,) = retarget_motions(
            [motion],
            recipe,
            robot,
            fps=p.fps,
            weights=p.weights,
            contacts=plans,
            contact_thresholds=p.contact_thresholds,
            joint_velocity_limits=p.joint_velocity_limits,
            terrain=p.terrain,
            options=rs.options,
            buckets=rs.buckets,
            max_batch=rs.max_batch,
            window=rs.window,
            overlap=rs.overlap,
            fixed_batch=True,
        )
        if isinstance(result, ClipFailure):
            print(f"error: {result.error_type}: {result.message}", file=sys.stderr)
            return 2
        if not result.ok:  # invalid_input / diverged: nothing usable to write (as in a batch run)
            print(
                f"error: SolveError: {args.input}: the solve returned status "
                f"'{result.provenance.get('status_name')}'; nothing written",
                file=sys.stderr,
            )
            return 2
        from retarget_jax.manifest import masked_note
        from retarget_jax.metrics import metric_summary

        m = metric_summary(result, robot, plugins=CLI_METRICS)
        note = masked_note(result.provenance)
        if note:  # masked samples were filled for the solve: say so
            print(f"[retarget-jax] {args.input}: {note}", file=sys.stderr, flush=True)
        summary = {
            "frames": result.num_frames,
            "fps": result.fps,
            "solved": True,
            "status": result.provenance.get("status_name"),
            "iterations": result.iterations,
            "final_cost": result.final_cost,
            "source_fps": result.provenance.get("source_fps"),
            "masked_frames": result.provenance.get("masked_frames", 0),
            "masked_joints": result.provenance.get("masked_joints", 0),
            **{k: None if v is None else round(v, 5) for k, v in m.items()},
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(result, out, out_fmt)
    summary.update(output=str(out), output_format=out_fmt, robot=robot.name, seconds=round(time.perf_counter() - t0, 2))
    print(json.dumps(summary))
    return 0


def retarget_config(args: argparse.Namespace):
    """The RunConfig of ``retarget-jax retarget``: the schema's defaults (the library's,
    see :mod:`retarget_jax.config`), then the flags. The Hydra driver starts from the same
    schema, so both solve a clip with the same options, windows and batch rows."""
    from retarget_jax.config import RunConfig

    cfg = RunConfig()
    cfg.input.format = args.format
    cfg.input.fps = args.fps
    if args.max_iters is not None:
        cfg.solver.max_iters = args.max_iters
    cfg.plausibility = not args.no_plausibility
    cfg.jax_cache_dir = args.cache_dir or None
    return cfg


def batch_config(args: argparse.Namespace):
    """The RunConfig of ``retarget-jax batch``: schema defaults, then ``--config``, then the
    flags. Unknown keys and wrong types in the file fail naming the key."""
    from omegaconf import OmegaConf

    from retarget_jax.errors import ConfigError
    from retarget_jax.run import RunConfig

    schema = OmegaConf.structured(RunConfig)
    layers = []
    if args.config:
        path = Path(args.config)
        try:
            data = OmegaConf.load(path)
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file") from None
        except Exception as e:
            raise ConfigError(f"--config {path}: not valid YAML: {e}") from None
        layers.append(data)
    flags = {"input": {"path": args.input_dir}, "output": {"dir": args.output_dir}, "batch": {}}
    if args.pattern:
        flags["input"]["pattern"] = args.pattern
    if args.format:
        flags["input"]["format"] = args.format
    if args.robot:
        key = "mjcf" if args.robot.lower().endswith(".xml") else "name"
        flags["robot"] = {key: args.robot}
    if args.force:
        flags["batch"]["force"] = True
    if args.max_workers is not None:
        flags["batch"]["max_workers"] = args.max_workers
    if args.max_batch is not None:
        flags["batch"]["max_batch"] = args.max_batch
    if args.no_progress:
        flags["batch"]["progress"] = False
    layers.append(OmegaConf.create(flags))
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(schema, *layers))
    except Exception as e:  # omegaconf's errors name the key and the expected type
        where = f"--config {args.config}: " if args.config else ""
        raise ConfigError(f"{where}bad config: {e}") from None
    if not args.format and not (args.config and "format" in OmegaConf.select(layers[0], "input", default={})):
        raise ConfigError("batch: --format (or input.format in --config) is required; see `retarget-jax formats`")
    return cfg


def _batch(args: argparse.Namespace) -> int:
    from retarget_jax.run import execute

    cfg = batch_config(args)
    summary = execute(cfg, config_path=str(Path(args.config).resolve()) if args.config else None)
    out = {k: summary[k] for k in ("manifest", "success", "skipped", "failed_count", "frames", "seconds")}
    # how many clips had masked (NaN, missing) samples filled; execute() printed which
    out["masked_clips"] = len(summary.get("masked", []))
    print(json.dumps(out))
    return 0 if summary["failed_count"] == 0 else 1


def _formats(_: argparse.Namespace) -> int:
    from retarget_jax.formats import MotionFormat

    for f in MotionFormat:
        kind = "robot space" if f.is_robot_space else f"human, recipe family '{f.family}'"
        print(f"{f.value:14s} {kind}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from retarget_jax.errors import ConfigError

    contact_bodies = (
        tuple(b.strip() for b in args.contact_bodies.split(",") if b.strip()) if args.contact_bodies else None
    )
    if bool(args.result) == bool(args.batch_manifest):
        raise ConfigError("evaluate: give exactly one of --result and --batch-manifest")
    if args.result:
        if not args.output:
            raise ConfigError("evaluate --result: --output (the report file) is required")
        return _evaluate_one(args, contact_bodies)
    if not args.output_dir:
        raise ConfigError("evaluate --batch-manifest: --output-dir is required")
    return _evaluate_manifest(args, contact_bodies)


def _load_for_evaluation(path: Path, fmt: str, robot_arg: str | None):
    """(result, robot) of a result file: our NPZ (robot from the file unless --robot) or a
    robot-space format (--robot required)."""
    from retarget_jax.errors import ConfigError
    from retarget_jax.io import load_result, read_robot_motion
    from retarget_jax.metrics.batch import check_result
    from retarget_jax.robots import load_robot

    if fmt == "npz":
        result = load_result(path)
        robot = load_robot(robot_arg or result.robot)
        if robot.name != result.robot:
            raise ConfigError(f"{path}: the result is for robot '{result.robot}', --robot gives '{robot.name}'")
    else:
        if not robot_arg:
            raise ConfigError(f"{path}: --format {fmt} is robot-space; --robot is required")
        robot = load_robot(robot_arg)
        result = read_robot_motion(path, fmt, robot)
    check_result(result, robot, str(path))
    return result, robot


def _evaluate_one(args: argparse.Namespace, contact_bodies) -> int:
    from retarget_jax.metrics import evaluate_results, report_summary, write_report

    t0 = time.perf_counter()
    path = Path(args.result)
    result, robot = _load_for_evaluation(path, args.format, args.robot)
    (report,) = evaluate_results([result], robot, paths=[str(path)], contact_bodies=contact_bodies)
    out = write_report(report, args.output)
    print(
        json.dumps(
            {
                "result": str(path),
                "report": str(out),
                "status": report["status"],
                "frames": report["frames"],
                "robot": robot.name,
                "warnings": len(report["warnings"]),
                "metrics": report_summary(report),
                "seconds": round(time.perf_counter() - t0, 2),
            },
            allow_nan=False,
            default=str,
        )
    )
    return 0


def _report_path(result_path: Path, base: Path, output_dir: Path, job_id: str) -> Path:
    """Where the report of ``result_path`` goes: its path below ``base``, under ``output_dir``,
    with the suffix replaced (results/a/walk.npz -> D/a/walk.metrics.json); a result outside
    ``base`` goes to D/<job_id>/<name>.metrics.json."""
    try:
        rel = result_path.resolve().relative_to(base.resolve())
    except ValueError:
        rel = Path(job_id) / result_path.name
    return output_dir / rel.with_suffix(".metrics.json")


def _evaluate_manifest(args: argparse.Namespace, contact_bodies) -> int:
    from tqdm import tqdm

    from retarget_jax.manifest import (
        EVALUATION_MANIFEST_NAME,
        BatchManifest,
        EvaluationManifest,
        EvaluationRecord,
        manifest_path,
        relative_to_manifest,
    )
    from retarget_jax.metrics import evaluate_results, write_report

    t0 = time.perf_counter()
    mpath = Path(args.batch_manifest)
    manifest = BatchManifest.load(mpath)
    out_dir = Path(args.output_dir)
    out_path = Path(args.output or EVALUATION_MANIFEST_NAME)
    if not out_path.is_absolute():
        out_path = out_dir / out_path
    base = manifest_path(mpath, manifest.output_dir) if manifest.output_dir else mpath.parent
    records: dict[str, EvaluationRecord] = {}
    todo = []  # (record, result path) of jobs with a result to evaluate
    for rec in manifest.records:
        if rec.status == "failed":
            why = f"the batch job failed ({rec.error_type or 'error'})" + (f": {rec.message}" if rec.message else "")
            records[rec.job_id] = EvaluationRecord(rec.job_id, None, None, "skipped", why)
        elif not rec.output:
            records[rec.job_id] = EvaluationRecord(
                rec.job_id, None, None, "failed", f"the batch record says {rec.status} but names no output file"
            )
        else:
            todo.append((rec, manifest_path(mpath, rec.output)))

    used: set[Path] = set()
    chunk = max(1, int(args.chunk_size))
    with tqdm(
        total=len(manifest.records), desc="evaluate", unit="result", file=sys.stderr, disable=args.no_progress
    ) as bar:
        bar.update(len(manifest.records) - len(todo))
        for s in range(0, len(todo), chunk):
            by_robot: dict[str, tuple] = {}
            for rec, rpath in todo[s : s + chunk]:
                rel_result = relative_to_manifest(out_path, rpath)
                try:
                    result, robot = _load_for_evaluation(rpath, args.format, args.robot)
                except (RetargetError, OSError) as e:
                    records[rec.job_id] = EvaluationRecord(
                        rec.job_id, rel_result, None, "failed", f"{type(e).__name__}: {e}"
                    )
                    bar.update(1)
                    continue
                by_robot.setdefault(robot.name, (robot, []))[1].append((rec, rpath, result))
            for robot, items in by_robot.values():
                reports = evaluate_results(
                    [it[2] for it in items],
                    robot,
                    ids=[it[0].job_id for it in items],
                    paths=[str(it[1]) for it in items],
                    contact_bodies=contact_bodies,
                    progress=bar.update,
                )
                for (rec, rpath, _), report in zip(items, reports, strict=True):
                    rep_path = _report_path(rpath, base, out_dir, rec.job_id)
                    if rep_path in used:  # two results mapped to one report name
                        rep_path = rep_path.with_name(f"{rep_path.stem}.{rec.job_id}.json")
                    used.add(rep_path)
                    write_report(report, rep_path)
                    msg = "; ".join(report["warnings"]) if report["status"] == "partial" else ""
                    records[rec.job_id] = EvaluationRecord(
                        rec.job_id,
                        relative_to_manifest(out_path, rpath),
                        relative_to_manifest(out_path, rep_path),
                        report["status"],
                        msg,
                    )
    ev = EvaluationManifest.from_records(
        [records[r.job_id] for r in manifest.records],
        batch_manifest=relative_to_manifest(out_path, mpath),
        output_dir=relative_to_manifest(out_path, out_dir),
    )
    ev.save_json(out_path)
    print(
        json.dumps(
            {
                "batch_manifest": str(mpath),
                "evaluation_manifest": str(out_path),
                "total": ev.total,
                "success": ev.success_count,
                "partial": ev.partial_count,
                "skipped": ev.skipped_count,
                "failed": ev.failed_count,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    )
    return 0


def render_options(args: argparse.Namespace):
    """RenderOptions of the ``render`` flags (ConfigError for a bad value)."""
    from retarget_jax.render import RenderOptions

    return RenderOptions(
        width=args.width,
        height=args.height,
        layout=args.layout,
        distance=args.distance,
        azimuth=args.azimuth,
        elevation=args.elevation,
        fps=args.fps,
        contacts=not args.no_contacts,
        penetration=not args.no_penetration,
        label=not args.no_label,
    )


def _render(args: argparse.Namespace) -> int:
    from retarget_jax.errors import ConfigError
    from retarget_jax.render import (
        parse_frames,
        render_stills,
        render_video,
        skeleton_from_source,
    )

    t0 = time.perf_counter()
    if not args.output and not args.frames:
        raise ConfigError("render: give --output R.mp4 (a video), --frames 0,100,200 (PNG stills), or both")
    if args.output and Path(args.output).suffix.lower() != ".mp4":
        raise ConfigError(
            f"render --output {args.output}: a video is written as .mp4; for PNG stills use --frames with --output-dir"
        )
    options = render_options(args)  # before any file is read: a bad flag fails at once
    path = Path(args.result)
    result, robot = _load_for_evaluation(path, args.format, args.robot)
    skeleton = None
    if args.source:
        skeleton = skeleton_from_source(
            result,
            robot,
            args.source,
            fmt=args.source_format,
            recipe=args.recipe,
            joint_map=args.joint_map,
            body_model_dir=args.body_model_dir,
        )
    name = Path(str(result.provenance.get("source_path") or path)).name
    summary: dict = {"result": str(path), "frames_in_clip": result.num_frames}
    if args.frames:
        frames = parse_frames(args.frames, result.num_frames)
        out_dir = Path(args.output_dir) if args.output_dir else path.parent
        stem = result_stem(path)
        stills = render_stills(result, robot, frames, out_dir, stem=stem, options=options, skeleton=skeleton, name=name)
        summary["stills"] = [str(s) for s in stills]
    if args.output:
        summary["video"] = str(
            render_video(
                result, robot, args.output, options=options, skeleton=skeleton, name=name, progress=not args.no_progress
            )
        )
    from retarget_jax.render import gl_backend

    summary.update(
        backend=gl_backend(), width=options.width, height=options.height, seconds=round(time.perf_counter() - t0, 2)
    )
    print(json.dumps(summary))
    return 0


def add_render_flags(p: argparse.ArgumentParser) -> None:
    """The look of a render (shared by ``render`` and ``report``)."""
    p.add_argument("--width", type=int, default=640, help="pixels (even; default 640)")
    p.add_argument("--height", type=int, default=480, help="pixels (even; default 480)")
    p.add_argument(
        "--layout",
        default="overlay",
        choices=("overlay", "beside", "robot"),
        help="source skeleton drawn inside the robot (default), beside it, or not at all",
    )
    p.add_argument("--distance", type=float, help="camera distance in metres (default: from the robot's height)")
    p.add_argument("--azimuth", type=float, default=135.0, help="camera azimuth in degrees (default 135)")
    p.add_argument("--elevation", type=float, default=-18.0, help="camera elevation in degrees (default -18)")
    p.add_argument("--fps", type=float, help="video frame rate (default: the result's; lower keeps every k-th frame)")
    p.add_argument("--no-contacts", action="store_true", help="do not highlight stance feet")
    p.add_argument("--no-penetration", action="store_true", help="do not mark penetrating geoms")
    p.add_argument("--no-label", action="store_true", help="no clip name, frame counter or legend on the image")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="retarget-jax", description="GPU-batched motion retargeting.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("retarget", help="retarget (or load) one motion file and write one result")
    r.add_argument("input", help="motion file")
    r.add_argument("--format", "-f", required=True, help="input format (see `retarget-jax formats`)")
    r.add_argument("--robot", "-r", default="unitree_g1", help="built-in robot name or an MJCF path")
    r.add_argument("--output", "-o", required=True, help="output file (.npz, .mjlab.npz or .pkl)")
    r.add_argument("--output-format", choices=OUTPUT_FORMATS, help="override the format the file name implies")
    r.add_argument("--recipe", help="recipe name or YAML file (default: <family>_<robot>)")
    r.add_argument("--joint-map", help="joint map name (e.g. mixamo) or YAML file; required for --format bvh")
    r.add_argument("--body-model-dir", help="SMPL/SMPL-H/SMPL-X model files (default: built-in neutral skeletons)")
    r.add_argument("--gender", choices=("neutral", "male", "female"), help="override the file's gender")
    r.add_argument("--fps", type=float, default=None, help="resample to this rate first (default: keep)")
    r.add_argument(
        "--max-iters",
        type=int,
        default=None,
        help="full-rate Levenberg-Marquardt iterations (default: solver.max_iters of the run config)",
    )
    r.add_argument("--contacts", help="explicit ContactPlan (.npz with stance (T, F), or .csv); default: detected")
    r.add_argument(
        "--no-plausibility",
        action="store_true",
        help="switch off the ground, contact, self-collision, joint-speed and acceleration terms",
    )
    r.add_argument("--cache-dir", default="~/.cache/retarget_jax/xla", help="persistent XLA cache ('' = off)")
    r.set_defaults(func=_retarget)
    b = sub.add_parser("batch", help="retarget every matching file of a folder (resumable, batched)")
    b.add_argument("--input-dir", "-i", required=True, help="folder of motion files")
    b.add_argument("--pattern", "-p", help="glob below --input-dir, ** recurses (default: the format's, e.g. **/*.npz)")
    b.add_argument("--format", "-f", help="input format (see `retarget-jax formats`); or input.format in --config")
    b.add_argument(
        "--robot",
        "-r",
        help="built-in robot name or an MJCF path; or robot.name in --config "
        "(required: the driver never guesses a robot)",
    )
    b.add_argument("--config", "-c", help="YAML file of run settings (the keys of `python -m retarget_jax.run`)")
    b.add_argument(
        "--output-dir", "-o", required=True, help="results mirror the input folders here, with batch_manifest.json"
    )
    b.add_argument("--force", action="store_true", help="redo jobs whose outputs exist (default: skip them)")
    b.add_argument("--max-workers", type=int, help="threads reading and preparing files")
    b.add_argument("--max-batch", type=int, help="clips per device batch (default 64)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    b.set_defaults(func=_batch)
    e = sub.add_parser("evaluate", help="metrics reports of one result or of a batch manifest's results")
    e.add_argument("--result", help="one result file (see --format)")
    e.add_argument("--batch-manifest", help="a batch_manifest.json: evaluate every result it lists")
    e.add_argument(
        "--output",
        "-o",
        help="with --result: the report file (R.metrics.json); with --batch-manifest: the evaluation "
        "manifest (default evaluation_manifest.json; a relative path goes inside --output-dir)",
    )
    e.add_argument("--output-dir", help="with --batch-manifest: reports go here, mirroring the results' folders")
    e.add_argument(
        "--robot", "-r", help="robot name or MJCF path (default: the result's; required for robot-space formats)"
    )
    e.add_argument(
        "--format",
        "-f",
        default="npz",
        choices=RESULT_FORMATS,
        help="result file format (default npz, the package's own result)",
    )
    e.add_argument(
        "--contact-bodies",
        help="comma-separated contact links for results without a contact plan "
        "(foot sliding then uses the lowest-foot proxy)",
    )
    e.add_argument("--chunk-size", type=int, default=256, help="results loaded and evaluated at a time")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    e.set_defaults(func=_evaluate)
    v = sub.add_parser(
        "render",
        help="offscreen video or PNG stills of a result (robot, scaled source skeleton, "
        "contacts, penetrations); MUJOCO_GL=egl (default) or osmesa",
    )
    v.add_argument("--result", required=True, help="result file (see --format)")
    v.add_argument("--output", "-o", help="video file (.mp4)")
    v.add_argument("--frames", help="PNG stills of these frames, e.g. 0,100,200 (negative counts from the end)")
    v.add_argument("--output-dir", help="where stills go (default: beside the result), as <stem>.frame_<t>.png")
    v.add_argument(
        "--format",
        "-f",
        default="npz",
        choices=RESULT_FORMATS,
        help="result file format (default npz, the package's own result)",
    )
    v.add_argument(
        "--robot", "-r", help="robot name or MJCF path (default: the result's; required for robot-space formats)"
    )
    v.add_argument(
        "--source",
        "-s",
        help="the source motion file: draw its whole skeleton, scaled as the solver "
        "saw it (default: the result's targets)",
    )
    v.add_argument("--source-format", help="format of --source (default: the result's provenance)")
    v.add_argument("--recipe", help="recipe of the solve (default: the result's provenance)")
    v.add_argument("--joint-map", help="joint map of --source (for --source-format bvh)")
    v.add_argument("--body-model-dir", help="SMPL/SMPL-H/SMPL-X model files for --source")
    add_render_flags(v)
    v.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    v.set_defaults(func=_render)
    from retarget_jax.report.cli import add_report_parser

    add_report_parser(sub)
    from retarget_jax.motionlib.cli import add_parsers as add_motionlib_parsers

    add_motionlib_parsers(sub)  # motionlib build | info | export, and view
    from retarget_jax.dataset.cli import add_parsers as add_dataset_parsers

    add_dataset_parsers(sub)  # dataset build | reshard | check-fk (docs/datasets.md)
    from retarget_jax.calibrate.cli import add_parser as add_calibrate_parser

    add_calibrate_parser(sub)  # calibrate: fit a recipe's continuous parameters (README 'Calibrating a recipe')
    f = sub.add_parser("formats", help="list the input formats")
    f.set_defaults(func=_formats)
    return ap


def main(argv: list[str] | None = None) -> int:
    from retarget_jax.xla_flags import configure_xla

    configure_xla()  # before JAX computes anything (see retarget_jax.xla_flags)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RetargetError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: FileNotFoundError: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
