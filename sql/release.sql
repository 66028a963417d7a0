-- The release (issue 18): every kept clip (clip_tiers.tier <> 'rejected') with the fields of
-- its merged_anno/<clip_id>.json, run over the lake's views by assets/release. One row per
-- clip: clip_tiers is the source of truth for what is kept and the speaker id the tiers used;
-- clips, clip_quality and videos add the annotation and media fields (left joins, so a field
-- that is missing upstream is null in the file rather than the clip silently dropped).
CREATE OR REPLACE TEMP VIEW release_clips AS
SELECT
    t.clip_id,
    t.video_id,
    t.tier,
    t.speaker_id,
    c.speaker_local,
    c.track_id,
    c.start_seconds,
    c.end_seconds,
    c.is_talking,
    c.clip_speaker_num,
    c.bbox,
    c.raw_video_width,
    c.raw_video_height,
    c.listening_kind,
    c.text,
    c.words,
    c.language,
    c.language_prob,
    c.avg_logprob,
    c.no_speech_prob,
    c.compression_ratio,
    c.sync_offset,
    c.sync_confidence,
    c.sync_dist,
    q.luminance,
    q.clarity,
    q.visual_quality,
    q.visual_quality_backend,
    q.face_blur,
    q.hand_blur,
    q.motion_score,
    q.number_of_people,
    q.facing_direction,
    q.framing,
    q.caption,
    q.topic,
    v.width AS video_width,
    v.height AS video_height,
    v.fps AS video_fps,
    v.sha256 AS video_sha256,
    v.raw_uri,
    v.has_audio
FROM clip_tiers t
JOIN clips c ON c.video_id = t.video_id AND c.clip_id = t.clip_id
LEFT JOIN clip_quality q ON q.video_id = t.video_id AND q.clip_id = t.clip_id
LEFT JOIN videos v ON v.video_id = t.video_id
WHERE t.tier <> 'rejected';
