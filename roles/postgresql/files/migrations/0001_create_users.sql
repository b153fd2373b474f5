-- Platform users: the people who publish and watch contents.
-- Applied once, inside a transaction, by streamcloud.platform.postgresql; never edit it once
-- applied: add a new NNNN_name.sql instead.
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL,
    display_name  text,
    -- A hash made by the application (argon2, bcrypt...), never a clear password.
    password_hash text,
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{2,63}$'),
    CONSTRAINT users_email_format CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT users_display_name_length CHECK (display_name IS NULL OR length(display_name) BETWEEN 1 AND 100),
    CONSTRAINT users_timestamps CHECK (updated_at >= created_at)
);

CREATE UNIQUE INDEX users_username_key ON users (username);
-- One account per address, whatever its case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
