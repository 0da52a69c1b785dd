-- API tokens (protocol v3): one row per token, revoked ones included; the body holds only the
-- SHA-256 of the secret.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
