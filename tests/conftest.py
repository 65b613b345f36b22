from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = REPO_ROOT / "dumps" / "kind-nodeport"
SEED_DUMPS = sorted(SEED.glob("*.rules"))


@pytest.fixture(scope="session")
def seed_dir() -> Path:
    return SEED
