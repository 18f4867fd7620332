"""Each model's notifications go to its own webhook block (issue 27, item 6): names that differ only in case or in
`.`/`_`/`-` used to share one block, so one model's decisions were posted to the other's receiver."""

from __future__ import annotations

import re

from flows.notifications import block_name

LOOKALIKES = ["fashion-mnist", "fashion.mnist", "fashion_mnist", "Fashion-MNIST", "FASHION_MNIST", "fashion--mnist"]


def test_block_names_are_distinct_valid_and_stable() -> None:
    names = [block_name(model) for model in LOOKALIKES]
    assert len(set(names)) == len(LOOKALIKES)  # injective on these, the names a slug alone collapsed
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in names)  # what Prefect accepts as a block name
    assert names == [block_name(model) for model in LOOKALIKES]  # the same model finds its block again
    assert names[0].startswith("headstart-notify-fashion-mnist-")
