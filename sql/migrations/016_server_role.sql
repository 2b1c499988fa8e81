-- Issue 26: the server connects as a role that owns nothing and holds only what it needs
-- (docs/operations.md, "Roles"). `mpp_app` is that role's group: migrations run as the
-- owner, which grants mpp_app its privileges (server_role_grant,
-- sql/functions/privileges.sql, run by every `migrate` that applies something), and the
-- server's login role (`mpp_server` in the deployment templates) is a member of it.
-- Roles belong to the cluster: the deployment creates mpp_app beforehand when the owner
-- may not create roles; otherwise it is created here, once per cluster.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mpp_app') THEN
        BEGIN
            CREATE ROLE mpp_app NOLOGIN;
        EXCEPTION
            WHEN duplicate_object THEN
                NULL;  -- another database's migration created it meanwhile
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role mpp_app does not exist and % may not create it: '
                                'CREATE ROLE mpp_app NOLOGIN as a superuser first '
                                '(docs/operations.md, "Roles")', current_user;
        END;
    END IF;
END;
$$;
