-- The training loader (assets/train): for the clip ids a user's query returned (registered
-- as the relation train_ids by the loader), each clip's fields and the raw media of its video,
-- and the diarized turns of those videos (the cleaned audio silences other speakers' turns).
CREATE OR REPLACE TEMP VIEW train_clips AS
SELECT
    c.clip_id,
    c.video_id,
    c.speaker_id,
    c.speaker_local,
    c.start_seconds,
    c.end_seconds,
    c.bbox,
    c.text,
    c.words,
    v.raw_uri
FROM clips c
JOIN (SELECT DISTINCT clip_id FROM train_ids) i ON i.clip_id = c.clip_id
LEFT JOIN videos v ON v.video_id = c.video_id;
CREATE OR REPLACE TEMP VIEW train_turns AS
SELECT t.video_id, t.speaker_local, t.start, t."end"
FROM speaker_turns t
WHERE t.video_id IN (SELECT DISTINCT video_id FROM train_clips);
