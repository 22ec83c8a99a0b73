"""The dataset records: :class:`Case` (one case's files), :class:`Dataset` (cases with shared
channel and label definitions) and :class:`Problem` (one finding of
:func:`~medseg.datasets.check_dataset`). Paths inside a :class:`Case` are absolute."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import ConfigError


@dataclass(frozen=True)
class Case:
    """One training or test case.

    Attributes:
        case_id: unique identifier (used in splits, caches and reports).
        images: one path per channel, in channel order; or a single 4-D file when
            ``channel_indices`` is given.
        label: the label map path, or ``None`` for unlabelled cases.
        channel_indices: for a single 4-D image file, the volume index of each channel
            (``(0, 1)`` for FLAIR + T1c stored as 4-D); ``None`` when ``images`` holds one 3-D file
            per channel.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    channel_indices: tuple[int, ...] | None = None

    @property
    def n_channels(self) -> int:
        return len(self.channel_indices) if self.channel_indices is not None else len(self.images)

    def files(self) -> list[Path]:
        """Every file the case depends on (images then label)."""
        out = list(self.images)
        if self.label is not None:
            out.append(self.label)
        return out


@dataclass(frozen=True)
class Dataset:
    """A set of cases with shared channel and label definitions.

    Attributes:
        name: dataset name (from ``dataset.json`` or the folder name).
        channel_names: one name per input channel, e.g. ``["FLAIR", "T1c"]`` or ``["CT"]``.
        label_names: ``{value: name}``, including ``0`` (background).
        cases: the cases, sorted by ``case_id``.
        root: the folder the dataset was loaded from.
        source: the file that described it (``dataset.json``, the CSV) or the folder itself.
    """

    name: str
    channel_names: list[str]
    label_names: dict[int, str]
    cases: list[Case]
    root: Path
    source: Path = field(default=Path("."))

    def case(self, case_id: str) -> Case:
        """The case ``case_id``; :class:`~medseg.errors.ConfigError` naming the dataset's
        source when it has no such case."""
        for c in self.cases:
            if c.case_id == case_id:
                return c
        ids = [c.case_id for c in self.cases]
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise ConfigError(
            f"{self.source}: no case {case_id!r}; expected one of its {len(ids)} case ids ({shown})"
        )

    def subset(self, case_ids: Sequence[str]) -> Dataset:
        """The dataset restricted to ``case_ids`` (an unknown id is a
        :class:`~medseg.errors.ConfigError`)."""
        return Dataset(
            self.name,
            list(self.channel_names),
            dict(self.label_names),
            [self.case(c) for c in case_ids],
            self.root,
            self.source,
        )


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`check_dataset`.

    ``case_id`` is ``None`` for dataset-level problems; ``path`` is the file concerned.
    ``severity`` is ``"error"`` (the dataset cannot be used as is) or ``"warning"``.
    """

    case_id: str | None
    path: Path | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.case_id if self.case_id is not None else "<dataset>"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"warning: {text}" if self.severity == "warning" else text


__all__ = ["Case", "Dataset", "Problem"]
