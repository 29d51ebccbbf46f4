"""A generated report's files: HTML (Jinja2), PDF (WeasyPrint), and CSV and XLSX appendices (openpyxl)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape

from reports.errors import RenderError
from reports.model import Content, Definition, Params, Table
from reports.proof import Proof

_ENV = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]))


@dataclass(frozen=True)
class Stamp:
    """Who generated a report, when, and its id: shown on it, never part of its figures."""

    report_id: str
    generated_by: str
    generated_at: datetime


def text(value: Any) -> str:
    """A cell as a reader sees it: UTC times to the second, thousands separated, nothing as a dash."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value)
    return str(value)


def params_json(params: Params) -> str:
    return json.dumps(params.to_json(), indent=2, sort_keys=True, default=str)


_BREAK = "\u200b"  # a zero-width space: where a narrow column may wrap an identifier


def _wrappable(value: str) -> str:
    """Identifiers (snake_case, dotted, paths) may wrap after _ . / so narrow columns stay inside the page."""
    for mark in "_./":
        value = value.replace(mark, mark + _BREAK)
    return value


def _table_view(t: Table, index: int) -> dict[str, Any]:
    shown = t.frame.head(t.limit)
    rows = [[{"text": _wrappable(text(v)) if isinstance(v, str) else text(v),
              "num": isinstance(v, int | float) and not isinstance(v, bool)} for v in row]
            for row in shown.iter_rows()]
    return {"key": t.key, "title": t.title, "query": t.query, "note": t.note,
            "columns": [c.replace("_", " ") for c in t.frame.columns],
            "rows": rows, "more": t.frame.height - shown.height, "total": f"{t.frame.height:,}",
            "sheet": _sheet_name(t.key, index)}


def html(definition: Definition, params: Params, content: Content, proof: Proof, stamp: Stamp,
         appendices: list[str]) -> str:
    proof_class = "bad" if not proof.ok else ("ok" if proof.covered else "warn")
    return _ENV.get_template("report.html.j2").render(
        d=definition, p={"start_text": params.start.strftime("%Y-%m-%d %H:%M"),
                         "end_text": params.end.strftime("%Y-%m-%d %H:%M"), "scope": str(params.scope),
                         "start_iso": params.start.isoformat(), "end_iso": params.end.isoformat()},
        report_id=stamp.report_id, report_id_short=stamp.report_id[:8], generated_by=stamp.generated_by,
        generated_at=stamp.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"), proof=proof, proof_class=proof_class,
        summary=content.summary, figures=[(label, text(v)) for label, v in content.figures.items()],
        tables=[_table_view(t, i) for i, t in enumerate(content.tables)], params_json=params_json(params),
        appendices=appendices)


def pdf(document: str, path: Path, attachments: dict[str, str]) -> None:
    """Render with WeasyPrint, attaching the parameters and the proof so the PDF alone can be re-run."""
    try:
        from weasyprint import HTML, Attachment
    except OSError as exc:  # pango or its friends missing: WeasyPrint loads them on import
        raise RenderError(f"WeasyPrint cannot load its system libraries ({exc}); run scripts/install-reports.sh "
                          "(or `make system-deps`)") from None
    files = [Attachment(string=body, name=name) for name, body in attachments.items()]
    HTML(string=document).write_pdf(str(path), attachments=files)


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns as JSON text, times as ISO 8601: what a CSV or a sheet can hold."""
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List | pl.Struct | pl.Array):
            out.append(col.map_elements(lambda v: json.dumps(v if not isinstance(v, pl.Series) else v.to_list(),
                                                             default=str), return_dtype=pl.String).alias(name))
        elif isinstance(dtype, pl.Datetime):
            out.append(col.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias(name))
        else:
            out.append(col)
    return frame.select(out) if out else frame


def csv(table: Table, path: Path) -> None:
    _flat(table.frame).write_csv(path)


def _sheet_name(key: str, index: int) -> str:
    return f"{index + 1}_{key}"[:31]


XLSX_MAX_ROWS = 10_000  # per sheet: Excel stops at 1,048,576 rows and openpyxl is slow; the CSV has all


def xlsx(tables: list[Table], params: Params, path: Path) -> None:
    """One sheet per table (its query in the first row), and a parameters sheet."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    first = book.create_sheet("parameters")
    for key, value in params.to_json().items():
        first.append([key, json.dumps(value, sort_keys=True) if isinstance(value, dict) else value])
    for i, t in enumerate(tables):
        sheet = book.create_sheet(_sheet_name(t.key, i))
        sheet.append([f"query: {t.query}"])
        flat = _flat(t.frame.head(XLSX_MAX_ROWS))
        if t.frame.height > XLSX_MAX_ROWS:
            sheet.append([f"first {XLSX_MAX_ROWS:,} of {t.frame.height:,} rows; every row is in {t.key}.csv"])
        sheet.append(flat.columns)
        for row in flat.iter_rows():
            sheet.append(list(row))
    book.save(path)
