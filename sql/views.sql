-- One DuckDB view per Delta table, read with delta_scan (delta + httpfs extensions are
-- loaded from the duckdb-extension-* wheels; nothing is installed from the network).
-- {lake} is replaced by SPEAKERLAKE_LAKE: a local folder or s3://bucket/prefix.
-- A table that does not exist yet becomes an empty view with its declared schema.
CREATE OR REPLACE VIEW batch_files AS SELECT * FROM delta_scan('{lake}/tables/batch_files');
CREATE OR REPLACE VIEW batch_status AS SELECT * FROM delta_scan('{lake}/tables/batch_status');
CREATE OR REPLACE VIEW videos AS SELECT * FROM delta_scan('{lake}/tables/videos');
CREATE OR REPLACE VIEW rejects AS SELECT * FROM delta_scan('{lake}/tables/rejects');
CREATE OR REPLACE VIEW speech_segments AS SELECT * FROM delta_scan('{lake}/tables/speech_segments');
CREATE OR REPLACE VIEW speaker_turns AS SELECT * FROM delta_scan('{lake}/tables/speaker_turns');
CREATE OR REPLACE VIEW video_speakers AS SELECT * FROM delta_scan('{lake}/tables/video_speakers');
CREATE OR REPLACE VIEW transcripts AS SELECT * FROM delta_scan('{lake}/tables/transcripts');
CREATE OR REPLACE VIEW asr_coverage AS SELECT * FROM delta_scan('{lake}/tables/asr_coverage');
CREATE OR REPLACE VIEW shots AS SELECT * FROM delta_scan('{lake}/tables/shots');
CREATE OR REPLACE VIEW face_tracks AS SELECT * FROM delta_scan('{lake}/tables/face_tracks');
CREATE OR REPLACE VIEW sync_scores AS SELECT * FROM delta_scan('{lake}/tables/sync_scores');
CREATE OR REPLACE VIEW bindings AS SELECT * FROM delta_scan('{lake}/tables/bindings');
CREATE OR REPLACE VIEW track_identities AS SELECT * FROM delta_scan('{lake}/tables/track_identities');
CREATE OR REPLACE VIEW speakers AS SELECT * FROM delta_scan('{lake}/tables/speakers');
CREATE OR REPLACE VIEW listening_segments AS SELECT * FROM delta_scan('{lake}/tables/listening_segments');
-- The thresholds data file is queryable too, so tiers can be re-cut by editing data.
CREATE OR REPLACE VIEW thresholds AS SELECT * FROM read_csv('{sql}/thresholds.csv', header = true, columns = {'name': 'VARCHAR', 'value': 'VARCHAR', 'stage': 'VARCHAR', 'description': 'VARCHAR'});
