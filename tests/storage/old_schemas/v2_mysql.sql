-- Classroom schema for MySQL / MariaDB: the source of truth.
-- schema_sqlite.sql beside this file defines the same tables and columns for the embedded
-- backend; tests/storage/test_schema.py checks that the two agree.
-- Times are UTC, stored without a zone. Statements are separated by ';' at line ends
-- (the loader splits on that), so no ';' may appear inside a statement.

CREATE TABLE IF NOT EXISTS schema_version (
    id TINYINT NOT NULL PRIMARY KEY,
    version INT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username VARCHAR(32) NOT NULL,
    display_name VARCHAR(64) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS auth_sessions (
    token_hash CHAR(64) NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    KEY auth_sessions_user (user_id),
    KEY auth_sessions_expiry (expires_at),
    CONSTRAINT auth_sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS login_failures (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    throttle_key VARCHAR(190) NOT NULL,
    failed_at DATETIME(6) NOT NULL,
    KEY login_failures_key (throttle_key, failed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS classrooms (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    description TEXT NOT NULL,
    join_code VARCHAR(16) NOT NULL,
    instructor_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    join_open TINYINT NOT NULL DEFAULT 1,
    archived_at DATETIME(6) NULL,
    UNIQUE KEY classrooms_join_code (join_code),
    KEY classrooms_instructor (instructor_id),
    CONSTRAINT classrooms_instructor_fk FOREIGN KEY (instructor_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS memberships (
    classroom_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    role VARCHAR(16) NOT NULL,
    joined_at DATETIME(6) NOT NULL,
    PRIMARY KEY (classroom_id, user_id),
    KEY memberships_user (user_id),
    CONSTRAINT memberships_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE,
    CONSTRAINT memberships_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS posts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    classroom_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    title VARCHAR(200) NOT NULL,
    body TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    edited_at DATETIME(6) NULL,
    KEY posts_classroom (classroom_id, id),
    CONSTRAINT posts_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE,
    CONSTRAINT posts_author_fk FOREIGN KEY (author_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS tags (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    classroom_id BIGINT NOT NULL,
    name VARCHAR(40) NOT NULL,
    UNIQUE KEY tags_classroom_name (classroom_id, name),
    CONSTRAINT tags_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS post_tags (
    post_id BIGINT NOT NULL,
    tag_id BIGINT NOT NULL,
    PRIMARY KEY (post_id, tag_id),
    KEY post_tags_tag (tag_id, post_id),
    CONSTRAINT post_tags_post_fk FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE,
    CONSTRAINT post_tags_tag_fk FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Comments under a post: a class comment (student_id NULL) for every member, or one of a
-- student's private thread with the instructor on that post (student_id: that student).
CREATE TABLE IF NOT EXISTS post_comments (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    post_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    student_id BIGINT NULL,
    body TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY post_comments_post (post_id, id),
    KEY post_comments_author (author_id),
    KEY post_comments_student (student_id),
    CONSTRAINT post_comments_post_fk FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE,
    CONSTRAINT post_comments_author_fk FOREIGN KEY (author_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT post_comments_student_fk FOREIGN KEY (student_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS rooms (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    classroom_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    topic VARCHAR(200) NOT NULL,
    created_by BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    ended_at DATETIME(6) NULL,
    chat_server VARCHAR(255) NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    KEY rooms_classroom (classroom_id, id),
    CONSTRAINT rooms_classroom_fk FOREIGN KEY (classroom_id) REFERENCES classrooms (id) ON DELETE CASCADE,
    CONSTRAINT rooms_creator_fk FOREIGN KEY (created_by) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS room_events (
    room_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    event VARCHAR(40) NOT NULL,
    sender_id BIGINT NOT NULL,
    recipient_id BIGINT NULL,
    data MEDIUMTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (room_id, seq),
    KEY room_events_sender (room_id, sender_id, seq),
    KEY room_events_recipient (room_id, recipient_id, seq),
    CONSTRAINT room_events_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT room_events_sender_fk FOREIGN KEY (sender_id) REFERENCES users (id),
    CONSTRAINT room_events_recipient_fk FOREIGN KEY (recipient_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS room_bans (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    banned_at DATETIME(6) NOT NULL,
    PRIMARY KEY (room_id, user_id),
    CONSTRAINT room_bans_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT room_bans_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS attendance (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    first_join DATETIME(6) NOT NULL,
    last_join DATETIME(6) NOT NULL,
    last_leave DATETIME(6) NULL,
    seconds_connected DOUBLE NOT NULL DEFAULT 0,
    open_connections INT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id),
    KEY attendance_user (user_id),
    CONSTRAINT attendance_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT attendance_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS room_state (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    name VARCHAR(40) NOT NULL,
    value MEDIUMTEXT NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (room_id, name, user_id),
    CONSTRAINT room_state_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Invalidation log of the app servers' per-process caches (classroom/cache.py): every write
-- that changes what a cache may hold appends (scope, key_id) in its own transaction; every
-- process reads the new rows a few times a second. Rows older than minutes are deleted.
CREATE TABLE IF NOT EXISTS cache_changes (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    scope VARCHAR(16) NOT NULL,
    key_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY cache_changes_time (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A client's retry of a request (a live event's `id`, an API POST's Idempotency-Key) gets the
-- first answer again instead of doing the work twice. `answer` is empty while the first
-- request is still running. Kept for a day (housekeeping).
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id BIGINT NOT NULL,
    scope VARCHAR(120) NOT NULL,
    idem_key VARCHAR(100) NOT NULL,
    answer MEDIUMTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, scope, idem_key),
    KEY idempotency_created (created_at),
    CONSTRAINT idempotency_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Chat servers' leases and the live connections each holds, so that the connections of a
-- server that died (kill -9, power cut) are ended as of its last renewal: by itself when it
-- starts again, or by any other chat server once the lease ran out.
CREATE TABLE IF NOT EXISTS chat_servers (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    renewed_at DATETIME(6) NOT NULL,
    lease_until DATETIME(6) NOT NULL,
    KEY chat_servers_lease (lease_until)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS open_connections (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    server VARCHAR(255) NOT NULL,
    connections INT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id, server),
    KEY open_connections_server (server),
    CONSTRAINT open_connections_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
