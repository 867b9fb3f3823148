"""Rendered files: PNG stills, contact sheets and MP4 videos of a result (host).

Stage: render. Every file goes through :mod:`retarget_jax.files.atomic` (a video is encoded
to a hidden temporary file beside the output and renamed when complete). PNGs are written
with Pillow; MP4 (H.264, yuv420p, plays in browsers) with the ffmpeg binary that the
``imageio-ffmpeg`` wheel carries, so no system ffmpeg is needed. Both come with the
``render`` extra: ``pip install "retarget-jax[render]"``.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retarget_jax.errors import RenderError
from retarget_jax.files.atomic import atomic_path, atomic_write_bytes
from retarget_jax.render.scene import RenderOptions, ResultRenderer, SourceSkeleton
from retarget_jax.result import RetargetingResult
from retarget_jax.robots.spec import RobotSpec

_EXTRA = 'pip install "retarget-jax[render]"'


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes (Pillow)."""
    try:
        from PIL import Image
    except ImportError as e:
        raise RenderError(f"writing PNG needs Pillow: {_EXTRA}") from e
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, np.uint8)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) uint8 image as a PNG, atomically."""
    return atomic_write_bytes(path, png_bytes(image))


def parse_frames(text: str | Sequence[int], num_frames: int, *, where: str = "--frames") -> list[int]:
    """Frame indices from ``"0,100,200"`` (negative counts from the end, like Python).

    Raises RenderError naming ``where`` for a non-integer or a frame outside the clip.
    """
    items = [s.strip() for s in text.split(",") if s.strip()] if isinstance(text, str) else list(text)
    if not items:
        raise RenderError(f"{where}: no frame given")
    out = []
    for s in items:
        try:
            t = int(s)
        except (TypeError, ValueError):
            raise RenderError(f"{where}: {s!r} is not a frame number") from None
        if not -num_frames <= t < num_frames:
            raise RenderError(f"{where}: frame {t} is outside the clip (0..{num_frames - 1})")
        out.append(t % num_frames)
    return out


def render_stills(
    result: RetargetingResult,
    robot: RobotSpec,
    frames: Sequence[int],
    output_dir: str | os.PathLike,
    *,
    stem: str,
    options: RenderOptions | None = None,
    skeleton: SourceSkeleton | None | bool = None,
    name: str | None = None,
) -> list[Path]:
    """One PNG per frame: ``<output_dir>/<stem>.frame_<t:05d>.png``; returns the paths."""
    out = Path(output_dir)
    frames = parse_frames(frames, result.num_frames, where="frames")
    paths = []
    with ResultRenderer(result, robot, options=options, skeleton=skeleton, name=name) as r:
        for t, img in r.frames(frames):
            paths.append(write_png(img, out / f"{stem}.frame_{t:05d}.png"))
    return paths


def contact_sheet_frames(num_frames: int, count: int = 4) -> list[int]:
    """``count`` frames spread evenly over a clip, first and last included."""
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, max(1, min(count, num_frames)))})


def render_contact_sheet(
    result: RetargetingResult,
    robot: RobotSpec,
    output: str | os.PathLike,
    *,
    frames: Sequence[int] | None = None,
    options: RenderOptions | None = None,
    skeleton: SourceSkeleton | None | bool = None,
    name: str | None = None,
) -> Path:
    """One PNG with several frames side by side (default: 4 spread over the clip)."""
    frames = parse_frames(
        frames if frames is not None else contact_sheet_frames(result.num_frames), result.num_frames, where="frames"
    )
    with ResultRenderer(result, robot, options=options, skeleton=skeleton, name=name) as r:
        tiles = [img for _, img in r.frames(frames)]
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    sheet = np.concatenate([x for tile in tiles for x in (tile, gap)][:-1], axis=1)
    return write_png(sheet, output)


def render_video(
    result: RetargetingResult,
    robot: RobotSpec,
    output: str | os.PathLike,
    *,
    options: RenderOptions | None = None,
    skeleton: SourceSkeleton | None | bool = None,
    name: str | None = None,
    progress: bool = False,
) -> Path:
    """An MP4 (H.264) of the whole clip at the result's rate (or ``options.fps``)."""
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise RenderError(f"writing MP4 needs imageio-ffmpeg: {_EXTRA}") from e
    from tqdm import tqdm

    out = Path(output)
    with ResultRenderer(result, robot, options=options, skeleton=skeleton, name=name) as r:
        opts = r.options
        indices = r.frame_indices()
        with atomic_path(out) as tmp:
            try:
                with warnings.catch_warnings():  # JAX warns of any fork; ffmpeg's is a fork+exec, which is safe
                    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                    writer = imageio_ffmpeg.write_frames(
                        str(tmp),
                        (opts.width, opts.height),
                        fps=r.video_fps(),
                        codec="libx264",
                        pix_fmt_out="yuv420p",
                        quality=7,
                        macro_block_size=2,
                        ffmpeg_log_level="error",
                        output_params=["-movflags", "+faststart"],
                    )
                    writer.send(None)  # starts ffmpeg
            except Exception as e:
                raise RenderError(
                    f"{out}: cannot start the video encoder (ffmpeg of imageio-ffmpeg): {type(e).__name__}: {e}"
                ) from e
            try:
                for _, img in tqdm(
                    r.frames(indices),
                    total=len(indices),
                    desc=f"render {r.name}",
                    unit="frame",
                    file=sys.stderr,
                    disable=not progress,
                ):
                    writer.send(np.ascontiguousarray(img))
                writer.close()
            except RenderError:
                writer.close()
                raise
            except Exception as e:  # the encoder died (disk full, codec missing)
                raise RenderError(f"{out}: the video encoder failed: {type(e).__name__}: {e}") from e
    return out
