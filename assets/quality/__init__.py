"""Per-clip quality scores and structured caption fields (issue 17): luminance, clarity,
visual quality, face/hand blur, motion, caption fields, from a few frames sampled per clip."""
