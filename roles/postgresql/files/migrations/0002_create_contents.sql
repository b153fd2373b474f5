-- Contents: live streams (an Icecast mount) and stored files, each owned by a user.
CREATE TYPE content_kind AS ENUM ('audio', 'video', 'file');

CREATE TABLE contents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id     bigint       NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    kind         content_kind NOT NULL,
    title        text         NOT NULL,
    description  text,
    -- Where it is: an Icecast mount point (/live.ogg) or a path under the file area.
    stream_mount text,
    file_path    text,
    mime_type    text,
    size_bytes   bigint,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    updated_at   timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT contents_title_length CHECK (length(title) BETWEEN 1 AND 200),
    -- Exactly one location; a plain file has a path, never a mount.
    CONSTRAINT contents_one_location CHECK (num_nonnulls(stream_mount, file_path) = 1),
    CONSTRAINT contents_file_has_path CHECK (kind <> 'file' OR file_path IS NOT NULL),
    CONSTRAINT contents_mount_format CHECK (stream_mount IS NULL OR stream_mount ~ '^/[A-Za-z0-9._-]{1,100}$'),
    CONSTRAINT contents_path_format CHECK (
        file_path IS NULL OR (length(file_path) BETWEEN 1 AND 1024 AND file_path !~ '(^|/)\.\.(/|$)' AND file_path !~ '^/')
    ),
    CONSTRAINT contents_size CHECK (size_bytes IS NULL OR size_bytes >= 0),
    CONSTRAINT contents_timestamps CHECK (updated_at >= created_at)
);

-- A mount serves one stream.
CREATE UNIQUE INDEX contents_stream_mount_key ON contents (stream_mount) WHERE stream_mount IS NOT NULL;
-- "My contents" and the foreign key's lookups on user deletion.
CREATE INDEX contents_owner_id_idx ON contents (owner_id, created_at DESC);
-- Latest contents of a kind (the players' lists).
CREATE INDEX contents_kind_created_idx ON contents (kind, created_at DESC);
