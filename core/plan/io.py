"""Plans as JSON text and files: parse and validate, read (at most 1 MB, UTF-8), write atomically."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from core.messages import short_repr
from core.outputs import atomic_write_bytes
from core.plan.schema import MAX_PLAN_BYTES, PlanValidationError, VideoPlan, format_validation_error


def parse_plan(data: str | bytes | dict) -> VideoPlan:
    """Validate a plan given as JSON text or a dict.

    JSON text is read strictly (numbers must be JSON numbers: ``"3"`` and ``true`` are refused) and
    may start with a UTF-8 byte-order mark. Limits are the ``MAX_*`` constants of this module.

    Raises:
        PlanValidationError: text over :data:`MAX_PLAN_BYTES`, invalid JSON or an invalid plan; each
            line names the field and the allowed range.
    """
    try:
        if isinstance(data, (str, bytes)):
            size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
            if size > MAX_PLAN_BYTES:
                raise PlanValidationError([f"plan: must be at most {MAX_PLAN_BYTES // 1000} kB (got {size / 1000:.0f} kB)"])
            data = data.removeprefix(b"\xef\xbb\xbf") if isinstance(data, bytes) else data.removeprefix("\ufeff")
            return VideoPlan.model_validate_json(data, strict=True)
        return VideoPlan.model_validate(data)
    except ValidationError as error:
        raise PlanValidationError(format_validation_error(error)) from None


def load_plan(path: str | Path) -> VideoPlan:
    """Read and validate a plan file (UTF-8, at most :data:`MAX_PLAN_BYTES`).

    Raises:
        PlanValidationError: the file is too large, not UTF-8 or not a valid plan; the line starts
            with the file's path.
        OSError: the file cannot be read (FileNotFoundError, IsADirectoryError, PermissionError).
    """
    path = Path(path)
    with path.open("rb") as handle:
        data = handle.read(MAX_PLAN_BYTES + 1)
    try:
        if len(data) > MAX_PLAN_BYTES:
            raise PlanValidationError([f"plan: must be at most {MAX_PLAN_BYTES // 1000} kB (got {path.stat().st_size / 1000:.0f} kB)"])
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise PlanValidationError([f"not UTF-8 text (byte {error.start})"]) from None
        return parse_plan(text)
    except PlanValidationError as error:
        raise PlanValidationError([f"{short_repr(str(path), 80)[1:-1]}: {line}" for line in error.errors]) from None


def save_plan(plan: VideoPlan, path: str | Path) -> None:
    """Write the plan as indented JSON, atomically."""
    atomic_write_bytes(path, (plan.model_dump_json(indent=2) + "\n").encode())
