-- The dataset report (issue 18): aggregates over the lake's views (orchestration.lake.create_views;
-- a table not written yet is an empty view with its declared schema, so the report works
-- before the branches exist). Read by assets/report; only small aggregates leave DuckDB.
--
-- report_kept_clips: every kept clip (tier pretrain or sft) with what the histograms show:
-- its length, the resolution of its source video, its visual quality and lip-sync confidence.
-- A table, joined once: every histogram scans it (narrow columns only: ~50 bytes a clip, about
-- 250 MB at 5 M clips, instead of one three-table join per histogram).
CREATE OR REPLACE TEMP TABLE report_kept_clips AS
SELECT
    t.tier, t.speaker_id, t.is_talking, t.duration,
    c.raw_video_width AS width, c.raw_video_height AS height, c.sync_confidence,
    q.visual_quality
FROM clip_tiers t
JOIN clips c USING (video_id, clip_id)
LEFT JOIN clip_quality q USING (video_id, clip_id)
WHERE t.tier IN ('pretrain', 'sft');
--
-- report_branch_clips: the clips each branch's rows use (a dialogue pair uses both turns, a
-- contextual multi-turn row its responder and every context clip, a listening pair the
-- listener's silent clip: the speaker's side of it is audio). Test-split pairs are a branch too.
CREATE OR REPLACE TEMP VIEW report_branch_clips AS
SELECT 'single' AS branch, video_id, clip_id FROM single
UNION ALL SELECT 'dialogue_pairs', video_id, initiator_clip_id FROM dialogue_pairs
UNION ALL SELECT 'dialogue_pairs', video_id, responder_clip_id FROM dialogue_pairs
UNION ALL SELECT 'listening_pairs', video_id, listener_clip_id FROM listening_pairs
UNION ALL SELECT 'multi_turn_context', video_id, responder_clip_id FROM multi_turn_context
UNION ALL SELECT 'multi_turn_context', video_id, unnest(context_clip_ids) FROM multi_turn_context
UNION ALL SELECT 'multi_turn_chains', video_id, clip_id FROM multi_turn_chains
UNION ALL SELECT 'vidchat_testset', video_id, initiator_clip_id FROM vidchat_testset
UNION ALL SELECT 'vidchat_testset', video_id, responder_clip_id FROM vidchat_testset;
--
-- report_branch_speakers: the speaker ids each branch holds: the speakers of its clips, plus
-- the talking speakers whose audio the listening pairs use.
CREATE OR REPLACE TEMP VIEW report_branch_speakers AS
SELECT DISTINCT b.branch, t.speaker_id
FROM report_branch_clips b JOIN clip_tiers t USING (video_id, clip_id)
WHERE t.speaker_id IS NOT NULL
UNION
SELECT 'listening_pairs', speaker_id FROM listening_pairs WHERE speaker_id IS NOT NULL;
--
-- report_branches: per branch its rows (pairs, clips or chains), the distinct clips they use
-- with their hours, the SFT clips and hours among them (clip_tiers), and its speaker ids.
CREATE OR REPLACE TEMP VIEW report_branches AS
WITH branch_rows AS (
    SELECT 'single' AS branch, count(*) AS rows FROM single
    UNION ALL SELECT 'dialogue_pairs', count(*) FROM dialogue_pairs
    UNION ALL SELECT 'listening_pairs', count(*) FROM listening_pairs
    UNION ALL SELECT 'multi_turn_context', count(*) FROM multi_turn_context
    UNION ALL SELECT 'multi_turn_chains', count(DISTINCT (video_id, chain_id)) FROM multi_turn_chains
    UNION ALL SELECT 'vidchat_testset', count(*) FROM vidchat_testset
),
clip_totals AS (
    SELECT b.branch, count(*) AS clips, sum(t.duration) / 3600 AS hours,
           count(*) FILTER (WHERE t.tier = 'sft') AS sft_clips,
           coalesce(sum(t.duration) FILTER (WHERE t.tier = 'sft'), 0) / 3600 AS sft_hours
    FROM (SELECT DISTINCT branch, video_id, clip_id FROM report_branch_clips) b
    JOIN clip_tiers t USING (video_id, clip_id)
    GROUP BY b.branch
),
speaker_totals AS (SELECT branch, count(*) AS speaker_ids FROM report_branch_speakers GROUP BY branch)
SELECT r.branch, r.rows, coalesce(c.clips, 0) AS clips, coalesce(c.hours, 0) AS hours,
       coalesce(c.sft_clips, 0) AS sft_clips, coalesce(c.sft_hours, 0) AS sft_hours,
       coalesce(s.speaker_ids, 0) AS speaker_ids
FROM branch_rows r LEFT JOIN clip_totals c USING (branch) LEFT JOIN speaker_totals s USING (branch);
--
-- report_tiers: clips, hours and speaker ids per tier (every tier listed, also when empty).
CREATE OR REPLACE TEMP VIEW report_tiers AS
SELECT tier, count(t.clip_id) AS clips, coalesce(sum(t.duration), 0) / 3600 AS hours, count(DISTINCT t.speaker_id) AS speaker_ids
FROM (VALUES ('rejected'), ('pretrain'), ('sft')) AS tiers(tier)
LEFT JOIN clip_tiers t USING (tier)
GROUP BY tier;
--
-- report_yield: hours of raw input (every ingested video's length) against the hours of all
-- clips cut, of kept clips and of SFT clips.
CREATE OR REPLACE TEMP VIEW report_yield AS
SELECT
    (SELECT count(*) FROM videos) AS videos,
    (SELECT coalesce(sum(duration_s), 0) / 3600 FROM videos) AS raw_hours,
    (SELECT coalesce(sum(duration), 0) / 3600 FROM clip_tiers) AS clip_hours,
    (SELECT coalesce(sum(duration), 0) / 3600 FROM clip_tiers WHERE tier IN ('pretrain', 'sft')) AS kept_hours,
    (SELECT coalesce(sum(duration), 0) / 3600 FROM clip_tiers WHERE tier = 'sft') AS sft_hours;
--
-- report_clip_reasons: clips (and their hours) per filter rule that rejected them; a clip
-- failing several rules counts once for each.
CREATE OR REPLACE TEMP VIEW report_clip_reasons AS
SELECT reason, count(*) AS clips, sum(duration) / 3600 AS hours
FROM (SELECT unnest(reasons) AS reason, duration FROM clip_tiers WHERE tier = 'rejected')
GROUP BY reason;
--
-- report_rejects: inputs and videos the pipeline rejected (table rejects), per stage and reason.
CREATE OR REPLACE TEMP VIEW report_rejects AS
SELECT stage, reason, count(*) AS rejects, count(DISTINCT video_id) AS videos
FROM rejects GROUP BY stage, reason;
--
-- report_stage_status: per per-video stage, the videos done (ok; with_reason: ok but nothing
-- to work on, e.g. no audio stream), failed (error) and pending (no row yet).
CREATE OR REPLACE TEMP VIEW report_stage_status AS
SELECT stage,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'ok' AND reason IS NOT NULL) AS ok_with_reason,
       count(*) FILTER (WHERE status = 'error') AS error,
       greatest((SELECT count(*) FROM videos) - count(*), 0) AS pending
FROM stage_status GROUP BY stage
