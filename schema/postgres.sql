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

-- Every change of an image is announced on the channel thumbfs_images
-- (payload: the operation's first letter, a space, the image id), so that
-- each mount shows what other mounts and the web app write. A mount that
-- was away catches up by a full read when it connects again.
CREATE OR REPLACE FUNCTION thumbfs_notify_image() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('thumbfs_images',
                      left(TG_OP, 1) || ' ' ||
                      CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END;
$$;

-- (dropped only when there, so that a fresh database says nothing)
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgname = 'thumbfs_notify_image'
                 AND tgrelid = 'images_image'::regclass) THEN
        DROP TRIGGER thumbfs_notify_image ON images_image;
    END IF;
END;
$$;
CREATE TRIGGER thumbfs_notify_image
    AFTER INSERT OR UPDATE OR DELETE ON images_image
    FOR EACH ROW EXECUTE FUNCTION thumbfs_notify_image();

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
