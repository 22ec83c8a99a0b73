"""nnU-Net v2 trained model folders run by medseg, without nnU-Net: detection
(:func:`is_nnunet_folder`) and loading (:func:`load_nnunet_model`) into a model with the
interface of :class:`medseg.inference.Predictor`. The networks need the optional
``dynamic-network-architectures`` package (``pip install 'medseg[nnunet]'``)."""

from __future__ import annotations

from medseg.nnunet.folder import is_nnunet_folder, open_nnunet_folder
from medseg.nnunet.model import NnunetModel, load_nnunet_model

__all__ = ["NnunetModel", "is_nnunet_folder", "load_nnunet_model", "open_nnunet_folder"]
