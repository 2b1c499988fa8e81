-- mpp-server's roles and database (docs/operations.md, "Roles"), run as a superuser when
-- the cluster is created: by Patroni's post_bootstrap (post_bootstrap.sh, `make ha` and
-- the compose `ha` profile) and by the compose `postgres` service's first start
-- (deploy/postgres/roles.sh); by hand on an existing cluster (it creates only what is
-- missing).
--   mpp_owner   owns the database and every object in it; `migrate` connects as it
--   mpp_app     the server's privileges (granted by `migrate`: sql/functions/privileges.sql)
--   mpp_server  the server's login: a member of mpp_app, owning nothing
-- psql variables: database (its name), owner_password and server_password (empty: no
-- password, for trust or peer authentication on a developer's loopback cluster).
\set ON_ERROR_STOP on
SELECT format('CREATE ROLE %I %s', name, attributes)
  FROM (VALUES ('mpp_owner', 'LOGIN'), ('mpp_app', 'NOLOGIN'), ('mpp_server', 'LOGIN'))
       AS wanted (name, attributes)
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) \gexec
GRANT mpp_app TO mpp_server;
SELECT format('ALTER ROLE mpp_owner PASSWORD %L', :'owner_password')
 WHERE :'owner_password' <> '' \gexec
SELECT format('ALTER ROLE mpp_server PASSWORD %L', :'server_password')
 WHERE :'server_password' <> '' \gexec
SELECT format('CREATE DATABASE %I OWNER mpp_owner', :'database')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'database') \gexec
SELECT format('ALTER DATABASE %I OWNER TO mpp_owner', :'database') \gexec
