"""Hypothesis strategies and budget shared by the hostile-decoder fuzz tests (issue 19)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

#: the fuzzing budget of every decoder test: bounded, so CI time stays bounded
FUZZ = settings(max_examples=200, deadline=None)

#: anything a JSON decoder (or a confused writer) could hand over
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
