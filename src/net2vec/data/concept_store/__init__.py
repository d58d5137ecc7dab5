"""The concept store: one HDF5 file per probe dataset with everything the probes need from it.

Path: ``<cache_dir>/concepts/<dataset-name>-<key>.h5``, the key a fingerprint of the dataset's
content and location and of LAYOUT (``data.fingerprint``; common.cache: an edited image, mask or CSV
gives a new store, logged with what changed). Layout (docs/architecture.md):

==========================  ================  =================================================
``concepts/name``           (C,) str          label.csv name
``concepts/category``       (C,) str          primary category (first listed)
``concepts/categories``     (C,) str          all categories, ';'-joined
``concepts/label_number``   (C,) int32        global label number
``concepts/pixel_level``    (C,) bool         the concept has masks (pairs) in the dataset
``concepts/coverage``       (C, 6) float64    pixels the label covers per column (attribute
                                              ``columns``: color, object, part, material, scene,
                                              texture; an image-level label covers sh x sw)
``split``                   (N,) uint8        0 = train, 1 = val, index.csv row order
``image``                   (N,) str          image file name relative to images/
``presence``                (N, C) bool       image x concept (pixel- and image-level labels)
``pairs/image, /concept``   (P,) int32        every (image, pixel-level concept), by image
``pairs/offsets``           (N+1,) int64      CSR: pairs of image i are offsets[i]:offsets[i+1]
``pairs/area``              (P,) int32        mask pixel count of the pair
``pairs/masks``             (P, ceil(sh*sw/8))  np.packbits of the row-major sh x sw mask;
                            uint8             chunked (~64 KiB) + gzip
``whole/concept``           (Q,) int32        image-level labels (scene, texture), by image
``whole/offsets``           (N+1,) int64      CSR: those of image i are offsets[i]:offsets[i+1]
==========================  ================  =================================================

Attributes: ``mask_size`` (sh, sw), ``dataset_root``, ``index_fingerprint``, ``n_excluded``,
``n_resized``, ``layout``, ``key`` and ``net2vec_record`` (JSON: key and inputs, common.cache),
``net2vec_complete``. The file holds every label with an
image in either split; :class:`ConceptStore` by default shows the probes' concepts only, the
labels with a train *and* a val image (``n_excluded`` counts the labels of label.csv left out),
and ``every_label=True`` shows them all (Network Dissection). A concept is pixel-level when its
label occurs in some mask (for BRODEN: the colour/object/part/material labels). Rows whose
sh x sw differ from the dataset's most common mask size have their masks resized to it,
nearest-neighbour (``n_resized`` counts them). Within a pair set the concept index increases
with the label number, and pairs of one image are sorted by concept.

Modules: ``build`` (the dataset -> store build, cached by content key), ``read``
(:class:`ConceptStore`).
"""

from net2vec.data.concept_store.build import (
    build_concept_store,
    concept_artifact,
    prepare_concept_store,
    store_path,
)
from net2vec.data.concept_store.read import ConceptStore

__all__ = [
    "ConceptStore",
    "build_concept_store",
    "concept_artifact",
    "prepare_concept_store",
    "store_path",
]
