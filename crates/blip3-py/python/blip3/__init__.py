"""BLIP-3 / xGen-MM vision-language inference on the blip3-rs engine (CPU).

>>> import blip3
>>> model = blip3.Model("Salesforce/xgen-mm-phi3-mini-instruct-r-v1")  # or a model folder
>>> print(model.generate(images=["photo.jpg"], prompt="What is shown in this image?").text)

Images may be paths, encoded bytes, ``PIL.Image.Image`` objects or ``HxWx3`` ``uint8``
numpy arrays. Compute runs with the GIL released; Ctrl-C interrupts a generation.
"""

from ._errors import Blip3Error, ImageError, RequestError
from ._blip3 import Generation, Model, TextStream, __version__

__all__ = [
    "Blip3Error",
    "Generation",
    "ImageError",
    "Model",
    "RequestError",
    "TextStream",
    "__version__",
]
