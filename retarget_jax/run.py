"""Hydra entry point: ``python -m retarget_jax.run +experiment=<name> [key=value ...]``.

Hydra and OmegaConf stay here: the config becomes typed options (RunConfig) before
anything is compiled, so library code never needs Hydra. Unknown or misspelled keys fail
before any work starts, naming the key.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from retarget_jax.config import RunConfig, run_robot, run_settings
from retarget_jax.files.resources import config_dir
from retarget_jax.formats import DEFAULT_PATTERNS, MotionFormat, output_format_of, result_stem

ConfigStore.instance().store(name="run_schema", node=RunConfig)
_ = MISSING


def _jobs(cfg: RunConfig, out_dir: Path, robot_name: str, config_path: str | None):
    from retarget_jax.batch.jobs import DEMO_JOB, BatchJob, find_inputs, make_jobs, output_path
    from retarget_jax.errors import ConfigError

    formats = list(cfg.output.formats) or ["npz"]
    if cfg.input.path is None:
        return (
            [
                BatchJob(
                    DEMO_JOB,
                    DEMO_JOB,
                    str(output_path(out_dir, DEMO_JOB, formats[0])),
                    DEMO_JOB,
                    None,
                    robot_name,
                    config_path,
                )
            ],
            None,
            None,
        )
    p = Path(cfg.input.path).expanduser()
    if p.is_dir():
        pattern = cfg.input.pattern or DEFAULT_PATTERNS.get(cfg.input.format, "**/*")
        files, base = find_inputs(p, pattern), p
    elif p.exists():
        pattern, files, base = None, [p], p.parent
    else:
        raise ConfigError(f"input.path does not exist: {p}")
    jobs = make_jobs(
        files, base, out_dir, formats=formats, motion_format=cfg.input.format, robot=robot_name, config_path=config_path
    )
    return jobs, str(base), pattern


def execute(cfg: RunConfig, *, config_path: str | None = None) -> dict:
    """Run a retargeting batch from a typed config; returns a summary (also printed).

    Jobs are the input files (or the embedded demo walk); see :mod:`retarget_jax.batch`
    for resuming, buckets, windows, devices and processes.
    """
    import logging

    from retarget_jax.xla_flags import configure_xla

    configure_xla()  # before JAX computes anything (see retarget_jax.xla_flags)
    import jax

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    if cfg.jax_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(cfg.jax_cache_dir).expanduser()))
    from retarget_jax.batch import distributed
    from retarget_jax.batch.runner import BatchRunner
    from retarget_jax.batch.worker import RetargetWorker
    from retarget_jax.errors import ConfigError
    from retarget_jax.manifest import (
        BATCH_MANIFEST_NAME,
        RUN_CONFIG_NAME,
        manifest_path,
        masked_note,
    )

    t0 = time.perf_counter()
    fmt = MotionFormat.parse(cfg.input.format, where="input.format")
    robot = run_robot(cfg)
    out_dir = Path(cfg.output.dir or f"outputs/{cfg.name}").expanduser()
    jobs, input_dir, pattern = _jobs(cfg, out_dir, robot.name, config_path)
    if cfg.contacts.path is not None and len(jobs) != 1:
        raise ConfigError(f"contacts.path gives one clip's plan, but the input has {len(jobs)} clips")
    rs = run_settings(cfg)
    c = cfg.contacts
    render_opts = _render_options(cfg)  # a bad render setting fails before any work
    b = cfg.batch
    mpath = out_dir / BATCH_MANIFEST_NAME
    worker = RetargetWorker(
        robot=robot,
        motion_format=fmt,
        manifest_path=mpath,
        settings=rs.problem,
        options=rs.options,
        recipe=cfg.recipe,
        formats=list(cfg.output.formats) or ["npz"],
        joint_map=cfg.input.joint_map,
        body_model_dir=cfg.body_model.dir,
        gender=cfg.body_model.gender,
        contacts_path=c.path,
        buckets=rs.buckets,
        max_batch=rs.max_batch,
        window=rs.window,
        overlap=rs.overlap,
        demo_frames=cfg.input.demo_frames,
    )
    d = b.distributed
    proc = distributed.initialize(d.enabled, d.coordinator_address, d.num_processes, d.process_id, d.merge_timeout_s)
    runner = BatchRunner(
        chunk_size=b.max_batch,
        prefetch=b.prefetch,
        progress=b.progress,
        process_index=proc.index,
        process_count=proc.count,
        barrier=proc.barrier,
        merge_timeout_s=d.merge_timeout_s,
    )
    print(
        f"[retarget_jax] {len(jobs)} job(s), {fmt.value} -> {robot.name}, output {out_dir}"
        + (f", process {proc.index + 1} of {proc.count}" if proc.count > 1 else ""),
        flush=True,
    )
    if proc.index == 0:  # the settings of this run, for reports (retarget-jax report)
        from retarget_jax.io import atomic_write_text

        atomic_write_text(out_dir / RUN_CONFIG_NAME, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    manifest = runner.run(
        jobs,
        worker,
        mpath,
        max_workers=b.max_workers,
        force=b.force,
        input_dir=input_dir,
        output_dir=str(out_dir),
        pattern=pattern,
    )
    failed = [
        {"source": r.motion, "job_id": r.job_id, "error_type": r.error_type, "message": r.message}
        for r in manifest.records
        if r.status == "failed"
    ]
    written = [
        str(manifest_path(mpath, o))
        for r in manifest.records
        if r.status == "success"
        for o in r.provenance.get("outputs", [r.output])
    ]
    frames = sum(int(r.provenance.get("frames", 0)) for r in manifest.records if r.status == "success")
    # clips whose masked (NaN, missing) samples were filled for the solve: said, not silent
    masked = [
        {
            "job_id": r.job_id,
            "motion": r.motion,
            "masked_frames": r.masked_frames,
            "masked_joints": r.masked_joints,
            "note": masked_note(r.provenance),
        }
        for r in manifest.records
        if r.status == "success" and r.masked_frames > 0
    ]
    summary = {
        "written": written,
        "failed": failed,
        "frames": frames,
        "masked": masked,
        "manifest": str(mpath),
        "success": manifest.success_count,
        "skipped": manifest.skipped_count,
        "failed_count": manifest.failed_count,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if render_opts is not None and proc.index == 0:
        summary["rendered"], summary["render_failed"] = _render_outputs(cfg, manifest, mpath, robot, render_opts)
    for f in failed:
        print(f"  FAILED {f['job_id']}: {f['error_type']}: {f['message']}", file=sys.stderr)
    print(
        f"[retarget_jax] {manifest.success_count} solved or loaded, {manifest.skipped_count} skipped, "
        f"{manifest.failed_count} failed; {frames} frames in {summary['seconds']} s; manifest {mpath}",
        flush=True,
    )
    for m in masked:
        print(f"  {m['job_id']}: {m['note']}")
    for w in written[:12]:
        print(f"  {w}")
    if len(written) > 12:
        print(f"  ... and {len(written) - 12} more (see the manifest)")
    if "rendered" in summary:
        print(
            f"[retarget_jax] rendered {len(summary['rendered'])} file(s) beside the results"
            + (f", {len(summary['render_failed'])} clip(s) could not be drawn" if summary["render_failed"] else ""),
            flush=True,
        )
    return summary


def _render_options(cfg: RunConfig):
    """RenderOptions of ``render`` (None when nothing is to be rendered)."""
    r = cfg.render
    if not r.video and not r.stills:
        return None
    from retarget_jax.render import RenderOptions

    return RenderOptions(width=r.width, height=r.height, layout=r.layout, fps=r.fps)


def _render_outputs(cfg: RunConfig, manifest, mpath: Path, robot, options) -> tuple[list[str], list[dict]]:
    """Draw every result the batch wrote or kept: ``<result>.mp4`` and/or stills beside it.
    A clip that cannot be drawn is reported and the others still are."""
    from tqdm import tqdm

    from retarget_jax.errors import RetargetError
    from retarget_jax.io import load_result, read_robot_motion
    from retarget_jax.manifest import manifest_path
    from retarget_jax.render import parse_frames, render_stills, render_video

    done: list[str] = []
    failed: list[dict] = []
    records = [r for r in manifest.records if r.status in ("success", "skipped") and r.output]
    for rec in tqdm(records, desc="render", unit="clip", file=sys.stderr, disable=not cfg.batch.progress):
        outputs = [manifest_path(mpath, o) for o in rec.provenance.get("outputs", [rec.output])]
        path = next((o for o in outputs if output_format_of(o) == "npz"), outputs[0])
        stem = result_stem(path)
        fmt = output_format_of(path)
        try:
            result = load_result(path) if fmt == "npz" else read_robot_motion(path, fmt, robot)
            name = Path(rec.motion).name
            if cfg.render.stills:
                frames = parse_frames(list(cfg.render.stills), result.num_frames, where="render.stills")
                done += [
                    str(p)
                    for p in render_stills(result, robot, frames, path.parent, stem=stem, options=options, name=name)
                ]
            if cfg.render.video:
                done.append(str(render_video(result, robot, path.with_name(f"{stem}.mp4"), options=options, name=name)))
        except (RetargetError, OSError) as e:
            failed.append({"job_id": rec.job_id, "error_type": type(e).__name__, "message": str(e)})
            print(f"  RENDER FAILED {rec.job_id}: {type(e).__name__}: {e}", file=sys.stderr)
    return done, failed


def typed_config(cfg: DictConfig) -> RunConfig:
    """The composed config as a RunConfig. Merging into the schema also rejects keys that
    were appended with ``+key=...`` (Hydra lets those through a structured config)."""
    from retarget_jax.errors import ConfigError

    if "hydra" in cfg:  # compose(return_hydra_config=True): Hydra's own section is not ours
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.to_container(cfg, resolve=True))
    except Exception as e:  # omegaconf's errors name the key and the expected type
        raise ConfigError(f"bad config: {e}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def _hydra_output_dir(cfg: RunConfig) -> str:
    """Where a Hydra job writes: its run directory (``outputs/<name>``; in a multirun
    ``multirun/<name>/<job num>_<overrides>``), or, when ``output.dir`` is set, that
    directory (plus the job's own subdirectory in a multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if cfg.output.dir is None:
        return str(run_dir)
    if hc.mode == RunMode.MULTIRUN:
        return str(Path(cfg.output.dir) / run_dir.name)
    return cfg.output.dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> None:
    run = typed_config(cfg)
    run.output.dir = _hydra_output_dir(run)
    execute(run)


if __name__ == "__main__":
    main()
