"""PostgreSQL's inet ``<<=`` as a Polars expression, so a CIDR filter over archived rows is pushed into
the Parquet scan instead of running Python per row.

Addresses are archived as text (``host(source_ip)``). An IPv4 address compares as zero-padded dotted
decimal ("010.000.000.001"), an IPv6 one as 32 hex digits (``::`` expanded, a dotted IPv4 tail
converted); both orderings are the numeric order, so a network is a closed range of strings.
"""

from __future__ import annotations

import ipaddress

import polars as pl

_HEX = [format(i, "x") for i in range(16)]


def _hex4(value: pl.Expr) -> pl.Expr:
    """A 0..65535 integer as four lowercase hex digits."""
    return pl.concat_str([((value // (16 ** k)) % 16).replace_strict(list(range(16)), _HEX, return_dtype=pl.String)
                          for k in (3, 2, 1, 0)])


def _v6_hex(text: pl.Expr) -> pl.Expr:
    """An IPv6 address (compressed or not, with or without a dotted IPv4 tail) as 32 hex digits; null if invalid."""
    dotted = text.str.extract(r"(\d+\.\d+\.\d+\.\d+)$")
    octets = dotted.str.split(".")
    tail = pl.concat_str([_hex4(octets.list.get(0).cast(pl.Int64, strict=False) * 256
                                + octets.list.get(1).cast(pl.Int64, strict=False)), pl.lit(":"),
                          _hex4(octets.list.get(2).cast(pl.Int64, strict=False) * 256
                                + octets.list.get(3).cast(pl.Int64, strict=False))])
    text = pl.when(dotted.is_null()).then(text).otherwise(text.str.replace(r"\d+\.\d+\.\d+\.\d+$", "") + tail)
    halves = text.str.split("::")
    nonempty = pl.element().filter(pl.element() != "")
    head = halves.list.get(0).str.split(":").list.eval(nonempty)
    rest = halves.list.get(1, null_on_oob=True).fill_null("").str.split(":").list.eval(nonempty)
    missing = pl.lit(8) - head.list.len() - rest.list.len()
    middle = pl.lit("0000").repeat_by(missing.clip(0))
    groups = pl.concat_list(head, middle, rest).list.eval(pl.element().str.to_lowercase().str.zfill(4))
    return groups.list.join("")


def _v4_padded(text: pl.Expr) -> pl.Expr:
    return text.str.split(".").list.eval(pl.element().str.zfill(3)).list.join(".")


def in_network(column: str, network: str) -> pl.Expr:
    """``column`` (address text) inside ``network``, as PostgreSQL's inet ``<<=`` (families never mix)."""
    net = ipaddress.ip_network(network, strict=False)
    col = pl.col(column)
    if net.version == 4:
        low = ".".join(f"{int(o):03d}" for o in str(net.network_address).split("."))
        high = ".".join(f"{int(o):03d}" for o in str(net.broadcast_address).split("."))
        padded = _v4_padded(col)
        dotted = col.str.contains(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
        return (dotted & (padded >= low) & (padded <= high)).fill_null(False)
    low, high = net.network_address.exploded.replace(":", ""), net.broadcast_address.exploded.replace(":", "")
    full = _v6_hex(col)
    return (col.str.contains(":") & (full >= low) & (full <= high)).fill_null(False)
