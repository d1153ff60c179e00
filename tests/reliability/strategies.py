"""Hostile values and hypothesis strategies shared by the reliability suites."""

from __future__ import annotations

from hypothesis import strategies as st

#: Strings that have broken programs before: paths, shell and SQL metacharacters, controls,
#: separators of Dagster's partition syntax, and text that YAML or JSON read as something else.
HOSTILE = ["../../etc/passwd", "..", ".", "/abs/path", "a/b", "a b", "$(touch pwned)",
           "`id`", "'; DROP TABLE pipeline; --", "a\nb", "a\x00b", "", " ", "日本語", "🙂",
           "x" * 300, "CRON", "exact", "-1", "1e999", "null", "{}", "[]", "a|b", "a,b"]
#: Any text a YAML file can hold (no lone surrogates: they cannot be written as UTF-8).
TEXT = st.one_of(st.sampled_from(HOSTILE),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)
