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
    # no defaults: every value comes from sql/thresholds.csv (from_thresholds), the one place thresholds live
    sync_min_overlap_s: float
    sync_turn_trim_s: float
    sync_max_offset: int
    sync_smooth_frames: int
    sync_highpass_s: float
    sync_mouth_floor: float
    sync_plausible_offset: int
    bind_min_confidence: float
    bind_min_margin: float
    bind_min_evidence_s: float
    bind_prior_s: float
    identity_outlier_cos: float
    identity_same_cos: float
    speaker_id_cos: float
    listen_min_gap: float
    listen_max_sync: float
    listen_asr_min_logprob: float
    listen_min_s: float
    listen_merge_gap_s: float
    decode_max_side: int  # the vision stage's working size (syncnet face crops)

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
