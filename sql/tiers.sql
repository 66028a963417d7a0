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
    max(CASE WHEN name = 'clip_min_s' THEN CAST(value AS DOUBLE) END) AS clip_min_s,
    max(CASE WHEN name = 'clip_max_s' THEN CAST(value AS DOUBLE) END) AS clip_max_s
FROM thresholds
WHERE stage = 'tiers' OR name IN ('clip_min_s', 'clip_max_s');  -- the clips stage's length bounds are the SFT contract's too
--
-- clip_tier_decisions: one row per clip of the clips table (a clip without a clip_quality row
-- is kept and rejected as no_quality, never dropped by the join).
-- reasons: every failed filter rule (and taken_down: the clip's person matches a taken-down face). A null measurement is a failed rule of its own
-- (<group>_missing) rather than a silent pass; hand rules apply only when a hand is visible
-- (hand_blur not null); F5 (Whisper's decode of the clip's own speech) applies to talking
-- clips only, F6 to every clip whose audio has a detected language (a listening clip's is
-- its partner's speech, the audio of the listening pair).
-- sft_missed: every SFT rule missed (a null measurement misses it). tier: rejected when any
-- reason, else sft when no SFT rule is missed, else pretrain: the two are disjoint as in the
-- paper (7,375 h + 1,368 h = 8,743 h).
CREATE OR REPLACE TEMP VIEW clip_tier_decisions AS
WITH clarity_cut AS (
    -- F3 ranks clarity over the whole lake (one clip_quality row per clip): the cut is the
    -- highest clarity whose share of clips at or below it is within the limit. Dropping clips
    -- at or below the cut drops the lowest 5 % without splitting ties (clarity is per source
    -- video), so never more than 5 %. Counting per distinct clarity keeps the sort small.
    SELECT max(CASE WHEN at_or_below <= l.clarity_drop_share * total THEN clarity END) AS cut
    FROM (
        SELECT clarity, sum(n) OVER (ORDER BY clarity) AS at_or_below, sum(n) OVER () AS total
        FROM (SELECT clarity, count(*) AS n FROM clip_quality WHERE clarity IS NOT NULL GROUP BY clarity)
    )
    CROSS JOIN tier_limits l
),
flags AS (
    SELECT
        c.clip_id, c.video_id, c.speaker_id, c.is_talking, c.duration,
        q.clip_id IS NULL AS no_quality,
        -- the clip's person matches a taken-down face (sql/views.sql blocked_units)
        b.unit IS NOT NULL AS taken_down,
        q.clip_id IS NOT NULL AND q.luminance IS NULL AS f1_missing,
        q.luminance < l.luminance_min AS f1_low,
        q.luminance > l.luminance_max AS f1_high,
        q.clip_id IS NOT NULL AND q.visual_quality IS NULL AS f2_missing,
        q.visual_quality < l.visual_quality_min AS f2_low,
        q.clip_id IS NOT NULL AND q.clarity IS NULL AS f3_missing,
        q.clarity <= k.cut AS f3_low,
        q.clip_id IS NOT NULL AND q.face_blur IS NULL AS f4_face_missing,
        q.face_blur < l.face_blur_min AS f4_face_low,
        q.hand_blur < l.hand_blur_min AS f4_hand_low,
        -- unknown talking state: the stricter (talking) rules apply
        coalesce(c.is_talking, true) AS talking,
        talking AND (c.avg_logprob IS NULL OR c.no_speech_prob IS NULL OR c.compression_ratio IS NULL) AS f5_missing,
        talking AND c.avg_logprob < l.avg_logprob_min AS f5_logprob,
        talking AND c.no_speech_prob > l.no_speech_prob_max AS f5_no_speech,
        talking AND c.compression_ratio > l.compression_ratio_max AS f5_compression,
        talking AND c.language IS NULL AS f6_missing,
        -- a semi-join against the accepted set (one list per row from the cross join would be costly)
        c.language NOT IN (SELECT unnest(languages) FROM tier_limits) AS f6_language,
        NOT coalesce(q.face_blur > l.sft_face_blur_min, false) AS sft_face,
        q.hand_blur <= l.sft_hand_blur_min AS sft_hand,
        NOT coalesce(q.visual_quality > l.sft_visual_quality_min, false) AS sft_quality,
        NOT coalesce(q.motion_score > l.sft_motion_score_min, false) AS sft_motion,
        talking AND NOT coalesce(c.avg_logprob > l.sft_avg_logprob_min, false) AS sft_logprob
    FROM clips c
    -- clip_id is unique lake-wide (it embeds video_id): the one-column join is much cheaper
    LEFT JOIN clip_quality q ON q.clip_id = c.clip_id
    LEFT JOIN (SELECT DISTINCT video_id, unit FROM blocked_units) b ON b.video_id = c.video_id AND b.unit = c.identity_unit
    CROSS JOIN tier_limits l
    CROSS JOIN clarity_cut k
),
judged AS (
    SELECT
        *,
        -- a null flag (unmeasured value) is no failure here: the *_missing flags name it
        coalesce(taken_down OR no_quality OR f1_missing OR f1_low OR f1_high OR f2_missing OR f2_low OR f3_missing OR f3_low
            OR f4_face_missing OR f4_face_low OR f4_hand_low OR f5_missing OR f5_logprob OR f5_no_speech
            OR f5_compression OR f6_missing OR f6_language, false) AS rejected,
        coalesce(sft_face OR sft_hand OR sft_quality OR sft_motion OR sft_logprob, false) AS missed
    FROM flags
)
SELECT
    clip_id, video_id, speaker_id, is_talking, duration,
    CASE WHEN rejected THEN 'rejected' WHEN NOT missed THEN 'sft' ELSE 'pretrain' END AS tier,
    -- the rule lists are built only for the clips that fail one; concat_ws skips the rules
    -- not failed (null), which is much cheaper than a lambda filter over 5 M lists
    CASE WHEN rejected THEN string_split(concat_ws(',',
        CASE WHEN taken_down THEN 'taken_down' END,
        CASE WHEN no_quality THEN 'no_quality' END,
        CASE WHEN f1_missing THEN 'F1_luminance_missing' END,
        CASE WHEN f1_low THEN 'F1_luminance_low' END,
        CASE WHEN f1_high THEN 'F1_luminance_high' END,
        CASE WHEN f2_missing THEN 'F2_visual_quality_missing' END,
        CASE WHEN f2_low THEN 'F2_visual_quality_low' END,
        CASE WHEN f3_missing THEN 'F3_clarity_missing' END,
        CASE WHEN f3_low THEN 'F3_clarity_low' END,
        CASE WHEN f4_face_missing THEN 'F4_face_blur_missing' END,
        CASE WHEN f4_face_low THEN 'F4_face_blur_low' END,
        CASE WHEN f4_hand_low THEN 'F4_hand_blur_low' END,
        CASE WHEN f5_missing THEN 'F5_asr_missing' END,
        CASE WHEN f5_logprob THEN 'F5_avg_logprob_low' END,
        CASE WHEN f5_no_speech THEN 'F5_no_speech_prob_high' END,
        CASE WHEN f5_compression THEN 'F5_compression_ratio_high' END,
        CASE WHEN f6_missing THEN 'F6_language_missing' END,
        CASE WHEN f6_language THEN 'F6_language_not_accepted' END
    ), ',') ELSE [] END AS reasons,
    CASE WHEN missed THEN string_split(concat_ws(',',
        CASE WHEN sft_face THEN 'SFT_face_blur' END,
        CASE WHEN sft_hand THEN 'SFT_hand_blur' END,
        CASE WHEN sft_quality THEN 'SFT_visual_quality' END,
        CASE WHEN sft_motion THEN 'SFT_motion_score' END,
        CASE WHEN sft_logprob THEN 'SFT_avg_logprob' END
    ), ',') ELSE [] END AS sft_missed
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
