"""Tables of results, in one call: rows in, a Markdown table out.

The book's convention, stated once: **``a ± b`` is the mean and the sample standard deviation
(``ddof = 1``) over the runs named in the table (seeds, splits, starts)**. A table that reports
something else says so in its caption (e.g. a reproduction of a script that prints ``ddof = 0``).

>>> from iemlib.book.report import report, Column
>>> report([{"run": "EM", "loss": [1.0, 1.2, 1.1]}, {"run": "SGD", "loss": [2.0, 2.1, 2.2]}],
...        ["run", Column("loss", fmt=".3f")])                          # doctest: +SKIP

Each row is a mapping, a dataclass instance or any object with attributes; each column reads one
value from every row (by key or attribute, or by a function of the row) and formats it:

* a string is shown as it is (a ``|`` is escaped);
* an integer or a bool as it is; a float with the column's format;
* a sequence of numbers (a list, an array, a tensor) is summarized over its entries: ``mean ± sd``
  (the default), ``median [min, max]`` (``spread="range"``), ``mean [min, max]``
  (``spread="minmax"``: every run bounded, for a handful of runs), ``mean [lo, hi]`` (``spread="ci"``,
  a percentile bootstrap interval of the mean) or the mean alone (``spread="mean"``); NaN entries
  are left out and counted (``(2 NaN)``);
* ``None`` is shown as an em dash.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["Column", "Table", "report", "markdown_table", "mean_sd", "median_range", "mean_range", "mean_ci", "fmt_number"]

SPREADS = ("sd", "range", "minmax", "ci", "mean")


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a table.

    ``name`` is the header. ``key`` says where each row's value comes from: a key of a mapping or
    an attribute (default: ``name``), or a function of the row. ``fmt`` formats numbers (Python's
    format specification, e.g. ``".4f"``, ``".1e"``, ``".0%"``); ``spread`` summarizes a sequence of
    numbers (``"sd"``, ``"range"``, ``"minmax"``, ``"ci"`` or ``"mean"``); ``ddof`` is the standard deviation's
    delta degrees of freedom (1 by the book's convention).
    """

    name: str
    key: str | Callable[[Any], Any] | None = None
    fmt: str = ".4g"
    spread: str = "sd"
    ddof: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"Column name must be a string, got {self.name!r}")
        if self.spread not in SPREADS:
            raise ValueError(f"spread must be one of {SPREADS}, got {self.spread!r}")
        if self.ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1, got {self.ddof!r}")
        try:
            format(1.5, self.fmt)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"fmt must be a format specification for a float, got {self.fmt!r}") from exc

    def value(self, row: Any) -> Any:
        """This column's raw value in ``row``."""
        key = self.name if self.key is None else self.key
        if callable(key):
            return key(row)
        if isinstance(row, Mapping):
            if key not in row:
                raise ValueError(f"row has no key {key!r} (column {self.name!r}); keys: {sorted(map(str, row))}")
            return row[key]
        if hasattr(row, key):
            return getattr(row, key)
        raise ValueError(f"row of type {type(row).__name__} has no attribute {key!r} (column {self.name!r})")


def fmt_number(x: Any, fmt: str = ".4g") -> str:
    """A number as the book prints it: ``fmt`` applied, NaN as ``NaN``, infinities as ``inf``."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, fmt)


def _numbers(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("cannot summarize an empty sequence of numbers")
    return arr


def _finite(values: Any) -> tuple[np.ndarray, str]:
    arr = _numbers(values)
    nan = int(np.isnan(arr).sum())
    return arr[~np.isnan(arr)], (f" ({nan} NaN)" if nan else "")


def mean_sd(values: Any, fmt: str = ".4f", ddof: int = 1) -> str:
    """``mean ± sd`` of ``values`` (sample sd, ``ddof = 1``, by the book's convention); one value
    is shown alone (its sd is undefined)."""
    arr, note = _finite(values)
    if arr.size == 0:
        return "NaN" + note
    if arr.size <= ddof:
        return fmt_number(arr.mean(), fmt) + note
    return f"{fmt_number(arr.mean(), fmt)} ± {fmt_number(arr.std(ddof=ddof), fmt)}{note}"


def median_range(values: Any, fmt: str = ".0f") -> str:
    """``median [min, max]`` of ``values``."""
    arr, note = _finite(values)
    if arr.size == 0:
        return "NaN" + note
    lo, med, hi = (fmt_number(v, fmt) for v in (arr.min(), np.median(arr), arr.max()))
    return f"{med} [{lo}, {hi}]{note}"


def mean_range(values: Any, fmt: str = ".3f") -> str:
    """``mean [min, max]`` of ``values``: the mean, and the smallest and largest run."""
    arr, note = _finite(values)
    if arr.size == 0:
        return "NaN" + note
    m, lo, hi = (fmt_number(v, fmt) for v in (arr.mean(), arr.min(), arr.max()))
    return f"{m} [{lo}, {hi}]{note}"


def mean_ci(values: Any, fmt: str = ".3f", level: float = 0.95, n_boot: int = 2000, random_state: int = 0) -> str:
    """``mean [lo, hi]``: the mean and its percentile bootstrap interval
    (:func:`iemlib.metrics.bootstrap_mean_ci`: ``n_boot`` resamples of the values, seeded)."""
    from ..metrics import bootstrap_mean_ci

    arr, note = _finite(values)
    if arr.size == 0:
        return "NaN" + note
    ci = bootstrap_mean_ci(arr, n_boot=n_boot, level=level, random_state=random_state)
    return f"{fmt_number(ci.estimate, fmt)} [{fmt_number(ci.low, fmt)}, {fmt_number(ci.high, fmt)}]{note}"


def _cell(v: Any, col: Column) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v.replace("|", "\\|")
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) or (hasattr(v, "ndim") and getattr(v, "ndim") == 0):
        return fmt_number(v, col.fmt)
    if isinstance(v, (Sequence, np.ndarray)) or hasattr(v, "detach"):
        if col.spread == "sd":
            return mean_sd(v, col.fmt, col.ddof)
        if col.spread == "range":
            return median_range(v, col.fmt)
        if col.spread == "minmax":
            return mean_range(v, col.fmt)
        if col.spread == "ci":
            return mean_ci(v, col.fmt)
        arr, note = _finite(v)
        return (fmt_number(arr.mean(), col.fmt) if arr.size else "NaN") + note
    return str(v).replace("|", "\\|")


def _columns(rows: list[Any], columns: Iterable[Any] | None) -> list[Column]:
    if columns is None:
        first = rows[0]
        if isinstance(first, Mapping):
            names = list(first)
        elif dataclasses.is_dataclass(first):
            names = [f.name for f in dataclasses.fields(first)]
        else:
            raise ValueError("columns must be given when the rows are neither mappings nor dataclasses")
        columns = names
    out = []
    for c in columns:
        if isinstance(c, Column):
            out.append(c)
        elif isinstance(c, str):
            out.append(Column(c))
        elif isinstance(c, tuple) and 2 <= len(c) <= 3 and isinstance(c[0], str):
            # (name, fmt) or (name, key, fmt)
            out.append(Column(c[0], fmt=c[1]) if len(c) == 2 else Column(c[0], key=c[1], fmt=c[2]))
        else:
            raise ValueError(f"a column must be a name, a Column or (name, fmt) / (name, key, fmt), got {c!r}")
    if not out:
        raise ValueError("columns must not be empty")
    return out


def markdown_table(rows: Any, columns: Iterable[Any] | None = None, *, fmt: str | None = None) -> str:
    """The Markdown text of :func:`report`'s table (no caption)."""
    if isinstance(rows, Mapping):  # {label: row}: the label becomes the first column
        rows = [{"": label, **(dict(r) if isinstance(r, Mapping) else dataclasses.asdict(r))}
                for label, r in rows.items()]
    rows = list(rows)
    if not rows:
        raise ValueError("rows must not be empty")
    cols = _columns(rows, columns)
    if fmt is not None:
        cols = [c if c.fmt != ".4g" else dataclasses.replace(c, fmt=fmt) for c in cols]
    head = "| " + " | ".join(c.name.replace("|", "\\|") for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(_cell(c.value(r), c) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


class Table:
    """A Markdown table that Jupyter (and the book) renders as a table; ``str()`` gives its text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def report(rows: Any, columns: Iterable[Any] | None = None, *, fmt: str | None = None,
           caption: str | None = None) -> Table:
    """A table of results, ready to display: ``report(rows, columns)`` as the last line of a cell.

    Parameters
    ----------
    rows : sequence of mappings / dataclasses / objects, or a mapping ``{label: row}``
        One row each; with a mapping, its keys become the first (unnamed) column.
    columns : sequence of column names, :class:`Column` objects, ``(name, fmt)`` or
        ``(name, key, fmt)`` tuples; default: every key (or field) of the first row.
    fmt : str, optional
        Number format for every column that does not set its own.
    caption : str, optional
        A line printed under the table (what the ``±`` is over, the budget of the runs).

    Returns
    -------
    Table
        Displays as a Markdown table; ``str(table)`` is its Markdown source.
    """
    text = markdown_table(rows, columns, fmt=fmt)
    if caption:
        text += "\n\n" + caption
    return Table(text)
