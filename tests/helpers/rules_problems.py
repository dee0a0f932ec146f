"""The problems a rules text is refused with."""
from __future__ import annotations

import pytest

from mapper_core.errors import Problem, RulesError
from mapper_core.rules import parse_rules


def problems_of(text: str, filename: str = "rules.yaml") -> tuple[Problem, ...]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, filename)
    return info.value.problems
