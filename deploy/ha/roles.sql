-- mpp-server's roles and database (docs/operations.md, "Roles"), run once as a superuser
-- when the cluster is created: by Patroni's post_bootstrap (post_bootstrap.sh, `make ha`
-- and the compose `ha` profile) and by the compose `postgres` service's first start
-- (deploy/postgres/roles.sh).
--   mpp_owner   owns the database and every object in it; `migrate` connects as it
--   mpp_app     the server's privileges (granted by `migrate`: sql/functions/privileges.sql)
--   mpp_server  the server's login: a member of mpp_app, owning nothing
-- psql variables: database (its name), owner_password and server_password (empty: no
-- password, for trust or peer authentication on a developer's loopback cluster).
\set ON_ERROR_STOP on
CREATE ROLE mpp_owner LOGIN;
CREATE ROLE mpp_app NOLOGIN;
CREATE ROLE mpp_server LOGIN IN ROLE mpp_app;
SELECT format('ALTER ROLE mpp_owner PASSWORD %L', :'owner_password')
 WHERE :'owner_password' <> '' \gexec
SELECT format('ALTER ROLE mpp_server PASSWORD %L', :'server_password')
 WHERE :'server_password' <> '' \gexec
SELECT format('CREATE DATABASE %I OWNER mpp_owner', :'database')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'database') \gexec
SELECT format('ALTER DATABASE %I OWNER TO mpp_owner', :'database') \gexec
