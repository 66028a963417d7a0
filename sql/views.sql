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
