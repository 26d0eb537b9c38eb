"""Figures and reports of fitted models."""

from .figures import image_completion_figures, is_image

__all__ = ["image_completion_figures", "is_image"]
