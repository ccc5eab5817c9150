"""The release, as importcore.__version__ and in every request's User-Agent."""

__version__ = "0.1.0"
