"""The hints (the stubs' EXERCISE comments and the notebooks' folded hints): what they suggest runs with what the
exercise file already imports."""

import ast
import json
import re

import pytest
from helpers import ROOT

from mae.impl import STEP_NOTEBOOKS

# A call on a module the way the hints write it: torch.einsum, F.unfold, nn.Linear, math.sqrt, np.stack.
QUALIFIED = re.compile(r"(?<![\w.])(torch|F|nn|math|np)\.\w+")


def imported_names(path):
    """The names an exercise file binds at its top level by import (`torch`, `F`, `nn`, ...)."""
    tree = ast.parse(path.read_text())
    return {alias.asname or alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}  # fmt: skip


def hints_of(step):
    """The hint texts of a step: its stub's EXERCISE comments and the folded hints of its notebook."""
    stub = (ROOT / "exercises" / f"{step}.py").read_text()
    texts = re.findall(r"# EXERCISE: (.+)", stub)
    notebook = next((ROOT / "notebooks").glob(f"{STEP_NOTEBOOKS[step]}_*.ipynb"))
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "<summary>Hint" in source:
            texts += re.findall(r"`([^`]+)`", source)  # the code the hints show
    return texts


@pytest.mark.parametrize("step", list(STEP_NOTEBOOKS))
def test_every_module_a_hint_names_is_imported_by_the_stub(step):
    names = imported_names(ROOT / "exercises" / f"{step}.py")
    missing = sorted({m.group(1) for text in hints_of(step) for m in QUALIFIED.finditer(text)} - names)
    assert not missing, f"a hint of {step} uses {missing}, which exercises/{step}.py does not import"
