"""One check per exercise: it takes your object, compares it with the reference, and explains mistakes.

    from mae.checks import check_patch_embed
    check_patch_embed(PatchEmbed)        # prints one line, or raises AssertionError saying what is wrong

Every check copies the reference weights into your module, runs both on fixed, non-trivial
inputs (explicit noise wherever masking is involved) and compares. The reference weights are
drawn from seeded generators, biases and LayerNorm scales included (at initialisation those are
0 and 1, which would hide mistakes), so every message is the same from run to run. When the
values differ, the check tries the classic mistakes (computed from the reference) and names the
one you made; otherwise it says where the first wrong value is. Any correct implementation passes.

The checks use square images, as the official code does. Rectangular images and other channel
counts are checked too, but only if your code accepts them; if it does not, the ✓ line says that
this optional part was skipped.

From a terminal, `python -m mae.checks [step ...]` checks your exercises/ like rustlings. It, and
the notebooks (through `mae.course.use`), let the reference stand in for the steps you have not
written yet; a check called on a class you import yourself runs exactly what is in your files.

    harness.py       calling your code, comparing tensors, naming mistakes
    patch_embed.py, pos_embed.py, masking.py, attention.py, block.py    checks 01-05
    parts.py         what the model checks share: tiny configs, your earlier steps checked first
    model.py         checks 06-08 (encoder, decoder, the MAE)       classifier.py   check 12
    runner.py        every check in one run: CHECKS, run_checks, `python -m mae.checks`

May import: torch, mae.models (the reference), mae.impl. Nothing else of mae imports it but the course.
"""

from .attention import check_attention
from .block import check_block
from .classifier import check_classifier
from .harness import CheckFailed
from .masking import check_random_masking
from .model import check_decoder, check_encoder, check_mae
from .parts import EARLIER_CHECKS
from .patch_embed import check_patch_embed
from .pos_embed import check_pos_embed
from .runner import CHECKS, main, run_checks

__all__ = [
    "CHECKS", "EARLIER_CHECKS", "CheckFailed", "check_attention", "check_block", "check_classifier", "check_decoder",
    "check_encoder", "check_mae", "check_patch_embed", "check_pos_embed", "check_random_masking", "main",
    "run_checks",
]  # fmt: skip
