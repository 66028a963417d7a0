"""Model backends of the clip_quality stage, each used only when its model location is set.

* DOVER (Wu et al. 2023) exported to ONNX: visual quality from an aesthetic and a technical
  view of the clip's sampled frames, fused with DOVER's own rule.
* Qwen2.5-VL (transformers): a caption and a 1-5 motion rating (the "VLM persona") from the
  clip's sampled person crops.
* A causal LM (transformers ``AutoModelForCausalLM``): the video's topic from its ASR text.

None of these ship weights in a package; tests run each on a tiny randomly initialised model
of the same architecture built from the library's config class (tests/test_quality.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# DOVER's ImageNet normalisation on 0-255 pixels and its fusion constants
# (DOVER evaluate_one_video.py: fuse_results).
DOVER_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
DOVER_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
DOVER_SIDE = 224
DOVER_FRAGMENTS = 7  # technical view: a 7 x 7 grid of 32-px patches at native resolution


def torch_device(cuda_available: bool | None = None) -> str:
    """``cuda`` when a GPU is usable, else ``cpu``."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return "cuda" if cuda_available else "cpu"


def onnx_providers(available: list[str] | None = None) -> list[str]:
    """onnxruntime providers: CUDA first when this build has it, CPU always."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def fuse_dover(aesthetic: float, technical: float) -> float:
    """DOVER's overall score in (0, 1): a sigmoid of its two normalised branch scores."""
    x = (aesthetic - 0.1107) / 0.07355 * 0.6104 + (technical + 0.08285) / 0.03774 * 0.3896
    return float(1.0 / (1.0 + np.exp(-x)))


def _dover_tensor(frames: list[np.ndarray], length: int) -> np.ndarray:
    """(1, 3, T, 224, 224) from RGB 224x224 frames, cycled to ``length`` frames."""
    t = np.stack([frames[i % len(frames)] for i in range(length)]).astype(np.float32)
    t = (t - DOVER_MEAN) / DOVER_STD
    return t.transpose(3, 0, 1, 2)[None]


def dover_views(crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """DOVER's two views of BGR crops: aesthetic = the crop resized to 224 x 224; technical = 7 x 7
    fragments of 32 x 32 px cut at native resolution from a uniform grid (upscaled first when
    the crop is under 224 px) - DOVER's fragment sampling without its random jitter."""
    aes, tech = [], []
    patch = DOVER_SIDE // DOVER_FRAGMENTS
    for c in crops:
        rgb = cv2.cvtColor(c, cv2.COLOR_BGR2RGB)
        aes.append(cv2.resize(rgb, (DOVER_SIDE, DOVER_SIDE), interpolation=cv2.INTER_AREA))
        h, w = rgb.shape[:2]
        if min(h, w) < DOVER_SIDE:
            f = DOVER_SIDE / min(h, w)
            rgb = cv2.resize(rgb, (max(DOVER_SIDE, round(w * f)), max(DOVER_SIDE, round(h * f))), interpolation=cv2.INTER_CUBIC)
            h, w = rgb.shape[:2]
        ys = np.linspace(0, h - patch, DOVER_FRAGMENTS).astype(int)
        xs = np.linspace(0, w - patch, DOVER_FRAGMENTS).astype(int)
        tech.append(np.concatenate([np.concatenate([rgb[y : y + patch, x : x + patch] for x in xs], axis=1) for y in ys], axis=0))
    return aes, tech


class DoverOnnx:
    """A DOVER ONNX export with inputs (aesthetic_view, technical_view), each (1, 3, T, 224, 224),
    and outputs (aesthetic score, technical score), as DOVER's convert_to_onnx.py writes it."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=onnx_providers())
        self.inputs = [i.name for i in self.session.get_inputs()]
        if len(self.inputs) != 2:
            raise ValueError(f"{path}: a DOVER export has two inputs (aesthetic, technical view), found {self.inputs}")
        # T is fixed in DOVER's export (32 frames); a dynamic axis takes the sampled frames as they are
        shape = self.session.get_inputs()[0].shape
        self.length = shape[2] if isinstance(shape[2], int) else None

    def score(self, crops: list[np.ndarray]) -> float:
        aes, tech = dover_views(crops)
        n = self.length or len(crops)
        out = self.session.run(None, {self.inputs[0]: _dover_tensor(aes, n), self.inputs[1]: _dover_tensor(tech, n)})
        return fuse_dover(float(np.mean(out[0])), float(np.mean(out[1])))


# Qwen2.5-VL's chat format (its chat template's output for one user turn with images).
def qwen_vl_prompt(n_images: int, question: str) -> str:
    images = "<|vision_start|><|image_pad|><|vision_end|>" * n_images
    return f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{images}{question}<|im_end|>\n<|im_start|>assistant\n"


CAPTION_QUESTION = "Describe the person in these frames from a video clip in one sentence: how many people, framing, facing direction, whether they speak, and how much they move."
MOTION_QUESTION = "Rate how much the person moves across these frames from 1 (still) to 5 (large motion). Answer with one digit."
TOPIC_QUESTION = "What is the topic of this conversation? Answer with a short phrase.\n\nTranscript:\n"


def parse_rating(text: str) -> int | None:
    """The first digit 1-5 in a model's answer, or None."""
    m = re.search(r"[1-5]", text)
    return int(m.group()) if m else None


@dataclass
class QwenVL:
    """Qwen2.5-VL from a local directory (``Qwen2_5_VLForConditionalGeneration`` + its processor)."""

    model: object
    processor: object
    device: str
    max_new_tokens: int

    @classmethod
    def load(cls, path: Path, max_new_tokens: int) -> "QwenVL":
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        device = torch_device()
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(path), dtype=dtype, local_files_only=True).to(device).eval()
        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        return cls(model, processor, device, max_new_tokens)

    def ask(self, crops: list[np.ndarray], question: str) -> str:
        import torch

        images = [cv2.cvtColor(c, cv2.COLOR_BGR2RGB) for c in crops]
        inputs = self.processor(text=[qwen_vl_prompt(len(images), question)], images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()


@dataclass
class TopicLLM:
    """A causal LM from a local directory: the topic of a video from its ASR text."""

    model: object
    tokenizer: object
    device: str
    max_new_tokens: int
    max_chars: int

    @classmethod
    def load(cls, path: Path, max_new_tokens: int, max_chars: int) -> "TopicLLM":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = torch_device()
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True).to(device).eval()
        return cls(model, AutoTokenizer.from_pretrained(str(path), local_files_only=True), device, max_new_tokens, max_chars)

    def topic(self, asr_text: str) -> str | None:
        import torch

        if not asr_text.strip():
            return None
        prompt = TOPIC_QUESTION + asr_text[: self.max_chars] + "\n\nTopic:"
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        text = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        return text.splitlines()[0].strip() if text else None
