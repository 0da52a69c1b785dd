-- State machine of one Andromède region: one table per resource kind (indexed columns plus the
-- whole resource as JSON), the request-id index, events for watch, and Raft apply metadata.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE datacenters (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE hosts (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE flavors (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE images (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE projects (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE volumes (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE server_groups (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE UNIQUE INDEX instances_name ON instances (project_id, name);
CREATE UNIQUE INDEX volumes_name ON volumes (project_id, name);

CREATE TABLE request_ids (
    key    TEXT PRIMARY KEY,
    target TEXT NOT NULL
);

CREATE TABLE events (
    revision INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    project_id TEXT NOT NULL,
    body     TEXT NOT NULL
);
