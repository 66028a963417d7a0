"""Train from the lake: PyTorch datasets of clips and dialogue pairs selected by DuckDB SQL,
decoded from the lake's raw media (README: Training from the lake)."""

from assets.train.loader import LakeClipDataset, LakePairDataset, to_hf_dataset

__all__ = ["LakeClipDataset", "LakePairDataset", "to_hf_dataset"]
