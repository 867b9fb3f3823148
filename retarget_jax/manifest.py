"""Manifests of batch runs and of their evaluation: JSON files listing one record per job.

Stage: batch bookkeeping (host). A batch run (``retarget_jax.batch``) retargets many
motion files and writes a :class:`BatchManifest` (``batch_manifest.json``) beside its
outputs: one :class:`BatchRunRecord` per job, in submission order. ``retarget-jax
evaluate --batch-manifest`` reads it, evaluates every result and writes an
:class:`EvaluationManifest` with one :class:`EvaluationRecord` per job.

Paths inside a manifest are relative to the manifest file's directory, or absolute.
Times are ISO 8601 strings in UTC. Both files are written atomically (temporary file and
rename), so a reader sees the old manifest or the new one, never half of one.

Batch record status: ``success`` (the result was written), ``skipped`` (the result was
already there and was kept), ``failed`` (no result; ``message`` and ``error_type`` say
why). A solved record's ``provenance`` counts the source samples that were masked (NaN,
missing) and filled for the solve: ``masked_frames``, ``masked_joints`` (0 when none) and
``masked_per_joint`` (role -> frames); :func:`masked_note` words them.
Evaluation record status: ``success`` / ``partial`` (a report was written; partial
= some metric failed, see the report's warnings), ``skipped`` (the batch job failed, so
there is no result to evaluate), ``failed`` (the batch record promises a result but the
file is missing or unreadable; ``message`` says why).

:meth:`BatchManifest.load` / :meth:`EvaluationManifest.load` check every field and raise
:class:`~retarget_jax.errors.MotionFormatError` naming the file and the field
(``records[3].status``) with what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from retarget_jax.errors import ConfigError, MotionFormatError
from retarget_jax.files.atomic import atomic_write_text

MANIFEST_SCHEMA_VERSION = 1
BATCH_MANIFEST_NAME = "batch_manifest.json"
EVALUATION_MANIFEST_NAME = "evaluation_manifest.json"
#: The settings of a batch run as YAML, written beside its batch manifest (reports show it).
RUN_CONFIG_NAME = "run_config.yaml"
BATCH_STATUSES: tuple[str, ...] = ("success", "skipped", "failed")
EVALUATION_STATUSES: tuple[str, ...] = ("success", "partial", "skipped", "failed")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (``2025-01-31T12:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def manifest_path(manifest_file: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` from a manifest resolved against the manifest file's directory."""
    p = Path(path)
    return p if p.is_absolute() else Path(manifest_file).parent / p


def relative_to_manifest(manifest_file: str | os.PathLike, path: str | os.PathLike) -> str:
    """How a manifest at ``manifest_file`` records ``path``: relative to the manifest's
    directory when ``path`` lies below it, else absolute."""
    base = Path(manifest_file).resolve().parent
    p = Path(path).resolve()
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- field checks

_TYPE_WORDS = {str: "a string", int: "an integer", dict: "a JSON object", list: "a JSON array"}


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    text = json.dumps(v) if isinstance(v, str | int | float | bool) else type(v).__name__
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Typed access to one JSON object of a manifest; errors name the file and the field."""

    def __init__(self, path: Path, data: Any, prefix: str = "") -> None:
        self.path, self.prefix = path, prefix
        if not isinstance(data, dict):
            raise MotionFormatError(
                path, f"expected a JSON object, found {_describe(data)}", field=prefix.rstrip(".") or None
            )
        self.data = data

    def get(self, key: str, kind: type, *, required: bool = True, nullable: bool = False, default: Any = None):
        field = self.prefix + key
        if key not in self.data:
            if required:
                raise MotionFormatError(self.path, "missing required field", field=field)
            return default
        v = self.data[key]
        if v is None and nullable:
            return None
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if not ok:
            expected = _TYPE_WORDS[kind] + (" or null" if nullable else "")
            raise MotionFormatError(self.path, f"expected {expected}, found {_describe(v)}", field=field)
        return v

    def status(self, key: str, allowed: tuple[str, ...]) -> str:
        v = self.get(key, str)
        if v not in allowed:
            raise MotionFormatError(
                self.path, f"expected one of {', '.join(allowed)}, found {_describe(v)}", field=self.prefix + key
            )
        return v

    def count(self, key: str) -> int:
        v = self.get(key, int)
        if v < 0:
            raise MotionFormatError(self.path, f"expected a count >= 0, found {v}", field=self.prefix + key)
        return v


def _read_json(path: str | os.PathLike) -> tuple[Path, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise MotionFormatError(path, f"cannot read the manifest: {e}") from None
    try:
        return path, json.loads(text)
    except json.JSONDecodeError as e:
        raise MotionFormatError(path, f"not valid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None


def _check_schema(r: _Reader) -> int:
    v = r.get("schema_version", int)
    if v != MANIFEST_SCHEMA_VERSION:
        raise MotionFormatError(
            r.path, f"expected schema version {MANIFEST_SCHEMA_VERSION}, found {v}", field="schema_version"
        )
    return v


def _records(r: _Reader, parse) -> list:
    raw = r.get("records", list)
    out, seen = [], {}
    for i, item in enumerate(raw):
        rec = parse(_Reader(r.path, item, f"records[{i}]."))
        if rec.job_id in seen:
            raise MotionFormatError(
                r.path, f"job_id {rec.job_id!r} is also records[{seen[rec.job_id]}]", field=f"records[{i}].job_id"
            )
        seen[rec.job_id] = i
        out.append(rec)
    return out


def _read_manifest(path, parse, statuses):
    """(reader, records, counts per status) of a manifest file, schema, records and counts
    checked against each other (MotionFormatError naming the file and field)."""
    path, data = _read_json(path)
    r = _Reader(path, data)
    _check_schema(r)
    records = _records(r, parse)
    counts = {s: r.count(f"{s}_count") for s in statuses}
    r.count("total")
    _check_counts(r, counts, records, statuses)
    return r, records, counts


def _check_counts(r: _Reader, counts: Mapping[str, int], records: list, statuses: tuple[str, ...]) -> None:
    for s in statuses:
        found = sum(rec.status == s for rec in records)
        if counts[s] != found:
            raise MotionFormatError(
                r.path, f"says {counts[s]} but the records hold {found} with status '{s}'", field=f"{s}_count"
            )
    if r.data["total"] != len(records):
        raise MotionFormatError(r.path, f"says {r.data['total']} but there are {len(records)} records", field="total")


def _write_json(path: str | os.PathLike, data: Mapping) -> Path:
    return atomic_write_text(path, json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n")


def _counts(records: Iterable, statuses: tuple[str, ...]) -> dict[str, int]:
    records = list(records)
    unknown = sorted({rec.status for rec in records} - set(statuses))
    if unknown:
        raise ConfigError(f"record status {unknown[0]!r} is not one of {', '.join(statuses)}")
    return {s: sum(rec.status == s for rec in records) for s in statuses}


# --------------------------------------------------------------------------- batch manifest


@dataclasses.dataclass
class BatchRunRecord:
    """One job of a batch run.

    Attributes:
        job_id: unique within the manifest.
        motion: the input motion file.
        output: the result file, relative to the manifest's directory or absolute
            (None when a failed job wrote nothing).
        status: ``success``, ``skipped`` or ``failed``.
        started_at, finished_at: ISO 8601 UTC, or None.
        message: what happened (the error message of a failed job).
        error_type: the error's ``error_type`` / class name for a failed job, else None.
        provenance: the result's provenance (JSON-able), or {}; a solved job's includes
            ``masked_frames`` / ``masked_joints`` (counts, see the module docstring).
    """

    job_id: str
    motion: str
    output: str | None
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    message: str = ""
    error_type: str | None = None
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def masked_frames(self) -> int:
        """Frames of the source with masked (NaN, missing) samples filled for the solve."""
        return int(self.provenance.get("masked_frames", 0))

    @property
    def masked_joints(self) -> int:
        """Joints of the source with masked samples filled for the solve."""
        return int(self.provenance.get("masked_joints", 0))

    @classmethod
    def _parse(cls, r: _Reader) -> BatchRunRecord:
        prov = r.get("provenance", dict, required=False, nullable=True) or {}
        p = _Reader(r.path, prov, f"{r.prefix}provenance.")
        for key in MASKED_COUNTS:
            if key in prov:
                p.count(key)
        return cls(
            job_id=r.get("job_id", str),
            motion=r.get("motion", str),
            output=r.get("output", str, nullable=True),
            status=r.status("status", BATCH_STATUSES),
            started_at=r.get("started_at", str, required=False, nullable=True),
            finished_at=r.get("finished_at", str, required=False, nullable=True),
            message=r.get("message", str, required=False, default="") or "",
            error_type=r.get("error_type", str, required=False, nullable=True),
            provenance=prov,
        )


#: the provenance counts of masked and filled source samples (non-negative integers)
MASKED_COUNTS: tuple[str, ...] = ("masked_frames", "masked_joints")


def masked_note(provenance: Mapping[str, Any]) -> str:
    """``"filled 12 masked frames (3 joints)"`` for a provenance that records masked
    samples filled for the solve; ``""`` when there were none (or none are recorded)."""
    frames, joints = (int(provenance.get(k) or 0) for k in MASKED_COUNTS)
    if frames <= 0:
        return ""
    return f"filled {frames} masked frame{'s' if frames != 1 else ''} ({joints} joint{'s' if joints != 1 else ''})"


class _Counted:
    """What both manifests share: counts of records by status (``<status>_count`` fields,
    ``STATUSES``), kept equal to the records, and JSON output."""

    STATUSES: ClassVar[tuple[str, ...]] = ()
    records: list
    total: int

    def recount(self):
        c = _counts(self.records, self.STATUSES)
        self.total = len(self.records)
        for s in self.STATUSES:
            setattr(self, f"{s}_count", c[s])
        return self

    def records_by_id(self) -> dict:
        """job_id -> record."""
        return {r.job_id: r for r in self.records}

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["records"] = [r.to_json() for r in self.records]
        return d

    @classmethod
    def _loaded(cls, r, records, counts, **fields: Any):
        """A manifest read by :func:`_read_manifest`: the common fields from the file and
        the counts, the rest (``fields``) as the subclass read them."""
        return cls(
            schema_version=MANIFEST_SCHEMA_VERSION,
            created_at=r.get("created_at", str),
            total=len(records),
            records=records,
            **{f"{s}_count": counts[s] for s in cls.STATUSES},
            **fields,
        )

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write atomically; ConfigError when the counts do not match the records."""
        c = _counts(self.records, self.STATUSES)
        if self.total != len(self.records) or any(getattr(self, f"{s}_count") != c[s] for s in self.STATUSES):
            raise ConfigError(f"{path}: manifest counts do not match its records; call recount() first")
        return _write_json(path, self.to_json())


@dataclasses.dataclass
class BatchManifest(_Counted):
    """The manifest of a batch run (``batch_manifest.json``): see the module docstring.

    Counts follow the records; build one with :meth:`from_records` (or call
    :meth:`recount` after changing ``records``).
    """

    STATUSES: ClassVar[tuple[str, ...]] = BATCH_STATUSES
    schema_version: int = MANIFEST_SCHEMA_VERSION
    created_at: str = ""
    updated_at: str = ""
    input_dir: str | None = None
    output_dir: str | None = None
    pattern: str | None = None
    total: int = 0
    success_count: int = 0
    skipped_count: int = 0
    failed_count: int = 0
    records: list[BatchRunRecord] = dataclasses.field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[BatchRunRecord], **meta: Any) -> BatchManifest:
        """A manifest of ``records`` with counts computed; ``meta`` sets ``input_dir``,
        ``output_dir``, ``pattern``, ``created_at`` / ``updated_at`` (default now)."""
        now = utc_now()
        m = cls(
            records=list(records),
            created_at=meta.pop("created_at", now),
            updated_at=meta.pop("updated_at", now),
            **meta,
        )
        return m.recount()

    @classmethod
    def load(cls, path: str | os.PathLike) -> BatchManifest:
        """Read and check a batch manifest (MotionFormatError naming the file and field)."""
        r, records, counts = _read_manifest(path, BatchRunRecord._parse, BATCH_STATUSES)
        return cls._loaded(
            r,
            records,
            counts,
            updated_at=r.get("updated_at", str),
            input_dir=r.get("input_dir", str, nullable=True),
            output_dir=r.get("output_dir", str, nullable=True),
            pattern=r.get("pattern", str, nullable=True),
        )


# --------------------------------------------------------------------------- evaluation manifest


@dataclasses.dataclass
class EvaluationRecord:
    """The evaluation of one batch job.

    Attributes:
        job_id: the batch record's job id.
        result: the result file evaluated (relative to this manifest's directory or
            absolute), or None when the batch job wrote none.
        report: the metrics report written, likewise, or None.
        status: ``success``, ``partial``, ``skipped`` or ``failed`` (module docstring).
        message: why a record is partial, skipped or failed ("" on success).
    """

    job_id: str
    result: str | None
    report: str | None
    status: str
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def _parse(cls, r: _Reader) -> EvaluationRecord:
        return cls(
            job_id=r.get("job_id", str),
            result=r.get("result", str, nullable=True),
            report=r.get("report", str, nullable=True),
            status=r.status("status", EVALUATION_STATUSES),
            message=r.get("message", str, required=False, default="") or "",
        )


@dataclasses.dataclass
class EvaluationManifest(_Counted):
    """The manifest of ``retarget-jax evaluate --batch-manifest``: one record per job."""

    STATUSES: ClassVar[tuple[str, ...]] = EVALUATION_STATUSES
    schema_version: int = MANIFEST_SCHEMA_VERSION
    created_at: str = ""
    batch_manifest: str = ""
    output_dir: str = ""
    total: int = 0
    success_count: int = 0
    partial_count: int = 0
    skipped_count: int = 0
    failed_count: int = 0
    records: list[EvaluationRecord] = dataclasses.field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[EvaluationRecord], **meta: Any) -> EvaluationManifest:
        """A manifest of ``records`` with counts computed; ``meta`` sets ``batch_manifest``,
        ``output_dir`` and ``created_at`` (default now)."""
        m = cls(records=list(records), created_at=meta.pop("created_at", utc_now()), **meta)
        return m.recount()

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationManifest:
        """Read and check an evaluation manifest (MotionFormatError naming file and field)."""
        r, records, counts = _read_manifest(path, EvaluationRecord._parse, EVALUATION_STATUSES)
        return cls._loaded(
            r, records, counts, batch_manifest=r.get("batch_manifest", str), output_dir=r.get("output_dir", str)
        )
