-- brainaged's index. The spool is the source of truth; everything here can be rebuilt from it
-- with `brainaged reindex`, except job history.

CREATE TABLE patients (
    id              BIGSERIAL PRIMARY KEY,
    -- PatientID plus IssuerOfPatientID identify a patient; both may be empty on real data.
    patient_id      TEXT NOT NULL,
    issuer          TEXT NOT NULL DEFAULT '',
    patient_name    TEXT,
    sex             TEXT,
    birth_date      DATE,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (patient_id, issuer)
);

CREATE TABLE studies (
    study_instance_uid  TEXT PRIMARY KEY,
    patient_ref         BIGINT REFERENCES patients (id),
    study_date          DATE,
    study_description   TEXT,
    accession_number    TEXT,
    -- PatientAge as sent ("034Y"): the age at this study, when the scanner filled it in.
    patient_age         TEXT,
    -- receiving | complete: complete once every series of the study is complete.
    state               TEXT NOT NULL DEFAULT 'receiving',
    completed_at        TIMESTAMPTZ,
    first_received_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE series (
    series_instance_uid TEXT PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL REFERENCES studies (study_instance_uid),
    modality            TEXT,
    series_number       INTEGER,
    series_description  TEXT,
    protocol_name       TEXT,
    image_type          TEXT,
    -- receiving | complete. An instance arriving after completion reopens the series.
    state               TEXT NOT NULL DEFAULT 'receiving',
    -- Incremented at each completion: jobs name the version they were made for.
    version             INTEGER NOT NULL DEFAULT 0,
    completed_at        TIMESTAMPTZ,
    -- Conversion results (filled by the convert stage).
    class               TEXT,
    convert_error       TEXT
);
CREATE INDEX series_study ON series (study_instance_uid);
CREATE INDEX series_receiving ON series (series_instance_uid) WHERE state = 'receiving';

CREATE TABLE instances (
    id                  BIGSERIAL PRIMARY KEY,
    sop_instance_uid    TEXT NOT NULL UNIQUE,
    sop_class_uid       TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL REFERENCES series (series_instance_uid),
    study_instance_uid  TEXT NOT NULL,
    instance_number     INTEGER,
    spool_path          TEXT NOT NULL,
    transfer_syntax     TEXT NOT NULL,
    size_bytes          BIGINT NOT NULL,
    calling_ae          TEXT NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL,
    -- The database's clock when the row was written: series completion is measured on it, so
    -- that the daemon's and the database's clocks never have to agree.
    indexed_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX instances_series ON instances (series_instance_uid, indexed_at);

CREATE TABLE jobs (
    id                  BIGSERIAL PRIMARY KEY,
    -- The stage that consumes the job, e.g. 'convert'.
    kind                TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL REFERENCES series (series_instance_uid),
    series_version      INTEGER NOT NULL,
    -- queued | running | done | failed
    state               TEXT NOT NULL DEFAULT 'queued',
    attempts            INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    UNIQUE (kind, series_instance_uid, series_version)
);
CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
