"""Compliance reports: named, versioned templates over the data API, rendered to PDF, HTML, CSV and XLSX.

Every report carries its period and scope, the query behind each table, the integrity proof for the
period (the ``verify`` result and the signed checkpoint covering its end), who generated it and when, and
its parameters, so that re-running them gives the same numbers while the data is unchanged.
"""
