"""Access to sensitive data (HIPAA 164.312(b), GDPR Art. 30): exports and queries touching PHI- or
PII-tagged resources, by user. A resource is tagged when its id, its dataset or its classification
metadata matches one of the report's ``tags`` patterns (embedded in the report's parameters)."""

from __future__ import annotations

import polars as pl

from reports.library.frames import meta
from reports.model import Content, Definition, Params, Table
from reports.source import Source

ACCESS_TYPES = ("data_export", "export_requested", "data_query", "query_executed", "file_download",
                "record_viewed", "report_viewed")


def build(src: Source, p: Params) -> Content:
    pattern = "(?i)(" + "|".join(p.options["tags"]) + ")"
    access, access_q = src.events(p, event_type=ACCESS_TYPES, columns=("timestamp", "user_id", "event_type",
                                                                        "outcome", "resource_id", "source_ip",
                                                                        "metadata"))
    tagged = (access.with_columns(meta("dataset"), meta("classification"), meta("rows"))
              .with_columns(target=pl.coalesce("dataset", "resource_id"),
                            tag=pl.concat_str([pl.col("resource_id"), pl.col("dataset"), pl.col("classification")],
                                              separator=" ", ignore_nulls=True).str.extract(pattern, 1)
                            .str.to_lowercase())
              .filter(pl.col("tag").is_not_null())
              .with_columns(pl.col("rows").cast(pl.Int64, strict=False),
                            export=pl.col("event_type").is_in(["data_export", "export_requested", "file_download"]))
              .sort("timestamp"))
    by_user = (tagged.group_by("user_id")
               .agg(pl.col("export").sum().alias("exports"), (~pl.col("export")).sum().alias("queries"),
                    pl.col("rows").filter(pl.col("export")).sum().alias("rows_exported"), pl.col("target").n_unique().alias("resources"),
                    pl.col("tag").unique().sort().str.join(", ").alias("tags"),
                    pl.col("timestamp").max().alias("last_access"))
               .sort(["exports", "queries", "user_id"], descending=[True, True, False]))
    by_resource = (tagged.group_by("target", "tag")
                   .agg(pl.len().alias("accesses"), pl.col("user_id").n_unique().alias("users"))
                   .sort(["accesses", "target"], descending=[True, False]))
    detail = tagged.select("timestamp", "user_id", "event_type", "target", "tag", "rows", "outcome", "source_ip")
    figures = {
        "Accesses to tagged resources": tagged.height,
        "Exports": int(tagged["export"].sum()),
        "Queries and views": int((~tagged["export"]).sum()),
        "Rows exported": int(tagged.filter(pl.col("export"))["rows"].sum() or 0),
        "Users with access": by_user.height,
        "Tagged resources touched": by_resource.height,
    }
    steps = (f"\n  .with_columns(target = coalesce(metadata.dataset, resource_id), tag = extract({pattern!r}) "
             "from resource_id, metadata.dataset, metadata.classification)\n  .filter(tag is not null)")
    return Content(
        figures=figures,
        summary=[f"Event types {', '.join(ACCESS_TYPES)} whose resource id, dataset or classification matches "
                 f"{pattern} (option tags). Record of processing activities, by user."],
        tables=[
            Table("by_user", "Access to sensitive data by user", access_q + steps +
                  "\n  .group_by('user_id').agg(exports, queries, sum(rows), n_unique(target))", by_user),
            Table("by_resource", "Tagged resources accessed", access_q + steps +
                  "\n  .group_by('target', 'tag').agg(len, n_unique(user_id))", by_resource),
            Table("accesses", "Every access to a tagged resource", access_q + steps, detail, limit=150),
        ])


DEFINITION = Definition(
    name="sensitive-access", version=1, title="Access to sensitive data",
    controls=("HIPAA 164.312(b)", "GDPR Art. 30"),
    purpose="Exports and queries that touched PHI- or PII-tagged resources in the period, by user.",
    build=build, defaults={"tags": ["phi", "pii", "patient", "health", "medical", "employees", "payroll", "ssn",
                                    "customer", "crm"]})
