-- Extra DuckDB views. Every catalogue table (orchestration/tables.py) already has a view of
-- its own name over delta_scan('{lake}/tables/<name>') (the delta + httpfs extensions load
-- from the duckdb-extension-* wheels; nothing is installed from the network); {lake} is the
-- lake location, {sql} this folder, {thresholds} the thresholds file (sql/thresholds.csv unless
-- configured otherwise: resource `thresholds`).
-- The thresholds data file is queryable too, so tiers can be re-cut by editing data.
CREATE OR REPLACE VIEW thresholds AS SELECT * FROM read_csv('{thresholds}', header = true, columns = {'name': 'VARCHAR', 'value': 'VARCHAR', 'stage': 'VARCHAR', 'description': 'VARCHAR'});
-- Every face track with its dataset-wide speaker_id (the id of its identity unit: its
-- speaker_local, or 'track:<track_id>' for a face that never speaks).
CREATE OR REPLACE VIEW track_speakers AS
SELECT ti.*, sa.speaker_id
FROM track_identities ti
LEFT JOIN speaker_assignments sa
  ON sa.video_id = ti.video_id AND sa.unit = coalesce(ti.speaker_local, 'track:' || CAST(ti.track_id AS VARCHAR));
-- Identity units whose face was taken down (speakerlake takedown --speaker): the unit's ArcFace
-- embedding reaches speaker_id_cos to a taken-down speaker's centroid, the same cosine at which
-- speaker_ids would have put it in that speaker's cluster. sql/tiers.sql rejects their clips
-- (reason taken_down), so no branch, SFT subset or release holds a later video of that face.
CREATE OR REPLACE VIEW blocked_units AS
SELECT u.video_id, u.unit, t.takedown_id, list_cosine_similarity(u.embedding, t.embedding) AS cosine
FROM identity_units u
JOIN takedowns t ON t.kind = 'speaker' AND t.embedding IS NOT NULL
WHERE u.embedding IS NOT NULL
  AND list_cosine_similarity(u.embedding, t.embedding) >= (SELECT CAST(value AS DOUBLE) FROM thresholds WHERE name = 'speaker_id_cos');
