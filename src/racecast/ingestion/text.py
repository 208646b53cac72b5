"""Text in ingestion messages and quarantine rows: storable as UTF-8, values shown short."""

from __future__ import annotations


def safe_text(text: str) -> str:
    """Make text storable as UTF-8 (unpaired surrogates become ``\\udXXX`` escapes).

    Args:
        text: Any string.

    Returns:
        The same text where it was valid UTF-8.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def show_value(value: object, limit: int = 80) -> str:
    """Show a value in a message: ``repr``, shortened and storable.

    Args:
        value: Any value.
        limit: Maximum length.

    Returns:
        The shown value.
    """
    try:
        text = repr(value)
    except RecursionError:
        text = "<deeply nested value>"
    return safe_text(text if len(text) <= limit else text[: limit - 3] + "...")
