"""The dataset sources, one module each: its options class (``<Name>Options``) and its ``load``.

The registry (:mod:`clinfonce.data.registry`) names them; every ``load`` returns an
:class:`~clinfonce.data.dataset.ImageDataset`.
"""
