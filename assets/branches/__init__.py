"""Branches (single, dialogue, listening, multi-turn) and the VidChatBench test split: dataset-wide tables recomputed from the tiers (sql/branches.sql)."""
