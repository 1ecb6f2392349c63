-- Indexing one instance in a single round trip. A C-STORE is acknowledged only after this has
-- committed, and one association is strictly sequential, so every round trip to the server is
-- on the critical path of every instance: the six statements become one call.
--
-- Semantics (unchanged from the statement-by-statement version):
-- * the patient row is created once and updated only when an attribute changes, so concurrent
--   instances of one patient take no row lock on it;
-- * study and series rows are created if missing;
-- * the series row is taken FOR SHARE: concurrent instances of a series do not wait for each
--   other, but the tracker, which locks series FOR UPDATE before deciding completion, waits for
--   them and then sees them;
-- * an instance for a completed series reopens it and its study;
-- * a re-sent SOP Instance UID replaces its row.
-- Returns true when the instance reopened a completed series.
CREATE FUNCTION brainaged_index_instance(
    p_sop_instance_uid TEXT, p_sop_class_uid TEXT, p_series_instance_uid TEXT,
    p_study_instance_uid TEXT, p_instance_number INTEGER, p_spool_path TEXT,
    p_transfer_syntax TEXT, p_size_bytes BIGINT, p_calling_ae TEXT, p_received_at TIMESTAMPTZ,
    p_patient_id TEXT, p_patient_name TEXT, p_patient_sex TEXT, p_birth_date DATE,
    p_patient_age TEXT, p_study_date DATE, p_study_description TEXT, p_accession_number TEXT,
    p_modality TEXT, p_series_number INTEGER, p_series_description TEXT, p_protocol_name TEXT,
    p_image_type TEXT
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    v_patient BIGINT;
    v_state TEXT;
    v_reopened BOOLEAN := false;
BEGIN
    INSERT INTO patients (patient_id, patient_name, sex, birth_date)
    VALUES (coalesce(p_patient_id, ''), p_patient_name, p_patient_sex, p_birth_date)
    ON CONFLICT (patient_id, issuer) DO NOTHING
    RETURNING id INTO v_patient;
    IF v_patient IS NULL THEN
        UPDATE patients SET
            patient_name = coalesce(p_patient_name, patient_name),
            sex = coalesce(p_patient_sex, sex),
            birth_date = coalesce(p_birth_date, birth_date),
            updated_at = now()
        WHERE patient_id = coalesce(p_patient_id, '') AND issuer = ''
          AND ((p_patient_name IS NOT NULL AND patient_name IS DISTINCT FROM p_patient_name)
            OR (p_patient_sex IS NOT NULL AND sex IS DISTINCT FROM p_patient_sex)
            OR (p_birth_date IS NOT NULL AND birth_date IS DISTINCT FROM p_birth_date))
        RETURNING id INTO v_patient;
        IF v_patient IS NULL THEN
            SELECT id INTO v_patient FROM patients
            WHERE patient_id = coalesce(p_patient_id, '') AND issuer = '';
        END IF;
    END IF;

    INSERT INTO studies (study_instance_uid, patient_ref, study_date, study_description,
                         accession_number, patient_age)
    VALUES (p_study_instance_uid, v_patient, p_study_date, p_study_description,
            p_accession_number, p_patient_age)
    ON CONFLICT (study_instance_uid) DO NOTHING;

    INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number,
                        series_description, protocol_name, image_type)
    VALUES (p_series_instance_uid, p_study_instance_uid, p_modality, p_series_number,
            p_series_description, p_protocol_name, p_image_type)
    ON CONFLICT (series_instance_uid) DO NOTHING;

    SELECT state INTO v_state FROM series
    WHERE series_instance_uid = p_series_instance_uid FOR SHARE;
    IF v_state = 'complete' THEN
        UPDATE series SET state = 'receiving', completed_at = NULL
        WHERE series_instance_uid = p_series_instance_uid AND state = 'complete';
        UPDATE studies SET state = 'receiving', completed_at = NULL
        WHERE study_instance_uid = (SELECT study_instance_uid FROM series
                                    WHERE series_instance_uid = p_series_instance_uid)
          AND state = 'complete';
        v_reopened := true;
    END IF;

    INSERT INTO instances (sop_instance_uid, sop_class_uid, series_instance_uid,
                           study_instance_uid, instance_number, spool_path, transfer_syntax,
                           size_bytes, calling_ae, received_at)
    VALUES (p_sop_instance_uid, p_sop_class_uid, p_series_instance_uid, p_study_instance_uid,
            p_instance_number, p_spool_path, p_transfer_syntax, p_size_bytes, p_calling_ae,
            p_received_at)
    ON CONFLICT (sop_instance_uid) DO UPDATE SET
        sop_class_uid = EXCLUDED.sop_class_uid,
        series_instance_uid = EXCLUDED.series_instance_uid,
        study_instance_uid = EXCLUDED.study_instance_uid,
        instance_number = EXCLUDED.instance_number,
        spool_path = EXCLUDED.spool_path,
        transfer_syntax = EXCLUDED.transfer_syntax,
        size_bytes = EXCLUDED.size_bytes,
        calling_ae = EXCLUDED.calling_ae,
        received_at = EXCLUDED.received_at,
        indexed_at = now();
    RETURN v_reopened;
END
$$;
