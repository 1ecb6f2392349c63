-- Group commit: the instances of C-STOREs that arrived on several associations while the previous
-- commit was in flight are indexed by one call and committed once (`scp::group_commit`). Each
-- element is indexed exactly as `brainaged_index_instance` indexes one instance, in array order.
-- Returns how many of them reopened a completed series.
CREATE FUNCTION brainaged_index_instances(
    p_sop_instance_uid TEXT[], p_sop_class_uid TEXT[], p_series_instance_uid TEXT[],
    p_study_instance_uid TEXT[], p_instance_number INTEGER[], p_spool_path TEXT[],
    p_transfer_syntax TEXT[], p_size_bytes BIGINT[], p_calling_ae TEXT[],
    p_received_at TIMESTAMPTZ[], p_patient_id TEXT[], p_patient_name TEXT[], p_patient_sex TEXT[],
    p_birth_date DATE[], p_patient_age TEXT[], p_study_date DATE[], p_study_description TEXT[],
    p_accession_number TEXT[], p_modality TEXT[], p_series_number INTEGER[],
    p_series_description TEXT[], p_protocol_name TEXT[], p_image_type TEXT[]
) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    v_reopened INTEGER := 0;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_sop_instance_uid, 1), 0) LOOP
        IF brainaged_index_instance(
            p_sop_instance_uid[i], p_sop_class_uid[i], p_series_instance_uid[i],
            p_study_instance_uid[i], p_instance_number[i], p_spool_path[i], p_transfer_syntax[i],
            p_size_bytes[i], p_calling_ae[i], p_received_at[i], p_patient_id[i], p_patient_name[i],
            p_patient_sex[i], p_birth_date[i], p_patient_age[i], p_study_date[i],
            p_study_description[i], p_accession_number[i], p_modality[i], p_series_number[i],
            p_series_description[i], p_protocol_name[i], p_image_type[i])
        THEN
            v_reopened := v_reopened + 1;
        END IF;
    END LOOP;
    RETURN v_reopened;
END
$$;

ALTER FUNCTION brainaged_index_instances(
    TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[], TEXT[], BIGINT[], TEXT[], TIMESTAMPTZ[],
    TEXT[], TEXT[], TEXT[], DATE[], TEXT[], DATE[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[],
    TEXT[], TEXT[]
) SET plan_cache_mode = force_generic_plan;
