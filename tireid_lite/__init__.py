"""tireid-lite: a course and reproduction kit for text-to-image person re-identification."""

__version__ = "0.1.0"
