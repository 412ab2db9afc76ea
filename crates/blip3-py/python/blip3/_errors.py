"""The exceptions the engine raises; each carries the engine's message."""


class Blip3Error(Exception):
    """The engine failed: loading a model folder, resolving a Hub id, or computing."""


class ImageError(Blip3Error, ValueError):
    """An image could not be read, decoded or accepted (corrupt, truncated, unknown
    format, empty, above ``max_pixels``, or a numpy array that is not ``HxWx3 uint8``)."""


class RequestError(Blip3Error, ValueError):
    """The request does not fit the model: ``<image>`` markers and images that do not
    match, a prompt longer than the context, invalid chat messages or sampling values."""
