"""Names shared by the word problems and the logic puzzles."""

NAMES = [
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Gita", "Hugo", "Ines", "Jonas",
    "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara",
    "Umar", "Vera", "Wen", "Yusuf", "Zoe",
]
SHE = ["Alice", "Dana", "Farah", "Gita", "Ines", "Lena", "Nora", "Priya", "Rosa", "Tara", "Vera", "Zoe"]
"""The names referred to as "she"; the others as "he"."""


def pronoun(name: str) -> str:
    """The subject pronoun used for a name."""
    return "she" if name in SHE else "he"
