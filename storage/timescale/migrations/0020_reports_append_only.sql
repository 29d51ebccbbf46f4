-- Generated reports are evidence (issue 17): the application role (API, dashboard) may add a run, never change
-- or remove one, as it may add an event to audit_events but never change or remove one (SQLSTATE 42501).
-- audit_events is kept out of the app role's UPDATE/DELETE grants by roles.sql, which re-grants UPDATE and
-- DELETE on every other table after each migrate; a REVOKE here would be undone by it. So the refusal lives
-- on the table itself: only its owner (the role that migrates, as for audit_events' retention) may update or
-- delete a row. TRUNCATE is not granted to the app role on any table (roles.sql).
CREATE FUNCTION generated_reports_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user,
                                  (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied: generated_reports is append-only (% by %)', TG_OP, current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a generated report is never edited nor removed; generate a new one';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER generated_reports_append_only BEFORE UPDATE OR DELETE ON generated_reports
    FOR EACH ROW EXECUTE FUNCTION generated_reports_append_only();
