-- The index function, with a short path for the common case: another instance of a series that
-- is already indexed, whose patient attributes are unchanged.
--
-- Why: nearly every instance of a study is such an instance (a study has a handful of series and
-- hundreds to thousands of instances), and for them four of the function's seven statements
-- change nothing: the patient insert finds its row (and still draws an id from the sequence),
-- the patient update finds nothing to change, the study and series inserts find their rows.
-- Each still costs the server an executor start and an index probe, on the cores the senders
-- and the file writes share. The short path checks the same conditions with two reads and then
-- does what the long path would have done, so its effects are identical:
-- * the series row exists, taken FOR SHARE as before, and names the instance's study (which
--   therefore exists: series rows reference their study);
-- * the patient row exists and every attribute the instance carries equals the stored one
--   (an absent attribute never overwrites, as in the long path).
-- Otherwise the long path runs unchanged.
CREATE OR REPLACE FUNCTION brainaged_index_instance(
    p_sop_instance_uid TEXT, p_sop_class_uid TEXT, p_series_instance_uid TEXT,
    p_study_instance_uid TEXT, p_instance_number INTEGER, p_spool_path TEXT,
    p_transfer_syntax TEXT, p_size_bytes BIGINT, p_calling_ae TEXT, p_received_at TIMESTAMPTZ,
    p_patient_id TEXT, p_patient_name TEXT, p_patient_sex TEXT, p_birth_date DATE,
    p_patient_age TEXT, p_study_date DATE, p_study_description TEXT, p_accession_number TEXT,
    p_modality TEXT, p_series_number INTEGER, p_series_description TEXT, p_protocol_name TEXT,
    p_image_type TEXT
) RETURNS BOOLEAN LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_patient BIGINT;
    v_state TEXT;
    v_study TEXT;
    v_reopened BOOLEAN := false;
BEGIN
    SELECT state, study_instance_uid INTO v_state, v_study FROM series
    WHERE series_instance_uid = p_series_instance_uid FOR SHARE;
    IF NOT FOUND OR v_study IS DISTINCT FROM p_study_instance_uid OR NOT EXISTS (
        SELECT 1 FROM patients
        WHERE patient_id = coalesce(p_patient_id, '') AND issuer = ''
          AND (p_patient_name IS NULL OR patient_name IS NOT DISTINCT FROM p_patient_name)
          AND (p_patient_sex IS NULL OR sex IS NOT DISTINCT FROM p_patient_sex)
          AND (p_birth_date IS NULL OR birth_date IS NOT DISTINCT FROM p_birth_date))
    THEN
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
    END IF;

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
