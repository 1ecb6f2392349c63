-- Outputs of the convert stage: one row per written volume of a series version.
CREATE TABLE conversions (
    id                  BIGSERIAL PRIMARY KEY,
    series_instance_uid TEXT NOT NULL REFERENCES series (series_instance_uid),
    series_version      INTEGER NOT NULL,
    -- t1w | dwi | other
    class               TEXT NOT NULL,
    nifti_path          TEXT NOT NULL,
    sidecar_path        TEXT,
    bval_path           TEXT,
    bvec_path           TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversions_series ON conversions (series_instance_uid, series_version);
