from storage.timescale import db


def test_each_test_gets_a_migrated_timescaledb(conn):
    info = db.server_info(conn)
    assert info.timescaledb_version
    assert info.edition in {"apache", "timescale"}
    hypertables = conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()
    assert ("audit_events",) in hypertables
