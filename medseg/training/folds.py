"""Which folds a ``train`` call trains: parsed once (:func:`parse_folds`) into a
:class:`FoldSelection`, resolved against the splits once they are known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medseg.errors import ConfigError
from medseg.model_folder import Fold


def _error(message: str) -> ConfigError:
    return ConfigError(f"fold: {message}", param="fold")


@dataclass(frozen=True)
class FoldSelection:
    """Folds asked for: ``indices`` (cross-validation fold indices, or ``("all",)``: one model
    on every case), or ``None`` for ``"cv"`` (every fold of the splits)."""

    indices: tuple[Fold, ...] | None

    @property
    def is_cv(self) -> bool:
        return self.indices is None

    @property
    def needs_splits(self) -> bool:
        """False only for ``"all"`` (nothing held out)."""
        return self.indices != ("all",)

    def resolve(self, n_splits: int) -> list[Fold]:
        """The folds to train, given ``n_splits`` folds in the splits (:class:`ConfigError`,
        ``param="fold"``, for an index outside ``0 .. n_splits - 1``)."""
        if self.indices is None:
            return list(range(n_splits))
        bad = [k for k in self.indices if k != "all" and int(k) >= n_splits]
        if bad:
            raise _error(f"expected 0..{n_splits - 1} or 'all', found {list(self.indices)}")
        return list(self.indices)

    @property
    def name(self) -> str:
        """``cv`` or ``fold_0_2`` (names the result file of the call)."""
        if self.indices is None:
            return "cv"
        return "fold_" + "_".join(str(k) for k in self.indices)


def parse_folds(fold: Fold | Sequence[int] | str | FoldSelection) -> FoldSelection:
    """The folds a request names: an index, ``"all"`` (one model on every case), ``"cv"``
    (every cross-validation fold), a comma-separated string ``"0,2"`` or a sequence of
    distinct non-negative indices. :class:`ConfigError` (``param="fold"``) otherwise."""
    if isinstance(fold, FoldSelection):
        return fold
    if isinstance(fold, str):
        text = fold.strip()
        if text == "all":
            return FoldSelection(("all",))
        if text == "cv":
            return FoldSelection(None)
        try:
            items = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise _error(
                f"expected an integer, a list like '0,2', 'all' or 'cv', found {fold!r}"
            ) from None
    elif isinstance(fold, bool):
        raise _error(f"expected a fold index, found {fold!r}")
    elif isinstance(fold, int):
        items = [fold]
    else:
        items = []
        for x in fold:
            if isinstance(x, bool) or not isinstance(x, int):
                raise _error(f"expected fold indices, found {list(fold)!r}")
            items.append(x)
    if not items:
        raise _error("no fold given")
    if any(k < 0 for k in items) or len(set(items)) != len(items):
        raise _error(f"expected distinct non-negative fold indices, found {items}")
    return FoldSelection(tuple(items))


__all__ = ["FoldSelection", "parse_folds"]
