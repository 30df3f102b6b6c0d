"""Write a random LLaDA-format checkpoint (bf16, sharded safetensors) for the probe's benchmark.

    python scripts/make_llada_checkpoint.py DIR [--size 1b|tiny] [--seed 0] [--shard-gib 0.5]

``1b``: LLaDA-8B's config keys and options (RMS norm, SiLU-gated llama blocks, untied head, RoPE base 5e5,
rope_full_precision) at d_model 2048, 16 layers, 16 heads, MLP 5632, 32,000 tokens: 0.95e9 parameters,
1.9 GB in bf16. Delete DIR afterwards; only this script is kept (docs/probe.md, "Benchmark").
"""

from __future__ import annotations

import argparse

import torch

from mdm_props.checkpoint_reader import write_random_checkpoint

LLADA_8B = {  # LLaDA-8B-Base's config.json (GSAI-ML/LLaDA-8B-Base)
    "activation_type": "silu",
    "alibi": False,
    "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {
        "AutoConfig": "configuration_llada.LLaDAConfig",
        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        "AutoModel": "modeling_llada.LLaDAModelLM",
    },
    "bias_for_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "d_model": 4096,
    "embedding_dropout": 0.0,
    "embedding_size": 126464,
    "eos_token_id": 126081,
    "flash_attention": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "mask_token_id": 126336,
    "max_sequence_length": 4096,
    "mlp_hidden_size": 12288,
    "mlp_ratio": 4,
    "model_type": "llada",
    "multi_query_attention": None,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "pad_token_id": 126081,
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "transformers_version": "4.46.3",
    "use_cache": False,
    "vocab_size": 126464,
    "weight_tying": False,
}
SIZES = {
    "1b": {"d_model": 2048, "n_heads": 16, "n_kv_heads": 16, "n_layers": 16, "mlp_hidden_size": 5632},
    "tiny": {"d_model": 32, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "mlp_hidden_size": 48},
}
VOCAB = {"1b": 32000, "tiny": 64}


def config(size: str) -> dict:
    """LLaDA-8B's config at another width, depth and vocabulary (mask id: the last id)."""
    v = VOCAB[size]
    return {
        **LLADA_8B,
        **SIZES[size],
        "vocab_size": v,
        "embedding_size": v,
        "mask_token_id": v - 1,
        "eos_token_id": v - 2,
        "pad_token_id": v - 2,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--size", choices=tuple(SIZES), default="1b")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-gib", type=float, default=0.5)
    args = p.parse_args(argv)
    spec = write_random_checkpoint(
        args.out, config(args.size), seed=args.seed, dtype=torch.bfloat16, shard_bytes=int(args.shard_gib * 2**30)
    )
    print(f"wrote {args.out}: {spec.n_parameters():,} parameters (bf16)")


if __name__ == "__main__":
    main()
