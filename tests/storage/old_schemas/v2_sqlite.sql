-- Classroom schema for SQLite, kept beside schema.sql (the source of truth for MySQL):
-- the same tables and columns, SQLite syntax; tests/storage/test_schema.py checks that
-- the two agree.
-- Times are UTC, stored without a zone. Statements are separated by ';' at line ends
-- (the loader splits on that), so no ';' may appear inside a statement.

CREATE TABLE IF NOT EXISTS schema_version (
    id TINYINT NOT NULL PRIMARY KEY,
    version INT NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(32) NOT NULL,
    display_name VARCHAR(64) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL,
    CONSTRAINT users_username UNIQUE (username)
);

CREATE TABLE IF NOT EXISTS auth_sessions (
    token_hash CHAR(64) NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    created_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL,
    CONSTRAINT auth_sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS auth_sessions_user ON auth_sessions (user_id);
CREATE INDEX IF NOT EXISTS auth_sessions_expiry ON auth_sessions (expires_at);

CREATE TABLE IF NOT EXISTS login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    throttle_key VARCHAR(190) NOT NULL,
    failed_at DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (throttle_key, failed_at);

CREATE TABLE IF NOT EXISTS classrooms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(100) NOT NULL,
    description TEXT NOT NULL,
    join_code VARCHAR(16) NOT NULL,
    instructor_id BIGINT NOT NULL,
    created_at DATETIME NOT NULL,
    join_open TINYINT NOT NULL DEFAULT 1,
    archived_at DATETIME NULL,
    CONSTRAINT classrooms_join_code UNIQUE (join_code),
    CONSTRAINT classrooms_instructor_fk FOREIGN KEY (instructor_id) REFERENCES users (id)
);
CREATE INDEX IF NOT EXISTS classrooms_instructor ON classrooms (instructor_id);

CREATE TABLE IF NOT EXISTS memberships (
    classroom_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    role VARCHAR(16) NOT NULL,
    joined_at DATETIME NOT NULL,
    PRIMARY KEY (classroom_id, user_id),
    CONSTRAINT memberships_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE,
    CONSTRAINT memberships_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS memberships_user ON memberships (user_id);

CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classroom_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    title VARCHAR(200) NOT NULL,
    body TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    edited_at DATETIME NULL,
    CONSTRAINT posts_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE,
    CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id)
);
CREATE INDEX IF NOT EXISTS posts_classroom ON posts (classroom_id, id);

CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classroom_id BIGINT NOT NULL,
    name VARCHAR(40) NOT NULL,
    CONSTRAINT tags_classroom_name UNIQUE (classroom_id, name),
    CONSTRAINT tags_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS post_tags (
    post_id BIGINT NOT NULL,
    tag_id BIGINT NOT NULL,
    PRIMARY KEY (post_id, tag_id),
    CONSTRAINT post_tags_post_fk FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE,
    CONSTRAINT post_tags_tag_fk FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS post_tags_tag ON post_tags (tag_id, post_id);

CREATE TABLE IF NOT EXISTS post_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    post_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    student_id BIGINT NULL,
    body TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    CONSTRAINT post_comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE,
    CONSTRAINT post_comments_author_fk FOREIGN KEY (author_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT post_comments_student_fk FOREIGN KEY (student_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS post_comments_post ON post_comments (post_id, id);
CREATE INDEX IF NOT EXISTS post_comments_author ON post_comments (author_id);
CREATE INDEX IF NOT EXISTS post_comments_student ON post_comments (student_id);

CREATE TABLE IF NOT EXISTS rooms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classroom_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    topic VARCHAR(200) NOT NULL,
    created_by BIGINT NOT NULL,
    created_at DATETIME NOT NULL,
    ended_at DATETIME NULL,
    chat_server VARCHAR(255) NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT rooms_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE,
    CONSTRAINT rooms_creator_fk FOREIGN KEY (created_by) REFERENCES users (id)
);
CREATE INDEX IF NOT EXISTS rooms_classroom ON rooms (classroom_id, id);

CREATE TABLE IF NOT EXISTS room_events (
    room_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    event VARCHAR(40) NOT NULL,
    sender_id BIGINT NOT NULL,
    recipient_id BIGINT NULL,
    data MEDIUMTEXT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (room_id, seq),
    CONSTRAINT room_events_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT room_events_sender_fk FOREIGN KEY (sender_id) REFERENCES users (id),
    CONSTRAINT room_events_recipient_fk FOREIGN KEY (recipient_id) REFERENCES users (id)
);
CREATE INDEX IF NOT EXISTS room_events_sender ON room_events (room_id, sender_id, seq);
CREATE INDEX IF NOT EXISTS room_events_recipient ON room_events (room_id, recipient_id, seq);

CREATE TABLE IF NOT EXISTS room_bans (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    banned_at DATETIME NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_bans_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT room_bans_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS attendance (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    first_join DATETIME NOT NULL,
    last_join DATETIME NOT NULL,
    last_leave DATETIME NULL,
    seconds_connected DOUBLE NOT NULL DEFAULT 0,
    open_connections INT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT attendance_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT attendance_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS attendance_user ON attendance (user_id);

CREATE TABLE IF NOT EXISTS room_state (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    name VARCHAR(40) NOT NULL,
    value MEDIUMTEXT NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (room_id, name, user_id),
    CONSTRAINT room_state_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS cache_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope VARCHAR(16) NOT NULL,
    key_id BIGINT NOT NULL,
    created_at DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_changes_time ON cache_changes (created_at);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id BIGINT NOT NULL,
    scope VARCHAR(120) NOT NULL,
    idem_key VARCHAR(100) NOT NULL,
    answer MEDIUMTEXT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (user_id, scope, idem_key),
    CONSTRAINT idempotency_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency_keys (created_at);

CREATE TABLE IF NOT EXISTS chat_servers (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    renewed_at DATETIME NOT NULL,
    lease_until DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_servers_lease ON chat_servers (lease_until);

CREATE TABLE IF NOT EXISTS open_connections (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    server VARCHAR(255) NOT NULL,
    connections INT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id, server),
    CONSTRAINT open_connections_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS open_connections_server ON open_connections (server);
