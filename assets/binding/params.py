"""Binding-stage parameters, read from sql/thresholds.csv (stage ``binding``).

The pure functions take these as arguments; only the entry points read the file.
Sync thresholds depend on the sync backend (the mouth backend's confidences live on a
[0, 2] correlation scale, SyncNet's on its own); the ``syncnet`` backend reads the
``*_syncnet`` variants of the sync-scale thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from assets.binding.assign import EvidenceRule
from orchestration.thresholds import threshold

SYNC_SCALE = ("bind_min_confidence", "bind_min_margin", "listen_min_gap", "listen_max_sync")


@dataclass(frozen=True)
class BindingParams:
    sync_min_overlap_s: float = 0.75
    sync_turn_trim_s: float = 0.2
    sync_max_offset: int = 15
    sync_smooth_frames: int = 3
    sync_highpass_s: float = 1.0
    sync_mouth_floor: float = 0.008
    sync_plausible_offset: int = 6
    bind_min_confidence: float = 0.4
    bind_min_margin: float = 0.2
    bind_min_evidence_s: float = 1.0
    bind_prior_s: float = 2.0
    identity_outlier_cos: float = 0.3
    identity_same_cos: float = 0.45
    speaker_id_cos: float = 0.45
    listen_min_gap: float = 0.25
    listen_max_sync: float = 0.4
    listen_asr_min_logprob: float = -1.0
    listen_min_s: float = 0.5
    listen_merge_gap_s: float = 0.4
    decode_max_side: int = 1920  # the vision stage's working size (syncnet face crops)

    @classmethod
    def from_thresholds(cls, backend: str = "mouth") -> "BindingParams":
        vals = {}
        for name, f in cls.__dataclass_fields__.items():
            key = f"{name}_syncnet" if backend == "syncnet" and name in SYNC_SCALE else name
            v = threshold(key)
            vals[name] = int(round(v)) if f.type in (int, "int") else float(v)
        return cls(**vals)

    def evidence(self) -> EvidenceRule:
        """When a sync row is evidence (the same rule for binding, identities and listening)."""
        return EvidenceRule(self.sync_plausible_offset, self.bind_min_margin, self.bind_min_evidence_s)

    def with_(self, **kw) -> "BindingParams":
        return replace(self, **kw)
