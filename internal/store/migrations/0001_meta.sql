-- Objects received from the cloud, keyed like the wire resource
-- {namespace}/{type}/{name}; namespace is '' for cluster-scoped objects.
--
-- A rowid table, not WITHOUT ROWID: values are serialized Kubernetes objects
-- of a few KiB, and SQLite recommends WITHOUT ROWID only for rows well below
-- 1/20 of a page. The primary key's index serves Get and both List forms
-- (type, or type and namespace, ordered by namespace and name).
CREATE TABLE meta (
    type             TEXT NOT NULL CHECK (type <> ''),
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL CHECK (name <> ''),
    resource_version TEXT NOT NULL,
    value            BLOB NOT NULL,
    PRIMARY KEY (type, namespace, name)
) STRICT;
