"""Reading any supported layout into an import batch: the one door the CLI and `POST /v1/imports` share.

The normalised and EmbedLLM layouts are read by `encoder.data` (which the registry may not import),
every other format by `registry.importers`; both end as a `registry.importers.ImportBatch` for
`registry.services.import_batch`.
"""

from __future__ import annotations

from pathlib import Path

from encoder.data import DataFormatError, load_embedllm, load_normalised
from registry import importers
from registry.importers import ImportBatch, ImportFormatError, ImportOptions, Provenance

FORMATS = sorted([*importers.FORMATS, *importers.TABLE_FORMATS])


def load_batch(
    path: Path, fmt: str | None, options: ImportOptions, *, allow_pickle: bool = False
) -> ImportBatch:
    """Read `path` in format `fmt` (detected from the files when None); raises ImportFormatError."""
    path = Path(path)
    try:
        fmt = fmt or importers.detect_format(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ImportFormatError):
            raise
        raise ImportFormatError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if fmt not in importers.TABLE_FORMATS:
        return importers.read(path, fmt, options, allow_pickle=allow_pickle)
    try:
        if fmt == "normalised":
            table = load_normalised(path, options.name)
            files = [path / "questions.csv", path / "labels.csv"]
        else:
            table = load_embedllm(path, options.name or path.name)
            files = [
                p
                for p in (path / f for f in ("train.csv", "val.csv", "test.csv", "model_order.csv"))
                if p.is_file()
            ]
    except DataFormatError as exc:
        raise ImportFormatError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    provenance = Provenance(
        tool=fmt, task=table.name, file_name=path.name, file_sha256=importers.sha256_files(files)
    )
    return importers.from_table(
        table.name,
        table.question_ids,
        table.texts,
        table.categories,
        table.model_names,
        table.labels,
        provenance,
    )
