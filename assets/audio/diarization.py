"""Speaker diarization: who speaks when, with the number of speakers estimated (1..max).

Default backend (offline, shipped models only): the pyannote 3.x recipe rebuilt from the
two models available here.

1. **Local segmentation.** pyannote's PyanNet segmentation model that ships inside the
   whisperx wheel (``whisperx/assets/pytorch_model.bin``, whisperx's default VAD: 5 s
   windows, up to 3 local speakers, multilabel frame activations every ~17 ms) runs on 5 s
   chunks every ``step_s``. Within a chunk it says *how many* people speak and *where*,
   overlap included — what window embeddings cannot do.
2. **Embeddings.** Every (chunk, local speaker) gets one resemblyzer d-vector (GE2E,
   ``SPEAKERLAKE_SPEAKER_MODEL``) over its *clean* frames (it alone is active), computed as
   resemblyzer's ``embed_utterance`` does (mean of 1.6 s partials) on a power-mel computed
   once for the whole file.
3. **Counting = constrained clustering.** Centroid-linkage agglomerative clustering of the
   *reliable* d-vectors (>= ``min_embed_s`` clean seconds) with a **cannot-link** between
   the local speakers of one chunk: the segmentation model already heard them as two
   people. Merging stops when the best allowed pair's centroid cosine falls below
   ``cluster_threshold`` (at most ``max_speakers`` clusters survive). Clusters with less
   than ``min_speaker_s`` clean speech are folded into their most similar allowed cluster;
   the short local speakers then take the most similar centroid not used in their chunk.
   On long videos (more than ``cluster_block_items`` reliable d-vectors) the same linkage
   runs in two stages, within consecutive blocks and then over the blocks' clusters
   (:func:`blockwise_clustering`), so memory stays bounded and time linear.

   Why this counts robustly where thresholding window embeddings does not: the two
   speakers of one phone line are 0.82 apart (centroid cosine) while one speaker's own
   segments go down to 0.75, so no threshold separates them — but every turn change inside
   a 5 s chunk is a cannot-link, which keeps them apart. A monologue produces no chunk with
   two local speakers (0 of 10/23 chunks on LibriVox / a lecture vs 6 of 11 on the phone
   call), so nothing forces a split and the threshold only has to merge one voice's
   segments. Voices from different recordings (cosine 0.45-0.73) are also kept apart by
   the threshold alone. Tuned on 10 real recordings (1, 2 and 3 speakers): the count was
   right on all of them for thresholds 0.73-0.80.
4. **Reconstruction.** Each chunk's activations are mapped to global speakers and averaged
   over the overlapping chunks on a 10 ms grid. Inside silero VAD speech at least one
   speaker is active (silero decides *whether*, the segmentation model *how many*: the
   rounded mean of the chunks' local counts); the most active speakers fill that count, so
   overlapped speech yields two simultaneous turns.
5. **Turns.** Per speaker, gaps shorter than ``min_gap_s`` are bridged and turns shorter
   than ``min_turn_s`` dropped. Turns of different speakers may overlap (like an RTTM); a
   turn's ``overlap`` flag says that other speakers cover more than ``overlap_min_s`` of it.
   Labels are ``SPEAKER_00``, ``SPEAKER_01``, ... by decreasing speaking time.

``SPEAKERLAKE_PYANNOTE_DIR`` (a local pyannote pipeline directory, optional) switches to
pyannote's own pipeline; tests never need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from orchestration.tables import TABLES

SAMPLE_RATE = 16_000
GRID_S = 0.01  # global frame grid (= resemblyzer's mel hop)
HOP = int(SAMPLE_RATE * GRID_S)
CHUNK_S = 5.0  # the segmentation model's training window


@dataclass(frozen=True)
class DiarizationParams:
    # no defaults: every value comes from sql/thresholds.csv (assets.audio.pipeline.diarization_params), the one place thresholds live
    step_s: float  # segmentation chunk step
    onset: float  # local speaker activation threshold
    min_embed_s: float  # clean seconds needed for a reliable d-vector
    cluster_threshold: float  # stop merging below this centroid cosine
    max_speakers: int
    min_speaker_s: float  # smaller clusters are folded into their nearest neighbour
    min_gap_s: float  # bridge same-speaker gaps shorter than this
    min_turn_s: float  # drop shorter turns
    overlap_min_s: float  # a turn is flagged ``overlap`` when another speaker shares this much of it
    cluster_block_items: int  # more reliable local speakers than this: two-stage clustering


@dataclass(frozen=True)
class Turn:
    speaker: int
    start: float
    end: float
    overlap: bool = False


# --------------------------------------------------------------------------- models
def segmentation_default_path() -> Path:
    """The PyanNet segmentation checkpoint that ships inside the whisperx wheel (its default VAD)."""
    import importlib.util

    spec = importlib.util.find_spec("whisperx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("whisperx is not installed: set SPEAKERLAKE_SEGMENTATION_MODEL")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "pytorch_model.bin"


@lru_cache(maxsize=2)
def load_segmentation(model_path: str, device: str = "cpu"):
    """pyannote PyanNet segmentation model (multilabel, 3 local speakers, 5 s windows)."""
    import warnings

    import torch

    from assets.audio.pyannote_import import import_pyannote_audio

    import_pyannote_audio()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyannote.audio import Model

        model = Model.from_pretrained(model_path)
    if model is None:
        raise FileNotFoundError(f"segmentation model {model_path} could not be loaded")
    return model.eval().to(torch.device(device))


@lru_cache(maxsize=2)
def load_voice_encoder(weights_path: str, device: str = "cpu"):
    """resemblyzer GE2E d-vector encoder from a local weights file."""
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device=device, verbose=False, weights_fpath=weights_path).eval()


@lru_cache(maxsize=2)
def load_pyannote_pipeline(pipeline_dir: str, device: str = "cpu"):
    """A pyannote diarization pipeline saved in a local directory (optional backend)."""
    import torch

    from assets.audio.pyannote_import import import_pyannote_audio

    Pipeline = import_pyannote_audio().Pipeline
    pipeline = Pipeline.from_pretrained(pipeline_dir)
    if pipeline is None:
        raise FileNotFoundError(f"no pyannote pipeline in {pipeline_dir}")
    return pipeline.to(torch.device(device))


# --------------------------------------------------------------------------- features
def _hz_to_mel(f: np.ndarray) -> np.ndarray:  # Slaney mel scale (librosa's default)
    f = np.asarray(f, float)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, float)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=1)
def _mel_filters(sr: int = SAMPLE_RATE, n_fft: int = 400, n_mels: int = 40) -> np.ndarray:
    """Identical to ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)`` (checked to 1e-9)."""
    fft_hz = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None]
    weights = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    return (weights * (2.0 / (mel_hz[2 : n_mels + 2] - mel_hz[:n_mels]))[:, None]).astype(np.float32)


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """resemblyzer's input features: power mel spectrogram, 25 ms / 10 ms, 40 bands, (frames, 40).

    Same numbers as ``resemblyzer.wav_to_mel_spectrogram`` without librosa's JIT warm-up.
    Frame i is centred at i * 10 ms. The waveform is first brought to -30 dBFS RMS (only
    ever amplified), as resemblyzer's ``preprocess_wav`` does. Gain, padding and framing are
    done per block of frames, never on a copy of the whole waveform (460 MB at 2 hours).
    """
    block = 1024  # frames per block: 10 s of audio, about 10 MB of temporaries
    sq = sum(float(np.square(audio[i : i + block * HOP], dtype=np.float64).sum()) for i in range(0, len(audio), block * HOP))
    rms = float(np.sqrt(sq / len(audio))) if audio.size else 0.0
    gain = max(10 ** (-30 / 20) / rms, 1.0) if rms > 0 else 1.0
    n = 1 + len(audio) // HOP  # frames of the waveform padded by 200 samples on both sides
    window = np.hanning(401)[:-1].astype(np.float32)  # periodic Hann
    out = np.empty((n, 40), np.float32)
    fb = _mel_filters().T
    for i in range(0, n, block):
        m = min(n, i + block) - i
        lo = HOP * i - 200  # first sample of frame i in the unpadded waveform
        piece = np.zeros(HOP * (m - 1) + 400, np.float32)
        a, b = max(lo, 0), min(lo + len(piece), len(audio))
        piece[a - lo : b - lo] = audio[a:b]
        if gain > 1:
            piece *= np.float32(gain)
        idx = np.arange(400)[None] + HOP * np.arange(m)[:, None]
        spec = np.abs(np.fft.rfft(piece[idx] * window, axis=1)) ** 2
        out[i : i + m] = spec @ fb
    return out


def embed_frames(encoder, mel: np.ndarray, frame_sets: list[np.ndarray]) -> np.ndarray:
    """One L2-normalised d-vector per set of mel frame indices (variable lengths, batches of 64)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

    if not frame_sets:
        return np.zeros((0, 256), np.float32)
    out = []
    with torch.no_grad():
        for i in range(0, len(frame_sets), 64):
            # the mel frames of one batch at a time: all partials of a 2-hour video would be 230 MB
            seqs = [torch.from_numpy(mel[idx]) for idx in frame_sets[i : i + 64]]
            packed = pack_padded_sequence(
                pad_sequence(seqs, batch_first=True).to(encoder.device),
                torch.tensor([len(x) for x in seqs]),
                batch_first=True,
                enforce_sorted=False,
            )
            _, (hidden, _) = encoder.lstm(packed)
            raw = encoder.relu(encoder.linear(hidden[-1]))
            out.append((raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)).cpu().numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------- step 1
@dataclass(frozen=True)
class LocalSegmentation:
    starts: np.ndarray  # chunk start, seconds (C,)
    activations: np.ndarray  # (C, F, S) in [0, 1]
    frame_step: float  # seconds between model frames
    frame_center0: float  # centre of frame 0 relative to the chunk start


def local_segmentation(model, audio: np.ndarray, *, step_s: float, batch: int = 16) -> LocalSegmentation:
    import torch

    win = int(CHUNK_S * SAMPLE_RATE)
    step = max(1, int(step_s * SAMPLE_RATE))
    n = len(audio)
    starts = list(range(0, max(n - win, 0) + 1, step))
    if starts[-1] + win < n:
        starts.append(n - win)
    outs = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(starts), batch):  # chunks are cut per batch: bounded memory on long videos
            chunks = np.zeros((len(starts[i : i + batch]), 1, win), np.float32)
            for k, s in enumerate(starts[i : i + batch]):
                piece = audio[s : s + win]
                chunks[k, 0, : len(piece)] = piece
            outs.append(model(torch.from_numpy(chunks).to(device)).cpu().numpy())
    act = np.concatenate(outs).astype(np.float32)
    rf = model.receptive_field
    return LocalSegmentation(
        starts=np.asarray(starts, float) / SAMPLE_RATE,
        activations=act,
        frame_step=float(rf.step),
        frame_center0=float(rf.start + rf.duration / 2),
    )


def _chunk_grid(seg: LocalSegmentation, c: int, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Global 10 ms frame indices covered by chunk c and the nearest model frame of each."""
    g0 = int(np.ceil(seg.starts[c] / GRID_S))
    g1 = min(n_grid, int(np.floor((seg.starts[c] + CHUNK_S) / GRID_S)))
    g = np.arange(g0, g1)
    j = np.rint((g * GRID_S - seg.starts[c] - seg.frame_center0) / seg.frame_step).astype(int)
    return g, np.clip(j, 0, seg.activations.shape[1] - 1)


# --------------------------------------------------------------------------- step 3
def constrained_clustering(
    emb: np.ndarray, groups: np.ndarray, *, threshold: float, max_clusters: int
) -> np.ndarray:
    """Centroid-linkage agglomerative clustering of L2-normalised rows with cannot-links.

    Items sharing a ``groups`` value (a chunk) are never merged. Merging goes on while the
    best allowed pair has centroid cosine >= ``threshold`` or more than ``max_clusters``
    clusters remain. Returns labels 0..k-1. O(n^2) memory and O(n^3) time: callers with
    many items use :func:`blockwise_clustering`.
    """
    if len(emb) == 0:
        return np.zeros(0, int)
    return _agglomerate(emb, groups[:, None] == groups[None, :], threshold=threshold, max_clusters=max_clusters)


def _agglomerate(sums: np.ndarray, cannot: np.ndarray, *, threshold: float, max_clusters: int) -> np.ndarray:
    """Centroid linkage over items given as (unnormalised) sums of unit vectors: an item may
    already be a cluster. ``cannot`` (n, n) is True for pairs never to merge (and the diagonal)."""
    n = len(sums)
    sums = sums.astype(np.float64)  # a copy: merged in place
    cent = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    cannot = cannot.copy()
    sim = cent @ cent.T
    sim[cannot] = -np.inf
    owner = np.arange(n)  # cluster representative of every item
    alive = np.ones(n, bool)
    k = n
    while k > 1:
        flat = int(np.argmax(sim))
        a, b = divmod(flat, n)
        best = sim[a, b]
        if not np.isfinite(best) or (best < threshold and k <= max_clusters):
            break
        # merge b into a
        owner[owner == b] = a
        sums[a] += sums[b]
        alive[b] = False
        cannot[a] |= cannot[b]
        cannot[:, a] = cannot[a]
        cent_a = sums[a] / np.linalg.norm(sums[a])
        row = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)) @ cent_a
        row[cannot[a] | ~alive] = -np.inf
        sim[a, :] = row
        sim[:, a] = row
        sim[b, :] = -np.inf
        sim[:, b] = -np.inf
        k -= 1
    _, labels = np.unique(owner, return_inverse=True)
    return labels


def blockwise_clustering(
    emb: np.ndarray, groups: np.ndarray, *, threshold: float, max_clusters: int, block_items: int
) -> np.ndarray:
    """:func:`constrained_clustering` in bounded memory for long videos: two stages.

    Up to ``block_items`` items it *is* :func:`constrained_clustering` (every demo video).
    Beyond, the items (in chunk order) are cut into consecutive blocks of at most
    ``block_items``, only between chunks, so every cannot-link stays inside one block. Stage 1
    clusters each block with the same threshold, at most ``2 * max_clusters`` clusters per
    block (forced merges beyond: the whole video may hold only ``max_clusters`` anyway). Stage 2
    runs the same centroid linkage on the stage-1 clusters as items: each enters as the sum of
    its members' d-vectors, so its centroid is the one the single-stage run would compute,
    and two clusters of one block that share a chunk keep their cannot-link; it applies
    ``max_clusters``. Memory is ``block_items``^2 in stage 1 and (blocks x 2 max_clusters)^2 in
    stage 2: a 2-hour video (about 5 000 items, 13 blocks of 400) needs 1.3 MB and 0.2 MB
    where the single stage needed 200 MB, and time is linear in the number of blocks.
    """
    n = len(emb)
    if n <= block_items:
        return constrained_clustering(emb, groups, threshold=threshold, max_clusters=max_clusters)
    cuts = [0]
    new_chunk = np.flatnonzero(np.diff(groups)) + 1  # first item of every chunk but the first
    while n - cuts[-1] > block_items:
        fits = new_chunk[(new_chunk > cuts[-1]) & (new_chunk <= cuts[-1] + block_items)]
        # a chunk holds at most 3 local speakers, so some chunk start always fits
        cuts.append(int(fits[-1]) if len(fits) else cuts[-1] + block_items)
    cuts.append(n)
    first_labels = np.empty(n, int)
    sums: list[np.ndarray] = []
    cannot_pairs: list[tuple[int, int]] = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        lab = constrained_clustering(emb[a:b], groups[a:b], threshold=threshold, max_clusters=2 * max_clusters)
        offset = len(sums)
        first_labels[a:b] = lab + offset
        sums += [emb[a:b][lab == k].sum(0) for k in range(int(lab.max()) + 1)]
        for g in np.unique(groups[a:b]):  # clusters sharing a chunk must stay apart
            ks = np.unique(lab[groups[a:b] == g]) + offset
            cannot_pairs += [(int(i), int(j)) for i in ks for j in ks]
    cannot = np.eye(len(sums), dtype=bool)
    if cannot_pairs:
        i, j = np.asarray(cannot_pairs).T
        cannot[i, j] = True
    second = _agglomerate(np.stack(sums), cannot, threshold=threshold, max_clusters=max_clusters)
    return second[first_labels]


def _fold_small_clusters(
    labels: np.ndarray, emb: np.ndarray, groups: np.ndarray, seconds: np.ndarray, *, min_seconds: float
) -> np.ndarray:
    """Merge clusters with < min_seconds of clean speech into their most similar allowed cluster.

    Smallest first; a cluster that shares a chunk with every other one stays (it is a
    separate voice by the segmentation model's word).
    """
    labels = labels.copy()
    stuck: set[int] = set()
    while True:
        ks = [int(k) for k in np.unique(labels)]
        tot = {k: float(seconds[labels == k].sum()) for k in ks}
        small = [k for k in sorted(ks, key=lambda k: tot[k]) if tot[k] < min_seconds and k not in stuck]
        if len(ks) <= 1 or not small:
            return labels
        k0 = small[0]
        c0 = emb[labels == k0].mean(0)
        g0 = set(groups[labels == k0].tolist())
        best, best_sim = None, -np.inf
        for k in ks:
            if k == k0 or g0 & set(groups[labels == k].tolist()):
                continue
            ck = emb[labels == k].mean(0)
            sim = float(ck @ c0 / (np.linalg.norm(ck) * np.linalg.norm(c0)))
            if sim > best_sim:
                best, best_sim = k, sim
        if best is None:
            stuck.add(k0)
        else:
            labels[labels == k0] = best


# --------------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class LocalSpeakers:
    """Steps 1-2: every (chunk, local speaker) with its d-vector and clean seconds."""

    seg: LocalSegmentation
    binary: np.ndarray  # (C, F, S) activations > onset
    items: list[tuple[int, int]]  # (chunk, local speaker)
    embeddings: np.ndarray  # (n, 256), L2-normalised
    clean_s: np.ndarray  # (n,) seconds where this local speaker talks alone
    n_grid: int
    speech: np.ndarray | None  # (n_grid,) VAD mask on the 10 ms grid

    @property
    def groups(self) -> np.ndarray:
        return np.array([c for c, _ in self.items], int)


def extract_local_speakers(
    audio: np.ndarray,
    *,
    segmentation_model,
    encoder,
    step_s: float,
    onset: float,
    min_active_s: float,
    speech_regions: list[tuple[float, float]] | None = None,
) -> LocalSpeakers:
    n_grid = int(np.ceil(len(audio) / HOP))
    seg = local_segmentation(segmentation_model, audio, step_s=step_s)
    binary = seg.activations > onset
    mel = mel_frames(audio)
    n_grid = min(n_grid, len(mel))
    speech = None
    if speech_regions is not None:
        speech = np.zeros(n_grid, bool)
        for a, b in speech_regions:
            speech[int(a / GRID_S) : int(np.ceil(b / GRID_S))] = True
    items: list[tuple[int, int]] = []
    frame_sets: list[np.ndarray] = []
    clean_s: list[float] = []
    for c in range(len(seg.starts)):
        g, j = _chunk_grid(seg, c, n_grid)
        count = binary[c][j].sum(axis=1)
        for s in range(binary.shape[2]):
            active = binary[c][j, s]
            if speech is not None:
                active = active & speech[g]
            if active.sum() * GRID_S < min_active_s:
                continue
            clean = active & (count == 1)
            items.append((c, s))
            # embed the speaker's solo frames; fall back to all its frames when it never talks alone
            frame_sets.append(g[clean] if clean.sum() * GRID_S >= 0.5 else g[active])
            clean_s.append(float(clean.sum() * GRID_S))
    emb = embed_utterances(encoder, mel, frame_sets)
    return LocalSpeakers(seg, binary, items, emb, np.asarray(clean_s, float), n_grid, speech)


def embed_utterances(encoder, mel: np.ndarray, frame_sets: list[np.ndarray], *, partial: int = 160, hop: int = 160) -> np.ndarray:
    """resemblyzer's ``embed_utterance`` on frame subsets: mean of 1.6 s partials.

    resemblyzer overlaps its partials by 50 %; here they do not overlap (``hop`` = ``partial``),
    since the segmentation chunks already overlap by half, so every speech frame is still
    embedded twice. That halves the LSTM time, the larger half of diarization; speaker counts and
    DER on the demo corpus did not change (docs/benchmarks.md)."""
    parts: list[np.ndarray] = []
    owner: list[int] = []
    for i, idx in enumerate(frame_sets):
        if len(idx) <= partial:
            pieces = [idx]
        else:
            pieces = [idx[a : a + partial] for a in range(0, len(idx) - partial + 1, hop)]
            if (len(idx) - partial) % hop:
                pieces.append(idx[-partial:])
        parts += pieces
        owner += [i] * len(pieces)
    e = embed_frames(encoder, mel, parts)
    out = np.zeros((len(frame_sets), e.shape[1] if len(e) else 256), np.float32)
    np.add.at(out, np.asarray(owner, int), e)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-8)


def cluster_local_speakers(
    local: LocalSpeakers, *, min_embed_s: float, threshold: float, max_speakers: int, min_speaker_s: float, block_items: int
) -> np.ndarray:
    """Step 3: global speaker index per item (-1 = unassigned), count estimated."""
    n = len(local.items)
    if n == 0:
        return np.zeros(0, int)
    emb, groups, clean = local.embeddings, local.groups, local.clean_s
    reliable = clean >= min_embed_s
    if not reliable.any():  # only short bits of speech: trust the longest one
        reliable = clean >= clean.max()
    lab_r = blockwise_clustering(emb[reliable], groups[reliable], threshold=threshold, max_clusters=max_speakers, block_items=block_items)
    lab_r = _fold_small_clusters(lab_r, emb[reliable], groups[reliable], clean[reliable], min_seconds=min_speaker_s)
    ks = np.unique(lab_r)
    remap = {int(k): i for i, k in enumerate(ks)}
    labels = np.full(n, -1)
    labels[np.flatnonzero(reliable)] = [remap[int(k)] for k in lab_r]
    cent = np.stack([emb[reliable][lab_r == k].mean(0) for k in ks])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    # the other local speakers: most similar centroid not already used in their chunk,
    # longest first so the better-embedded ones choose first
    for i in sorted(np.flatnonzero(~reliable), key=lambda i: -clean[i]):
        taken = {int(labels[k]) for k in np.flatnonzero(groups == groups[i]) if labels[k] >= 0}
        free = [int(k) for k in np.argsort(-(cent @ emb[i])) if int(k) not in taken]
        labels[i] = free[0] if free else -1
    return labels


def reconstruct_turns(
    local: LocalSpeakers,
    labels: np.ndarray,
    *,
    min_gap_s: float,
    min_turn_s: float,
    overlap_min_s: float = 0.0,
    overlap_margin: float = 0.0,
) -> list[Turn]:
    """Steps 4-5: global speaker activity on the 10 ms grid, then turns."""
    seg, binary, n_grid = local.seg, local.binary, local.n_grid
    K = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    if K == 0:
        return []
    score = np.zeros((n_grid, K), np.float32)
    cover = np.zeros(n_grid, np.float32)
    count = np.zeros(n_grid, np.float32)
    by_chunk: dict[int, dict[int, int]] = {}
    for (c, s), k in zip(local.items, labels):
        if k >= 0:
            by_chunk.setdefault(c, {})[s] = int(k)
    for c in range(len(seg.starts)):
        g, j = _chunk_grid(seg, c, n_grid)
        cover[g] += 1
        count[g] += binary[c][j].sum(axis=1)
        for s, k in by_chunk.get(c, {}).items():
            score[g, k] += seg.activations[c][j, s]
    cover = np.maximum(cover, 1)
    score /= cover[:, None]
    # speakers per frame: the chunks' mean local count; inside VAD speech at least one
    # (silero decides *whether* someone speaks, the segmentation model *how many*)
    n_active = np.floor(count / cover + 0.5 - overlap_margin).astype(int)
    if local.speech is not None:
        n_active = np.where(local.speech, np.maximum(n_active, 1), 0)
    active = np.zeros((n_grid, K), bool)
    order = np.argsort(-score, axis=1)
    for r in range(1, min(K, 3) + 1):
        rows = np.flatnonzero(n_active >= r)
        pick = order[rows, r - 1]
        ok = score[rows, pick] > 0
        active[rows[ok], pick[ok]] = True
    turns: list[Turn] = []
    for k in range(K):
        for a, b in _runs(active[:, k], min_gap=int(round(min_gap_s / GRID_S))):
            if (b - a) * GRID_S >= min_turn_s:
                turns.append(Turn(k, round(a * GRID_S, 3), round(b * GRID_S, 3)))
    return mark_overlaps(turns, min_overlap_s=overlap_min_s)


def diarize_resemblyzer(
    audio: np.ndarray,
    *,
    segmentation_model,
    encoder,
    params: DiarizationParams,
    speech_regions: list[tuple[float, float]] | None = None,
) -> list[Turn]:
    """Speaker turns of 16 kHz mono ``audio`` (see the module doc for the method)."""
    if len(audio) < HOP:
        return []
    local = extract_local_speakers(
        audio,
        segmentation_model=segmentation_model,
        encoder=encoder,
        step_s=params.step_s,
        onset=params.onset,
        min_active_s=params.min_turn_s,
        speech_regions=speech_regions,
    )
    labels = cluster_local_speakers(
        local,
        min_embed_s=params.min_embed_s,
        threshold=params.cluster_threshold,
        max_speakers=params.max_speakers,
        min_speaker_s=params.min_speaker_s,
        block_items=params.cluster_block_items,
    )
    return reconstruct_turns(
        local, labels, min_gap_s=params.min_gap_s, min_turn_s=params.min_turn_s, overlap_min_s=params.overlap_min_s
    )


def _runs(mask: np.ndarray, *, min_gap: int) -> list[tuple[int, int]]:
    """[start, end) index runs of True, bridging False gaps shorter than min_gap."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    runs = [[int(a), int(b)] for a, b in zip(idx[::2], idx[1::2])]
    merged: list[list[int]] = []
    for r in runs:
        if merged and r[0] - merged[-1][1] < min_gap:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [(a, b) for a, b in merged]


def mark_overlaps(turns: list[Turn], *, min_overlap_s: float = 0.0) -> list[Turn]:
    """Sort turns by start; flag a turn when other speakers' turns cover > min_overlap_s of it.

    The overlapped spans themselves are the intersections of turns of different speakers
    (a self-join of ``speaker_turns``); the flag marks the turns that contain any.
    """
    turns = sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
    shared = [0.0] * len(turns)
    for i, t in enumerate(turns):
        for k in range(i + 1, len(turns)):
            u = turns[k]
            if u.start >= t.end:
                break
            if u.speaker != t.speaker:
                ov = min(t.end, u.end) - max(t.start, u.start)
                if ov > 0:
                    shared[i] += ov
                    shared[k] += ov
    return [Turn(t.speaker, t.start, t.end, sh > min_overlap_s + 1e-9) for t, sh in zip(turns, shared)]


def diarize_pyannote(audio: np.ndarray, *, pipeline, max_speakers: int, overlap_min_s: float = 0.0) -> list[Turn]:
    """Turns from a local pyannote pipeline (speaker count estimated by pyannote, bounded)."""
    import torch

    out = pipeline(
        {"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE}, min_speakers=1, max_speakers=max_speakers
    )
    annotation = getattr(out, "speaker_diarization", out)  # pyannote 4 returns a DiarizeOutput
    names: dict[str, int] = {}
    turns = []
    for segment, _, label in annotation.itertracks(yield_label=True):
        k = names.setdefault(label, len(names))
        turns.append(Turn(k, round(float(segment.start), 3), round(float(segment.end), 3)))
    return mark_overlaps(turns, min_overlap_s=overlap_min_s)


# --------------------------------------------------------------------------- tables
def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def speaker_labels(turns: list[Turn]) -> dict[int, str]:
    """SPEAKER_00, SPEAKER_01, ... in order of decreasing speaking time (00 talks most)."""
    secs = {k: _union_seconds([(t.start, t.end) for t in turns if t.speaker == k]) for k in {t.speaker for t in turns}}
    first = {k: min(t.start for t in turns if t.speaker == k) for k in secs}
    order = sorted(secs, key=lambda k: (-secs[k], first[k]))
    return {k: f"SPEAKER_{i:02d}" for i, k in enumerate(order)}


def speaker_turns_table(video_id: str, turns: list[Turn]) -> pl.DataFrame:
    names = speaker_labels(turns)
    df = pl.DataFrame(
        {
            "video_id": [video_id] * len(turns),
            "turn_id": list(range(len(turns))),
            "speaker_local": [names[t.speaker] for t in turns],
            "start": [t.start for t in turns],
            "end": [t.end for t in turns],
            "overlap": [t.overlap for t in turns],
        },
        schema=TABLES["speaker_turns"].polars_schema,
    )
    return TABLES["speaker_turns"].conform(df)


def video_speakers_table(video_id: str, turns_df: pl.DataFrame) -> pl.DataFrame:
    """Speaking time per speaker; the two who speak longest are ``is_main``.

    ``share`` is a speaker's seconds over the sum of all speakers' seconds (overlapped
    speech counts for each speaker), so shares add up to 1 and ``top2_share`` is the
    S5 "two main speakers' share of total speaking time" (kept as data, filtered in SQL).
    """
    spec = TABLES["video_speakers"]
    if turns_df.is_empty():
        return spec.empty()
    rows = []
    for name, g in turns_df.group_by("speaker_local", maintain_order=True):
        spk = name[0] if isinstance(name, tuple) else name
        rows.append((spk, _union_seconds(list(zip(g["start"].to_list(), g["end"].to_list()))), g.height))
    rows.sort(key=lambda r: (-r[1], r[0]))
    total = sum(r[1] for r in rows) or 1.0
    top2 = sum(r[1] for r in rows[:2]) / total
    df = pl.DataFrame(
        {
            "video_id": [video_id] * len(rows),
            "speaker_local": [r[0] for r in rows],
            "speech_seconds": [round(r[1], 3) for r in rows],
            "share": [r[1] / total for r in rows],
            "n_turns": [r[2] for r in rows],
            "is_main": [i < 2 for i in range(len(rows))],
            "top2_share": [top2] * len(rows),
        },
        schema=spec.polars_schema,
    )
    return spec.conform(df)
