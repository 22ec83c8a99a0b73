"""medseg: 3-D medical image segmentation."""

__version__ = "0.1.0"
