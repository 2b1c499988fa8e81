-- Once, on a database whose tables a superuser created (a compose stack started before
-- the roles existed; docs/operations.md, "Roles"): every table, sequence and function of
-- the schema given to mpp_owner, so that `migrate` can run as it. Run as a superuser,
-- connected to the database, after deploy/ha/roles.sql. Changes no data.
\set ON_ERROR_STOP on
SELECT format('ALTER TABLE %s OWNER TO mpp_owner', c.oid::regclass)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v')
 ORDER BY c.relkind = 'p' DESC \gexec
-- Sequences no column owns (a serial's follows its table).
SELECT format('ALTER SEQUENCE %s OWNER TO mpp_owner', c.oid::regclass)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a') \gexec
SELECT format('ALTER FUNCTION %s OWNER TO mpp_owner', p.oid::regprocedure)
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace \gexec
