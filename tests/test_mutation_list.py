"""scripts/mutation_check.py's deliberate bugs still point at the code: each one's text occurs exactly once in its
file. A mutation whose text is gone (the code moved on) checks nothing, and the script only says so when run."""

import runpy

from launch import REPO


def test_every_deliberate_bug_still_matches_its_code_exactly_once():
    mutations = runpy.run_path(str(REPO / "scripts" / "mutation_check.py"), run_name="mutation_list")["MUTATIONS"]
    counts = {m.name: (REPO / m.file).read_text().count(m.find) for m in mutations}
    assert {name: n for name, n in counts.items() if n != 1} == {}
    assert len(mutations) >= 70
