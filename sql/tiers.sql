-- Quality tiers of every clip (issue 17): the paper's filters F1-F6 as data. Run over the
-- lake's views (orchestration.lake.create_views: clips, clip_quality, thresholds) by
-- assets/tiers; every limit comes from the stage=tiers rows of the thresholds view, none is
-- written here.
--
-- tier_limits: the tier thresholds as one typed row (a missing row leaves its column null,
-- which assets/tiers refuses before tiering).
CREATE OR REPLACE TEMP VIEW tier_limits AS
SELECT
    max(CASE WHEN name = 'tier_luminance_min' THEN CAST(value AS DOUBLE) END) AS luminance_min,
    max(CASE WHEN name = 'tier_luminance_max' THEN CAST(value AS DOUBLE) END) AS luminance_max,
    max(CASE WHEN name = 'tier_visual_quality_min' THEN CAST(value AS DOUBLE) END) AS visual_quality_min,
    max(CASE WHEN name = 'tier_clarity_drop_share' THEN CAST(value AS DOUBLE) END) AS clarity_drop_share,
    max(CASE WHEN name = 'tier_face_blur_min' THEN CAST(value AS DOUBLE) END) AS face_blur_min,
    max(CASE WHEN name = 'tier_hand_blur_min' THEN CAST(value AS DOUBLE) END) AS hand_blur_min,
    max(CASE WHEN name = 'tier_avg_logprob_min' THEN CAST(value AS DOUBLE) END) AS avg_logprob_min,
    max(CASE WHEN name = 'tier_no_speech_prob_max' THEN CAST(value AS DOUBLE) END) AS no_speech_prob_max,
    max(CASE WHEN name = 'tier_compression_ratio_max' THEN CAST(value AS DOUBLE) END) AS compression_ratio_max,
    max(CASE WHEN name = 'tier_languages' THEN list_filter(string_split(trim(value), ' '), x -> x <> '') END) AS languages,
    max(CASE WHEN name = 'sft_face_blur_min' THEN CAST(value AS DOUBLE) END) AS sft_face_blur_min,
    max(CASE WHEN name = 'sft_hand_blur_min' THEN CAST(value AS DOUBLE) END) AS sft_hand_blur_min,
    max(CASE WHEN name = 'sft_visual_quality_min' THEN CAST(value AS DOUBLE) END) AS sft_visual_quality_min,
    max(CASE WHEN name = 'sft_motion_score_min' THEN CAST(value AS DOUBLE) END) AS sft_motion_score_min,
    max(CASE WHEN name = 'sft_avg_logprob_min' THEN CAST(value AS DOUBLE) END) AS sft_avg_logprob_min,
    max(CASE WHEN name = 'contract_clip_min_s' THEN CAST(value AS DOUBLE) END) AS clip_min_s,
    max(CASE WHEN name = 'contract_clip_max_s' THEN CAST(value AS DOUBLE) END) AS clip_max_s
FROM thresholds
WHERE stage = 'tiers';
--
-- clip_tier_decisions: one row per clip of the clips table (a clip without a clip_quality row
-- is kept and rejected as no_quality, never dropped by the join).
-- reasons: every failed filter rule. A null measurement is a failed rule of its own
-- (<group>_missing) rather than a silent pass; hand rules apply only when a hand is visible
-- (hand_blur not null); F5 (Whisper's decode of the clip's own speech) applies to talking
-- clips only, F6 to every clip whose audio has a detected language (a listening clip's is
-- its partner's speech, the audio of the listening pair).
-- sft_missed: every SFT rule missed (a null measurement misses it). tier: rejected when any
-- reason, else sft when no SFT rule is missed, else pretrain: the two are disjoint as in the
-- paper (7,375 h + 1,368 h = 8,743 h).
CREATE OR REPLACE TEMP VIEW clip_tier_decisions AS
WITH joined AS (
    SELECT
        c.clip_id, c.video_id, c.speaker_id, c.is_talking, c.duration, c.language,
        c.avg_logprob, c.no_speech_prob, c.compression_ratio,
        -- unknown talking state: the stricter (talking) rules apply
        coalesce(c.is_talking, true) AS talking,
        q.clip_id IS NOT NULL AS has_quality,
        q.luminance, q.clarity, q.visual_quality, q.face_blur, q.hand_blur, q.motion_score,
        -- F3 ranks clarity over the whole lake (every clip with a clarity): the share of clips
        -- at or below this one's clarity. Dropping shares <= the limit drops the lowest 5 %
        -- without splitting ties (clarity is per source video), so never more than 5 %.
        CASE WHEN q.clarity IS NOT NULL THEN
            cume_dist() OVER (PARTITION BY q.clarity IS NOT NULL ORDER BY q.clarity)
        END AS clarity_share
    FROM clips c
    LEFT JOIN clip_quality q ON q.video_id = c.video_id AND q.clip_id = c.clip_id
),
judged AS (
    SELECT
        j.*,
        list_filter([
            CASE WHEN NOT j.has_quality THEN 'no_quality' END,
            CASE WHEN j.has_quality AND j.luminance IS NULL THEN 'F1_luminance_missing' END,
            CASE WHEN j.luminance < l.luminance_min THEN 'F1_luminance_low' END,
            CASE WHEN j.luminance > l.luminance_max THEN 'F1_luminance_high' END,
            CASE WHEN j.has_quality AND j.visual_quality IS NULL THEN 'F2_visual_quality_missing' END,
            CASE WHEN j.visual_quality < l.visual_quality_min THEN 'F2_visual_quality_low' END,
            CASE WHEN j.has_quality AND j.clarity IS NULL THEN 'F3_clarity_missing' END,
            CASE WHEN j.clarity_share <= l.clarity_drop_share THEN 'F3_clarity_low' END,
            CASE WHEN j.has_quality AND j.face_blur IS NULL THEN 'F4_face_blur_missing' END,
            CASE WHEN j.face_blur < l.face_blur_min THEN 'F4_face_blur_low' END,
            CASE WHEN j.hand_blur < l.hand_blur_min THEN 'F4_hand_blur_low' END,
            CASE WHEN j.talking AND (j.avg_logprob IS NULL OR j.no_speech_prob IS NULL OR j.compression_ratio IS NULL)
                THEN 'F5_asr_missing' END,
            CASE WHEN j.talking AND j.avg_logprob < l.avg_logprob_min THEN 'F5_avg_logprob_low' END,
            CASE WHEN j.talking AND j.no_speech_prob > l.no_speech_prob_max THEN 'F5_no_speech_prob_high' END,
            CASE WHEN j.talking AND j.compression_ratio > l.compression_ratio_max THEN 'F5_compression_ratio_high' END,
            CASE WHEN j.talking AND j.language IS NULL THEN 'F6_language_missing' END,
            CASE WHEN NOT list_contains(l.languages, j.language) THEN 'F6_language_not_accepted' END
        ], r -> r IS NOT NULL) AS reasons,
        list_filter([
            CASE WHEN NOT coalesce(j.face_blur > l.sft_face_blur_min, false) THEN 'SFT_face_blur' END,
            CASE WHEN j.hand_blur <= l.sft_hand_blur_min THEN 'SFT_hand_blur' END,
            CASE WHEN NOT coalesce(j.visual_quality > l.sft_visual_quality_min, false) THEN 'SFT_visual_quality' END,
            CASE WHEN NOT coalesce(j.motion_score > l.sft_motion_score_min, false) THEN 'SFT_motion_score' END,
            CASE WHEN j.talking AND NOT coalesce(j.avg_logprob > l.sft_avg_logprob_min, false) THEN 'SFT_avg_logprob' END
        ], r -> r IS NOT NULL) AS sft_missed
    FROM joined j
    CROSS JOIN tier_limits l
)
SELECT
    clip_id, video_id, speaker_id, is_talking, duration,
    CASE WHEN len(reasons) > 0 THEN 'rejected' WHEN len(sft_missed) = 0 THEN 'sft' ELSE 'pretrain' END AS tier,
    reasons, sft_missed
FROM judged;
--
-- sft_rows: the SFT subset from the materialized clip_tiers table (the decision the
-- clip_tiers asset recorded), with the fields a fine-tuning loader needs.
CREATE OR REPLACE TEMP VIEW sft_rows AS
SELECT
    c.clip_id, c.video_id, c.speaker_id, c.start_seconds, c.end_seconds, c.duration, c.is_talking, c.bbox,
    c.raw_video_width, c.raw_video_height, c.text, c.language, c.avg_logprob, c.no_speech_prob, c.compression_ratio,
    q.luminance, q.clarity, q.visual_quality, q.face_blur, q.hand_blur, q.motion_score, q.caption
FROM clip_tiers t
JOIN clips c ON c.video_id = t.video_id AND c.clip_id = t.clip_id
JOIN clip_quality q ON q.video_id = t.video_id AND q.clip_id = t.clip_id
WHERE t.tier = 'sft';
