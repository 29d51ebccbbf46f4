"""Compliance reports: named, versioned templates over the data API, rendered to PDF, HTML, CSV and XLSX.

Every report carries its period and scope, the query behind each table, the integrity proof for the
period (the ``verify`` result and the signed checkpoint covering its end), who generated it and when, and
its parameters (in ``params.json`` and attached to the PDF), so that re-running them gives the same
numbers while the data is unchanged.

    auditwatch report list                       # the reports and the controls each evidences
    auditwatch report run access-review --from 2024-05-01 --to 2024-06-01 --out ./may
    auditwatch report run --params ./may/params.json --out ./may-again      # the same figures
    auditwatch report show access-review         # options, and the runs stored with their hashes

Each run is stored (``generated_reports``, migration 0016) with the SHA-256 of its files, in one
transaction with its ``report_generated`` audit record. The worker generates scheduled reports
(settings ``report_schedules``: ``NAME|CRON|PERIOD[|SCOPE]``; see ``reports.jobs``).

Layout: ``model`` (definitions, parameters, content), ``source`` (reads through the data API, each with
its query text), ``proof`` (verify + checkpoint), ``render`` (HTML/PDF/CSV/XLSX), ``engine`` (generate and
store), ``registry`` and ``library/`` (one module per report), ``jobs`` (scheduled runs). Only the
composition root (``auditwatch/``) imports this package; it imports ``storage`` (and may import ``analytics``).
"""
