-- The web app's tables, as its Django models (managed = False) read them.
-- thumbfs upserts into them; `thumbfs schema` prints this file.
-- Apply with: thumbfs schema | psql "$DSN"

CREATE TABLE IF NOT EXISTS images_batch (
    id          uuid PRIMARY KEY,
    patient_id  varchar(64)  NOT NULL,
    batch_date  date         NOT NULL,
    name        varchar(255) NOT NULL DEFAULT '',
    uploaded_by varchar(255) NOT NULL DEFAULT '',
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT images_batch_patient_date_uniq UNIQUE (patient_id, batch_date)
);

CREATE TABLE IF NOT EXISTS images_image (
    id                uuid PRIMARY KEY,
    batch_id          uuid NOT NULL
                      REFERENCES images_batch (id) ON DELETE CASCADE
                      DEFERRABLE INITIALLY DEFERRED,
    s3_key            varchar(1024) NOT NULL,
    s3_thumbnail_key  varchar(1024),
    s3_bucket         varchar(255)  NOT NULL,
    original_filename varchar(255)  NOT NULL,
    file_size         bigint        NOT NULL,
    thumbnail_size    integer,
    mime_type         varchar(100)  NOT NULL DEFAULT '',
    width             integer,
    height            integer,
    category          varchar(50)   NOT NULL DEFAULT '',
    filemaker_id      varchar(100),
    uploaded_by       varchar(255)  NOT NULL DEFAULT '',
    sha256            varchar(64)   NOT NULL DEFAULT '',
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT images_image_batch_filename_uniq
        UNIQUE (batch_id, original_filename)
);

CREATE INDEX IF NOT EXISTS images_image_batch_id ON images_image (batch_id);

-- Every change of an image is recorded in thumbfs_change, in the order
-- of the transactions that made it (xid), by the triggers below: the
-- image's id and, for an update or a delete, the path it had. Each mount
-- remembers the transaction up to which it has applied the changes
-- (every transaction below pg_snapshot_xmin of a snapshot has ended, so
-- none can add a change there later), and reads only what came after: a
-- mount away for a while catches up from where it was. Changes older than
-- [postgres] changes_kept_days are pruned; thumbfs_change_horizon keeps
-- the last transaction pruned, so that a mount that was away longer reads
-- everything once. NOTIFY thumbfs_images only wakes the mounts.
CREATE TABLE IF NOT EXISTS thumbfs_change (
    id                bigserial PRIMARY KEY,
    xid               bigint       NOT NULL
                      DEFAULT pg_current_xact_id()::text::bigint,
    image_id          uuid         NOT NULL,
    patient_id        varchar(64),
    batch_date        date,
    original_filename varchar(255),
    at                timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS thumbfs_change_xid ON thumbfs_change (xid, id);
CREATE INDEX IF NOT EXISTS thumbfs_change_at ON thumbfs_change (at);

CREATE TABLE IF NOT EXISTS thumbfs_change_horizon (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    xid  bigint  NOT NULL
);

CREATE OR REPLACE FUNCTION thumbfs_image_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO thumbfs_change (image_id) VALUES (NEW.id);
    ELSE
        -- the path it had (its batch is gone already when the batch's
        -- delete took it along: the batch's trigger said it then)
        INSERT INTO thumbfs_change (image_id, patient_id, batch_date,
                                    original_filename)
        SELECT OLD.id, b.patient_id, b.batch_date, OLD.original_filename
        FROM (SELECT 1) one
        LEFT JOIN images_batch b ON b.id = OLD.batch_id;
    END IF;
    RETURN NULL;
END;
$$;

-- A batch that is deleted or moves (another patient or date) changes the
-- path of each of its images.
CREATE OR REPLACE FUNCTION thumbfs_batch_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.patient_id IS DISTINCT FROM NEW.patient_id
       OR OLD.batch_date IS DISTINCT FROM NEW.batch_date THEN
        INSERT INTO thumbfs_change (image_id, patient_id, batch_date,
                                    original_filename)
        SELECT i.id, OLD.patient_id, OLD.batch_date, i.original_filename
        FROM images_image i WHERE i.batch_id = OLD.id;
    END IF;
    RETURN OLD; -- (a BEFORE trigger's NULL would cancel the delete)
END;
$$;

CREATE OR REPLACE FUNCTION thumbfs_wake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('thumbfs_images', '');
    RETURN NULL;
END;
$$;

-- (dropped only when there, so that a fresh database says nothing; the
-- trigger of earlier versions, thumbfs_notify_image, goes too)
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tgname, tgrelid::regclass AS rel FROM pg_trigger
             WHERE tgname IN ('thumbfs_notify_image', 'thumbfs_image_change',
                              'thumbfs_image_wake', 'thumbfs_batch_delete',
                              'thumbfs_batch_move')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'thumbfs_notify_image')
    THEN
        DROP FUNCTION thumbfs_notify_image();
    END IF;
END;
$$;
CREATE TRIGGER thumbfs_image_change
    AFTER INSERT OR UPDATE OR DELETE ON images_image
    FOR EACH ROW EXECUTE FUNCTION thumbfs_image_changed();
CREATE TRIGGER thumbfs_image_wake
    AFTER INSERT OR UPDATE OR DELETE ON images_image
    FOR EACH STATEMENT EXECUTE FUNCTION thumbfs_wake();
-- before a delete: its images are still there to be named
CREATE TRIGGER thumbfs_batch_delete
    BEFORE DELETE ON images_batch
    FOR EACH ROW EXECUTE FUNCTION thumbfs_batch_changed();
CREATE TRIGGER thumbfs_batch_move
    AFTER UPDATE ON images_batch
    FOR EACH ROW EXECUTE FUNCTION thumbfs_batch_changed();

-- What was unlinked through a mount, by whom and when: written before the
-- store's objects are deleted, or with objects_kept when [store] delete =
-- keep leaves them (a bucket with versioning or retention rules).
CREATE TABLE IF NOT EXISTS thumbfs_tombstone (
    id                uuid PRIMARY KEY,
    image_id          uuid          NOT NULL,
    patient_id        varchar(64)   NOT NULL,
    batch_date        date          NOT NULL,
    original_filename varchar(255)  NOT NULL,
    s3_bucket         varchar(255)  NOT NULL,
    s3_key            varchar(1024) NOT NULL,
    s3_thumbnail_key  varchar(1024) NOT NULL DEFAULT '',
    sha256            varchar(64)   NOT NULL DEFAULT '',
    file_size         bigint        NOT NULL,
    deleted_by        varchar(255)  NOT NULL DEFAULT '',
    deleted_at        timestamptz   NOT NULL,
    objects_kept      boolean       NOT NULL
);

-- Who may write a store key, seen by every mount (docs/design.md, "One
-- owner per store key"): the image (patient/date/name) whose objects it
-- holds ('' once deleted), the stamp of the last version written there,
-- which that version's row carries as updated_at, and the mount that
-- wrote it (host:catalog directory). A mount writes a
-- key only holding pg_try_advisory_lock of it, and after setting a stamp
-- past every earlier one here: the last bytes under a key are always
-- those of the row with the latest updated_at, whatever the mounts'
-- clocks say. A delete of a key goes only if no later write stamped it.
CREATE TABLE IF NOT EXISTS thumbfs_key (
    key    text          PRIMARY KEY, -- bucket/key
    owner  varchar(400)  NOT NULL DEFAULT '',
    stamp  timestamptz,
    writer varchar(1100) NOT NULL DEFAULT ''
);
