"""`network=planted`: an activation store written from the concept masks, with known answers.

No images and no network: the layer's activations are planted from the concept store's masks
by this seeded encoding (parameters from ``conf/network/planted.yaml``):

1. Sizes: layer resolution s×s (``map_size``), K filters (``filters``), the first
   ``noise_filters`` of ``rng.permutation(K)`` carry noise only (rng =
   ``np.random.default_rng(seed)``); the other filters are handed out in that permuted order.
2. Concepts are visited in ``rng.permutation(C)`` order; the i-th gets kind
   ``kinds[i % len(kinds)]``:
   ``single`` takes one filter; ``distributed`` takes D = ``distributed_parts`` filters, the
   d-th of which sees only vertical stripe d of the map (columns j with ⌊j·D/s⌋ = d), so only
   their combination covers the concept; ``shared`` joins the open shared filter, or opens a
   new one with a group size g ~ U{shared_group[0] .. shared_group[1]} drawn when opened, and
   the filter is closed when it has g concepts. With ``categories`` set, only concepts of those
   categories are visited (e.g. ``[object]``: concepts that rarely overlap in space, so the
   answers of the probes are exact). When a kind needs more filters than are left, assignment stops: that concept and all later ones are ``absent``; a shared filter left
   with a single concept makes that concept ``single``.
3. Every (concept c, filter k) assignment gets a scale W[c, k] ~ U(1, 2) drawn in assignment
   order (W is saved as ``planted/weights`` (C, K); ``planted/kind`` (C,); ``planted/part``
   (K,) the stripe of each distributed filter, -1 otherwise).
4. For image i: A[i, k] = max(0, stripe_k ⊙ Σ_c W[c, k] · down(L_c(i)) + noise · ε_ik), where
   down() is area averaging (``F.adaptive_avg_pool2d``) of the sh×sw 0/1 mask to s×s (zero
   when c is not in image i), image-level concepts (no masks) count as an all-ones mask when
   present, stripe_k = 1 for non-distributed filters, and ε_i = ``np.random.default_rng([seed,
   i]).standard_normal((K, s, s), dtype=np.float32)``.

The store is streamed in blocks of images (vectorised over their pairs), so it scales to BRODEN.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from net2vec.features.hooks import NetworkError
from net2vec.features.store import ActivationStore, StoreBuilder, cached_store, store_artifact

log = logging.getLogger(__name__)
KEYS = (
    "map_size",
    "filters",
    "noise_filters",
    "distributed_parts",
    "shared_group",
    "kinds",
    "noise",
    "seed",
    "categories",
)
_STR = h5py.string_dtype("utf-8")


DEFAULTS = {
    "map_size": 8,
    "filters": 64,
    "noise_filters": 8,
    "distributed_parts": 3,
    "shared_group": [2, 3],
    "kinds": ["single", "distributed", "shared"],
    "noise": 0.1,
    "seed": 0,
    "categories": None,
}


def assign(
    num_concepts: int, params: dict, categories: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W (C, K) float32, kind (C,) str, part (K,) int) per the module docstring, steps 1-3.

    With ``params["categories"]`` set, concepts of other (primary) categories stay absent.
    """
    K, D = int(params["filters"]), int(params["distributed_parts"])
    rng = np.random.default_rng(int(params["seed"]))
    free = list(rng.permutation(K)[int(params["noise_filters"]) :])
    weights = np.zeros((num_concepts, K), np.float32)
    kind = np.full(num_concepts, "absent", dtype=object)
    part = np.full(K, -1, np.int64)
    shared: list = []  # [filter, group size, members]
    order = rng.permutation(num_concepts)
    if params.get("categories") is not None and categories is not None:
        order = order[np.isin(np.asarray(categories)[order], list(params["categories"]))]
    for i, c in enumerate(order):
        wanted = params["kinds"][i % len(params["kinds"])]
        opens = wanted == "shared" and (not shared or len(shared[2]) >= shared[1])
        need = {"single": 1, "distributed": D}.get(wanted, 1 if opens else 0)
        if need > len(free):
            break
        if wanted == "shared":
            if opens:
                low, high = params["shared_group"]
                shared = [free.pop(0), int(rng.integers(low, high + 1)), []]
            shared[2].append(c)
            filters = [shared[0]]
        else:
            filters = [free.pop(0) for _ in range(need)]
            if wanted == "distributed":
                part[filters] = np.arange(D)
        kind[c] = wanted
        for k in filters:
            weights[c, k] = rng.uniform(1.0, 2.0)
    if shared and len(shared[2]) == 1:
        kind[shared[2][0]] = "single"
    return weights, kind.astype(str), part


def stripes(part: np.ndarray, size: int, num_parts: int) -> torch.Tensor:
    """(K, s, s) float: 1 on filter k's stripe (everywhere when part[k] = -1)."""
    column_part = (np.arange(size) * num_parts) // size
    mask = np.where(part[:, None] < 0, True, column_part[None, :] == part[:, None])
    return torch.from_numpy(np.repeat(mask[:, None, :], size, axis=1).astype(np.float32))


def planted_block(
    store, rows: range, weights: np.ndarray, stripe: torch.Tensor, params: dict
) -> torch.Tensor:
    """(n, K, s, s) planted activations of the images `rows` (step 4)."""
    s, K = int(params["map_size"]), weights.shape[1]
    lo, hi = rows.start, rows.stop
    signal = torch.zeros((hi - lo, K, s, s))
    active = np.flatnonzero(weights.any(1))
    pixel = np.asarray(store.pixel_level, bool)
    pairs = np.arange(store.pair_offsets[lo], store.pair_offsets[hi])
    pairs = pairs[np.isin(store.pair_concept[pairs], active)]
    if len(pairs):
        down = F.adaptive_avg_pool2d(torch.from_numpy(store.masks(pairs)).float()[:, None], s)[:, 0]
        coef = torch.from_numpy(weights[store.pair_concept[pairs]])  # (P, K)
        signal.index_add_(
            0,
            torch.from_numpy(store.pair_image[pairs] - lo).long(),
            coef[:, :, None, None] * down[:, None],
        )
    image_level = np.intersect1d(active, np.flatnonzero(~pixel))
    if len(image_level):
        present = torch.from_numpy(np.asarray(store.presence[lo:hi][:, image_level], np.float32))
        signal += (present @ torch.from_numpy(weights[image_level]))[:, :, None, None]
    noise = np.stack(
        [
            np.random.default_rng([int(params["seed"]), i]).standard_normal(
                (K, s, s), dtype=np.float32
            )
            for i in range(lo, hi)
        ]
    )
    return torch.relu(signal * stripe + float(params["noise"]) * torch.from_numpy(noise))


def build_planted(
    concept_store,
    params: dict,
    quantile: float,
    dtype: str,
    attrs: dict,
    out: Path,
    block: int = 256,
) -> None:
    """Write the planted store to `out` (streaming over blocks of images)."""
    weights, kind, part = assign(concept_store.num_concepts, params, concept_store.categories)
    stripe = stripes(part, int(params["map_size"]), int(params["distributed_parts"]))
    with h5py.File(out, "w") as handle:
        builder = StoreBuilder(handle, concept_store.num_images, float(quantile), str(dtype))
        for lo in tqdm(
            range(0, concept_store.num_images, block), desc="planted activations", mininterval=1
        ):
            rows = range(lo, min(lo + block, concept_store.num_images))
            builder.add(lo, planted_block(concept_store, rows, weights, stripe, params))
        handle["planted/weights"] = weights
        handle["planted/kind"] = np.array(kind, dtype=object).astype(_STR)
        handle["planted/part"] = part
        handle["planted"].attrs["params"] = str(params)
        builder.finish({**attrs, "stride": attrs["input_size"] / int(params["map_size"])})


class PlantedSource:
    """``network=planted``: the activation source that plants a known encoding (module docstring).

    Takes the encoding's parameters as plain values (``conf/network/planted.yaml``); has no model
    and no images, only the layer alias(es) it answers to."""

    arch = "planted"

    def __init__(
        self,
        name: str = "planted",
        input_size: int = 128,
        layers: dict | None = None,
        channels: dict | None = None,
        last_layer: str | None = None,
        weights: str = "planted",
        **params,
    ) -> None:
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise NetworkError(
                f"network=planted has no setting {unknown[0]!r}: expected {', '.join(DEFAULTS)}"
            )
        self.name, self.input_size, self.weights = str(name), int(input_size), weights
        self.layers = {str(k): str(v) for k, v in dict(layers or {"conv5": "planted"}).items()}
        self.channels, self.last_layer = dict(channels or {}), last_layer
        self.params = {key: params.get(key, DEFAULTS[key]) for key in DEFAULTS}
        self.params["shared_group"], self.params["kinds"] = (
            list(self.params["shared_group"]),
            list(self.params["kinds"]),
        )
        if self.params["categories"] is not None:
            self.params["categories"] = list(self.params["categories"])
        if int(self.params["filters"]) <= int(self.params["noise_filters"]):
            raise NetworkError(
                f"network.filters={self.params['filters']}: must exceed "
                f"network.noise_filters={self.params['noise_filters']}"
            )

    def resolve_layer(self, layer: str) -> str:
        """The planted layer answers only to its aliases."""
        if str(layer) not in self.layers:
            raise NetworkError(
                f"layer={layer!r}: network planted has only the layers {', '.join(self.layers)}"
            )
        return self.layers[str(layer)]

    def activation_store(
        self,
        concepts,
        layer: str,
        quantile: float,
        cache_dir: str | Path,
        extraction,
        transform=None,
    ) -> ActivationStore:
        """The planted activation store of this dataset and encoding: reuse or build."""
        if transform is not None:
            raise NetworkError("network=planted has no images: input perturbations do not apply")
        self.resolve_layer(layer)
        spec = {
            "concepts": str(concepts.attrs.get("key")),
            "dataset": str(concepts.attrs.get("dataset_root")),
            "network": "planted",
            "params": self.params,
            "layer": str(layer),
            "dtype": str(extraction.dtype),
            "quantile": float(quantile),
        }
        attrs = {
            "network": "planted",
            "layer": str(layer),
            "module": "planted",
            "weights": "planted",
            "input_size": self.input_size,
            "dataset": spec["dataset"],
            "concepts": spec["concepts"],
        }
        return cached_store(
            store_artifact(cache_dir, self.name, str(layer), spec),
            lambda tmp: build_planted(
                concepts, self.params, quantile, extraction.dtype, attrs, tmp
            ),
        )
