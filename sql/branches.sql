-- The four branches (issue 18, paper-spec.md §3) and the VidChatBench test split, over the
-- lake's views (orchestration.lake.create_views) and the materialized clip_tiers table. Run by
-- assets/branches; every limit comes from the stage=branches rows of the thresholds view.
--
-- Order of work (assets/branches/branches.py): this file creates the shared intermediate
-- tables (kept clips, floors, every dialogue pair before the split) and the output views;
-- Python then draws the test split from dialogue_candidates, fills vidchat_test_speakers,
-- and reads the output views, which leave out every row holding a test speaker.
--
-- No output has a row order (Delta tables have none): letting DuckDB drop insertion order
-- lets it stream and parallelise the big scans, joins and aggregates with less memory.
SET preserve_insertion_order = false;
--
-- branch_limits: the branch settings as one typed row (a missing row leaves its column null,
-- which assets/branches refuses).
CREATE OR REPLACE TEMP VIEW branch_limits AS
SELECT
    max(CASE WHEN name = 'dialogue_max_gap_s' THEN CAST(value AS DOUBLE) END) AS dialogue_max_gap_s,
    max(CASE WHEN name = 'multi_turn_history_s' THEN CAST(value AS DOUBLE) END) AS multi_turn_history_s,
    max(CASE WHEN name = 'multi_turn_max_gap_s' THEN CAST(value AS DOUBLE) END) AS multi_turn_max_gap_s,
    max(CASE WHEN name = 'vidchat_test_pairs' THEN CAST(value AS BIGINT) END) AS vidchat_test_pairs,
    max(CASE WHEN name = 'vidchat_seed' THEN CAST(value AS BIGINT) END) AS vidchat_seed,
    max(CASE WHEN name = 'vidchat_max_train_loss' THEN CAST(value AS DOUBLE) END) AS vidchat_max_train_loss
FROM thresholds
WHERE stage = 'branches';
--
-- The test split's speaker ids, filled by assets/branches after the draw (empty until then).
CREATE OR REPLACE TEMP TABLE vidchat_test_speakers (speaker_id VARCHAR PRIMARY KEY);
--
-- video_keys: an integer per video of a kept clip. The per-video joins, windows and groups
-- below hash and sort this key instead of the video_id string (string hashing and sorting
-- dominated their cost at SpeakerVid-5M scale; docs/benchmarks.md).
CREATE OR REPLACE TEMP TABLE video_keys AS
SELECT video_id, CAST(row_number() OVER () AS INTEGER) AS video_key
FROM (SELECT DISTINCT video_id FROM clip_tiers WHERE tier <> 'rejected');
--
-- kept_clips: every clip not rejected by the tiers, with the person's current dataset-wide
-- speaker id (speaker_assignments on the clip's identity unit; the id recorded when the clip
-- was cut if the unit has no row). A null speaker id (a face without an ArcFace embedding)
-- can never be told apart from a test speaker's, so such clips stay in training and never
-- enter the test split.
CREATE OR REPLACE TEMP TABLE kept_clips AS
SELECT
    c.clip_id, c.video_id, v.video_key, coalesce(sa.speaker_id, c.speaker_id) AS speaker_id, c.speaker_local,
    c.start_seconds, c.end_seconds, c.duration, c.is_talking, c.turn_id, c.listening_kind,
    c.partner_speaker_local, c.text, t.tier,
    -- the multi-turn window's time bucket (multi_turn_context_rows)
    CAST(floor(c.start_seconds / l.multi_turn_history_s) AS BIGINT) AS history_bucket
FROM clips c
CROSS JOIN branch_limits l
-- clip_id is unique lake-wide (it embeds video_id): the one-column join is the cheap one
JOIN clip_tiers t ON t.clip_id = c.clip_id
JOIN video_keys v ON v.video_id = c.video_id
LEFT JOIN speaker_assignments sa ON sa.video_id = c.video_id AND sa.unit = c.identity_unit
WHERE t.tier <> 'rejected';
--
-- turn_floors: the turns of the two bound main speakers of each video (videos whose two main
-- speakers are not both bound to a face give no dialogue), grouped into floors: a floor is a
-- run of consecutive turns of one speaker (diarization splits a reply at its pauses; the
-- reply is still one turn of the conversation). A turn lying wholly inside an earlier-started
-- turn is a backchannel ("mm-hm" under the partner's speech): it does not take the floor and
-- belongs to none. (Only videos with a kept clip, the ones in video_keys, can give a pair.)
CREATE OR REPLACE TEMP TABLE turn_floors AS
WITH dialogue_speakers AS (
    SELECT v.video_key, vs.speaker_local
    FROM video_speakers vs
    JOIN bindings b ON b.video_id = vs.video_id AND b.speaker_local = vs.speaker_local
    JOIN video_keys v ON v.video_id = vs.video_id
    WHERE vs.is_main AND b.track_id IS NOT NULL
    QUALIFY count(*) OVER (PARTITION BY v.video_key) = 2
),
turns AS (
    SELECT v.video_key, t.turn_id, t.speaker_local, t.start, t."end",
        max(t."end") OVER (PARTITION BY v.video_key ORDER BY t.start, t.turn_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_end
    FROM speaker_turns t
    JOIN video_keys v ON v.video_id = t.video_id
    SEMI JOIN dialogue_speakers d ON d.video_key = v.video_key AND d.speaker_local = t.speaker_local
),
floor_turns AS (
    SELECT *,
        CASE WHEN speaker_local IS DISTINCT FROM lag(speaker_local) OVER (PARTITION BY video_key ORDER BY start, turn_id) THEN 1 ELSE 0 END AS new_floor
    FROM turns
    WHERE earlier_end IS NULL OR "end" > earlier_end
),
numbered AS (
    SELECT *, CAST(sum(new_floor) OVER (PARTITION BY video_key ORDER BY start, turn_id ROWS UNBOUNDED PRECEDING) AS INTEGER) AS floor_no
    FROM floor_turns
)
SELECT n.video_key, n.turn_id, n.speaker_local, n.floor_no, f.floor_start, f.floor_end
FROM numbered n
JOIN (SELECT video_key, floor_no, min(start) AS floor_start, max("end") AS floor_end FROM numbered GROUP BY ALL) f
    ON f.video_key = n.video_key AND f.floor_no = n.floor_no;
--
-- dialogue_candidates: every dialogue pair before the test split. Consecutive floors (they
-- alternate between the two speakers by construction) whose gap, the responder floor's
-- start minus the initiator floor's end, is at most dialogue_max_gap_s. The initiator's clip
-- is the last kept talking clip of its floor (what the responder answers), the responder's
-- the first kept talking clip of its floor (the answer's start); a floor without a kept
-- talking clip gives no pair (the pair is never bridged to a farther floor). tier: sft only
-- when both clips are sft.
CREATE OR REPLACE TEMP TABLE dialogue_candidates AS
WITH floor_clips AS (
    -- grouped on the floor's key alone: its speaker, start and end are the floor's
    SELECT f.video_key, f.floor_no, any_value(f.speaker_local) AS speaker_local, any_value(f.floor_start) AS floor_start,
        any_value(f.floor_end) AS floor_end, any_value(k.video_id) AS video_id,
        -- ties (two face tracks of one person at the same time) broken by clip_id: deterministic
        arg_min({'clip_id': k.clip_id, 'speaker_id': k.speaker_id, 'turn_id': k.turn_id, 'tier': k.tier, 'start': k.start_seconds}, (k.start_seconds, k.clip_id)) AS first_clip,
        arg_max({'clip_id': k.clip_id, 'speaker_id': k.speaker_id, 'turn_id': k.turn_id, 'tier': k.tier, 'start': k.start_seconds}, (k.end_seconds, k.clip_id)) AS last_clip
    FROM kept_clips k
    JOIN turn_floors f ON f.video_key = k.video_key AND f.turn_id = k.turn_id
    WHERE k.is_talking AND k.speaker_local = f.speaker_local
    GROUP BY f.video_key, f.floor_no
)
SELECT
    substr(md5(a.last_clip.clip_id || '>' || b.first_clip.clip_id), 1, 20) AS pair_id,
    a.video_id,
    a.video_key,
    a.last_clip.clip_id AS initiator_clip_id,
    b.first_clip.clip_id AS responder_clip_id,
    a.last_clip.speaker_id AS initiator_speaker_id,
    b.first_clip.speaker_id AS responder_speaker_id,
    a.speaker_local AS initiator_speaker_local,
    b.speaker_local AS responder_speaker_local,
    a.last_clip.turn_id AS initiator_turn_id,
    b.first_clip.turn_id AS responder_turn_id,
    b.floor_start - a.floor_end AS gap_s,
    CASE WHEN a.last_clip.tier = 'sft' AND b.first_clip.tier = 'sft' THEN 'sft' ELSE 'pretrain' END AS tier,
    a.last_clip.start AS dialogue_start
FROM floor_clips a
JOIN floor_clips b ON b.video_key = a.video_key AND b.floor_no = a.floor_no + 1
CROSS JOIN branch_limits l
WHERE b.floor_start - a.floor_end <= l.dialogue_max_gap_s;
--
-- For the test split's draw: speaker pairs (dyads) that could be test pairs (two distinct
-- non-null speaker ids), each with its pairs and its place in the seeded order, and what
-- each speaker would take from training (its kept talking clips, the single branch's rows).
CREATE OR REPLACE TEMP VIEW vidchat_dyads AS
SELECT speaker_a, speaker_b, pairs, md5(CAST(l.vidchat_seed AS VARCHAR) || ':' || speaker_a || '|' || speaker_b) AS draw_order
FROM (
    SELECT least(initiator_speaker_id, responder_speaker_id) AS speaker_a,
        greatest(initiator_speaker_id, responder_speaker_id) AS speaker_b,
        count(*) AS pairs
    FROM dialogue_candidates
    WHERE initiator_speaker_id IS NOT NULL AND responder_speaker_id IS NOT NULL AND initiator_speaker_id <> responder_speaker_id
    GROUP BY ALL
) CROSS JOIN branch_limits l;
CREATE OR REPLACE TEMP VIEW speaker_training_clips AS
SELECT speaker_id, count(*) AS clips FROM kept_clips WHERE is_talking AND speaker_id IS NOT NULL GROUP BY ALL;
--
-- vidchat_rows: the test pairs: every candidate pair whose two speakers are test speakers,
-- in the seeded order of its pair_id, the first vidchat_test_pairs of them.
CREATE OR REPLACE TEMP VIEW vidchat_rows AS
SELECT pair_id, video_id, initiator_clip_id, responder_clip_id, initiator_speaker_id, responder_speaker_id,
    CAST(row_number() OVER (ORDER BY md5(CAST(l.vidchat_seed AS VARCHAR) || ':' || pair_id), pair_id) AS INTEGER) AS rank,
    l.vidchat_seed AS seed
FROM dialogue_candidates CROSS JOIN branch_limits l
WHERE initiator_speaker_id IN (SELECT speaker_id FROM vidchat_test_speakers)
  AND responder_speaker_id IN (SELECT speaker_id FROM vidchat_test_speakers)
  AND initiator_speaker_id <> responder_speaker_id
QUALIFY rank <= l.vidchat_test_pairs;
--
-- ---- training branches: no row holds a test speaker ----
-- single_rows: kept talking clips.
CREATE OR REPLACE TEMP VIEW single_rows AS
SELECT clip_id, video_id, speaker_id, start_seconds, end_seconds, duration, tier
FROM kept_clips
WHERE is_talking AND (speaker_id IS NULL OR speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers));
--
-- (pair_key: the row's integer id, a cheaper group key than pair_id for the context rows)
CREATE OR REPLACE TEMP VIEW training_pairs AS
SELECT *, rowid AS pair_key
FROM dialogue_candidates
WHERE (initiator_speaker_id IS NULL OR initiator_speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers))
  AND (responder_speaker_id IS NULL OR responder_speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers));
CREATE OR REPLACE TEMP VIEW dialogue_rows AS SELECT * EXCLUDE (video_key, dialogue_start, pair_key) FROM training_pairs;
--
-- listening_rows: each kept listening clip with its partner's speech over the same span: the
-- audio span is the clip's own span (the listening stage already required that partner to
-- talk over it and nobody else), speaker_clip_id the partner's kept talking clip overlapping
-- it most (null when the partner has none there, e.g. the partner's face is off screen or
-- its clip was rejected: the audio is still the pair's input). pair_id = hash of the listener
-- clip and the partner (one pair per listening clip, stable when the partner's clip changes).
-- tier: the listener clip's (its F6 already judged the partner's speech).
CREATE OR REPLACE TEMP VIEW listening_rows AS
WITH listening AS (
    SELECT k.*, sa.speaker_id AS partner_speaker_id
    FROM kept_clips k
    LEFT JOIN speaker_assignments sa ON sa.video_id = k.video_id AND sa.unit = k.partner_speaker_local
    WHERE NOT k.is_talking AND k.partner_speaker_local IS NOT NULL
),
speaker_clip AS (
    SELECT l.clip_id,
        arg_max(s.clip_id, (least(s.end_seconds, l.end_seconds) - greatest(s.start_seconds, l.start_seconds), s.clip_id)) AS speaker_clip_id
    FROM listening l
    JOIN kept_clips s ON s.video_key = l.video_key AND s.speaker_local = l.partner_speaker_local AND s.is_talking
        AND s.start_seconds < l.end_seconds AND s.end_seconds > l.start_seconds
    GROUP BY ALL
)
SELECT
    substr(md5(l.clip_id || '<' || l.partner_speaker_local), 1, 20) AS pair_id,
    l.video_id,
    l.clip_id AS listener_clip_id,
    l.speaker_id AS listener_speaker_id,
    l.partner_speaker_local AS speaker_local,
    l.partner_speaker_id AS speaker_id,
    sc.speaker_clip_id,
    l.start_seconds AS audio_start,
    l.end_seconds AS audio_end,
    l.listening_kind AS kind,
    l.tier
FROM listening l
LEFT JOIN speaker_clip sc ON sc.clip_id = l.clip_id
WHERE (l.speaker_id IS NULL OR l.speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers))
  AND (l.partner_speaker_id IS NULL OR l.partner_speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers));
--
-- multi_turn_context_rows: for each training dialogue pair, x = its initiator clip's start
-- (the dialogue's start); the earlier turns are the kept talking clips of the pair's two
-- speakers lying wholly within [x - multi_turn_history_s, x], their ASR joined in time order
-- as "speaker_local: text" lines. Pairs without an earlier turn have no context and no row.
CREATE OR REPLACE TEMP VIEW multi_turn_context_rows AS
WITH pair_buckets AS (
    -- one row per pair and T-long time bucket the window [x - T, x] touches (a clip starting
    -- in the window starts in bucket floor(x / T) - 1 or floor(x / T)): the clip join is then
    -- an equi-join on (video, bucket: kept_clips.history_bucket) that meets only the few clips
    -- near x, the pair's two speakers a filter on them (an IN over two columns as the join
    -- condition made DuckDB fall back to a nested-loop join, and joining on the speaker alone
    -- meets every clip of the video)
    SELECT d.pair_key, d.pair_id, d.video_id, d.video_key, d.responder_clip_id, d.dialogue_start,
        d.initiator_speaker_local, d.responder_speaker_local, b.bucket
    FROM training_pairs d
    CROSS JOIN branch_limits l,
        unnest([CAST(floor(d.dialogue_start / l.multi_turn_history_s) AS BIGINT) - 1, CAST(floor(d.dialogue_start / l.multi_turn_history_s) AS BIGINT)]) AS b(bucket)
)
SELECT
    pair_id, video_id, responder_clip_id, dialogue_start,
    list_transform(context, c -> c.clip_id) AS context_clip_ids,
    list_transform(context, c -> c.speaker_id) AS context_speaker_ids,
    array_to_string(list_transform(context, c -> c.line), chr(10)) AS context_text,
    context_seconds
FROM (
    SELECT any_value(p.pair_id) AS pair_id, any_value(p.video_id) AS video_id, any_value(p.responder_clip_id) AS responder_clip_id, any_value(p.dialogue_start) AS dialogue_start,
        -- collected unordered, then sorted (start, clip_id): far cheaper than ordered aggregates
        list_sort(list({'start': k.start_seconds, 'clip_id': k.clip_id, 'speaker_id': k.speaker_id,
            'line': k.speaker_local || ': ' || coalesce(trim(k.text), '')})) AS context,
        sum(k.duration) AS context_seconds
    FROM pair_buckets p
    CROSS JOIN branch_limits l
    JOIN kept_clips k ON k.video_key = p.video_key AND k.history_bucket = p.bucket
    WHERE k.is_talking AND (k.speaker_local = p.initiator_speaker_local OR k.speaker_local = p.responder_speaker_local)
      AND k.start_seconds >= p.dialogue_start - l.multi_turn_history_s AND k.end_seconds <= p.dialogue_start
      AND (k.speaker_id IS NULL OR k.speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers))
    GROUP BY p.pair_key
);
--
-- multi_turn_chain_rows: a video's kept talking clips of training speakers in time order; a
-- chain breaks where the gap to the previous clip (start minus its end) is not below
-- multi_turn_max_gap_s. Chains of one speaker only (a long turn cut into pieces) are no
-- conversation and are left out. chain_id = hash of the chain's first clip id.
CREATE OR REPLACE TEMP VIEW multi_turn_chain_rows AS
WITH ordered AS (
    SELECT clip_id, video_id, video_key, speaker_id, speaker_local,
        start_seconds - lag(end_seconds) OVER w AS gap_before_s,
        row_number() OVER w AS rn
    FROM kept_clips
    WHERE is_talking AND (speaker_id IS NULL OR speaker_id NOT IN (SELECT speaker_id FROM vidchat_test_speakers))
    WINDOW w AS (PARTITION BY video_key ORDER BY start_seconds, clip_id)
),
chained AS (
    -- a chain is named by the row number of its first clip: the running max of the chain starts
    SELECT *, max(CASE WHEN gap_before_s IS NULL OR gap_before_s >= l.multi_turn_max_gap_s THEN rn END)
        OVER (PARTITION BY video_key ORDER BY rn ROWS UNBOUNDED PRECEDING) AS chain_rn
    FROM ordered CROSS JOIN branch_limits l
),
chains AS (
    SELECT video_key, chain_rn, substr(md5(arg_min(clip_id, rn)), 1, 20) AS chain_id
    FROM chained
    GROUP BY video_key, chain_rn
    HAVING min(speaker_local) <> max(speaker_local)
)
SELECT c.chain_id, x.video_id, CAST(x.rn - x.chain_rn AS INTEGER) AS position, x.clip_id, x.speaker_id,
    CASE WHEN x.rn = x.chain_rn THEN NULL ELSE x.gap_before_s END AS gap_before_s
FROM chained x
JOIN chains c ON c.video_key = x.video_key AND c.chain_rn = x.chain_rn;
