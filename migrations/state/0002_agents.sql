-- Host agents: one-use join tokens for enrollment (hosts themselves live in `hosts`).
CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
