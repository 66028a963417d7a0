"""The clip_quality stage's knobs, read from sql/thresholds.csv (rows with stage=quality)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.thresholds import threshold


@dataclass(frozen=True)
class QualityParams:
    # no defaults: every value comes from sql/thresholds.csv (from_thresholds), the one place thresholds live
    samples_per_clip: int
    flow_step_frames: int
    crop_max_px: int
    brisque_worst: float
    blur_half_var: float
    motion_cuts: tuple[float, float, float, float]
    framing_close_up_min: float
    framing_medium_min: float
    facing_front_max_yaw: float
    facing_profile_min_yaw: float
    max_new_tokens: int
    topic_max_chars: int
    decode_max_side: int  # the vision stage's working size (frames and boxes agree)

    @classmethod
    def from_thresholds(cls) -> "QualityParams":
        return cls(
            samples_per_clip=int(threshold("quality_samples_per_clip")),
            flow_step_frames=int(threshold("quality_flow_step_frames")),
            crop_max_px=int(threshold("quality_crop_max_px")),
            brisque_worst=threshold("quality_brisque_worst"),
            blur_half_var=threshold("quality_blur_half_var"),
            motion_cuts=tuple(threshold(f"motion_cut_{k}") for k in (2, 3, 4, 5)),
            framing_close_up_min=threshold("framing_close_up_min"),
            framing_medium_min=threshold("framing_medium_min"),
            facing_front_max_yaw=threshold("facing_front_max_yaw"),
            facing_profile_min_yaw=threshold("facing_profile_min_yaw"),
            max_new_tokens=int(threshold("quality_max_new_tokens")),
            topic_max_chars=int(threshold("topic_max_asr_chars")),
            decode_max_side=int(threshold("decode_max_side")),
        )
