"""Small decoder-only backbones built offline from configs (random weights), saved as local backbone folders with
the embedded tokenizer: the Qwen2 and Llama shapes of the code LLMs users fine-tune.

    folder = tiny_decoder(tmp_path / "qwen2", "qwen2")                 # pad token <pad>, distinct from </s>
    folder = tiny_decoder(tmp_path / "llama", "llama", pad=False)      # a tokenizer without a pad token
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig, Qwen2Config

from sweeper.backbone import load_tokenizer

FAMILIES = ("qwen2", "llama")


def decoder_config(family: str, vocab_size: int, layers: int = 2, hidden: int = 32, heads: int = 4,
                   ffn: int | None = None, **special: int | None) -> PretrainedConfig:
    """A config of `family`: grouped-query attention (half as many key/value heads), rotary positions."""
    shape = {"vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": ffn or 2 * hidden,
             "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads // 2,
             "max_position_embeddings": 512, "tie_word_embeddings": True, **special}
    return Qwen2Config(**shape) if family == "qwen2" else LlamaConfig(**shape)


def tiny_decoder(folder: Path, family: str, pad: bool = True, layers: int = 2, hidden: int = 32, seed: int = 0,
                 heads: int = 4, ffn: int | None = None) -> str:
    """A randomly initialised causal LM of `family` and the embedded tokenizer (without its pad token unless
    `pad`), saved to `folder`; the folder's path as a backbone name. Larger shapes serve the benchmarks."""
    tokenizer = load_tokenizer("embedded")
    if not pad:
        tokenizer.pad_token = None
    torch.manual_seed(seed)
    config = decoder_config(family, len(tokenizer), layers, hidden, heads, ffn, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
