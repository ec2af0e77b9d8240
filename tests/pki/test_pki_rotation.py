"""Root rotation: stage, promote, retire; the order is enforced and each step is idempotent.

The trust tests follow a workload issued before the rotation and one issued after promotion
through every bundle the rotation publishes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from pki import rotation
from pki.authority import Authority
from pki.bundle import TrustBundle, read_bundle
from pki.errors import ChainError, KeyFileError, LayoutError, RotationError
from pki.keys import generate_key
from pki.rootdir import BUNDLE, ROOT_CERT, Phase, RootDir, init_root
from pki.spiffe import parse_spiffe_id
from pki.verify import verify_svid

TD = "mesh.example"
Step = Callable[[Path], rotation.StepResult]


def _workload(root_dir: Path, name: str) -> list[x509.Certificate]:
    """Issue an intermediate under the current signing root, then a leaf under it."""
    root, _ = RootDir(root_dir).signing_authority()
    key = generate_key()
    inter = Authority.load(root.issue_intermediate(key.public_key(), "east"), key, root.full_chain)
    leaf = inter.sign_leaf(generate_key().public_key(), parse_spiffe_id(f"spiffe://{TD}/{name}"))
    return [leaf, inter.cert]


def _bundle(root_dir: Path) -> TrustBundle:
    return read_bundle(root_dir / BUNDLE)


def test_old_and_new_workloads_trust_each_other_until_retire(tmp_path: Path) -> None:
    init_root(tmp_path, TD)
    old = _workload(tmp_path, "old")
    assert len(_bundle(tmp_path)) == 1

    staged = rotation.stage(tmp_path)
    assert staged.changed and staged.state.phase is Phase.STAGED
    assert len(_bundle(tmp_path)) == 2
    assert str(verify_svid(old, _bundle(tmp_path))) == f"spiffe://{TD}/old"
    # Staged: the old root still signs.
    assert _workload(tmp_path, "x")[1].issuer == old[1].issuer

    promoted = rotation.promote(tmp_path)
    assert promoted.state.phase is Phase.PROMOTED
    new = _workload(tmp_path, "new")
    assert new[1].issuer != old[1].issuer
    assert str(verify_svid(old, _bundle(tmp_path))) == f"spiffe://{TD}/old"
    assert str(verify_svid(new, _bundle(tmp_path))) == f"spiffe://{TD}/new"

    retired = rotation.retire(tmp_path)
    assert retired.state.phase is Phase.RETIRED and retired.state.trusted == (2,)
    assert len(_bundle(tmp_path)) == 1
    assert str(verify_svid(new, _bundle(tmp_path))) == f"spiffe://{TD}/new"
    with pytest.raises(ChainError):
        verify_svid(old, _bundle(tmp_path))


def test_signing_root_copy_follows_promotion(tmp_path: Path) -> None:
    init_root(tmp_path, TD)
    first = (tmp_path / ROOT_CERT).read_bytes()
    rotation.stage(tmp_path)
    assert (tmp_path / ROOT_CERT).read_bytes() == first
    rotation.promote(tmp_path)

    assert (tmp_path / ROOT_CERT).read_bytes() == (tmp_path / "roots/2" / ROOT_CERT).read_bytes()
    assert (tmp_path / ROOT_CERT).read_bytes() != first


@pytest.mark.parametrize(
    ("steps", "refused", "message"),
    [
        ([], rotation.promote, "no new root is staged"),
        ([], rotation.retire, "no rotation is in progress"),
        ([rotation.stage], rotation.retire, "staged but not promoted"),
        ([rotation.stage, rotation.promote], rotation.stage, "finish it with 'rotate-root retire'"),
        ([rotation.stage, rotation.promote, rotation.retire], rotation.promote, "no new root"),
    ],
)
def test_out_of_order_steps_are_refused_and_change_nothing(
    tmp_path: Path, steps: list[Step], refused: Step, message: str
) -> None:
    init_root(tmp_path, TD)
    for step in steps:
        step(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    with pytest.raises(RotationError, match=message):
        refused(tmp_path)

    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("count", [1, 2, 3])
def test_repeating_a_step_changes_nothing(tmp_path: Path, count: int) -> None:
    init_root(tmp_path, TD)
    steps = [rotation.stage, rotation.promote, rotation.retire][:count]
    for step in steps:
        step(tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    bundle = (tmp_path / BUNDLE).read_bytes()

    again = steps[-1](tmp_path)

    assert not again.changed
    assert json.loads((tmp_path / "state.json").read_text()) == state
    assert (tmp_path / BUNDLE).read_bytes() == bundle
    assert sorted(p.name for p in (tmp_path / "roots").iterdir()) == ["1", "2"][: 1 + (count > 0)]


def test_a_second_rotation_after_retire(tmp_path: Path) -> None:
    init_root(tmp_path, TD)
    for step in (rotation.stage, rotation.promote, rotation.retire, rotation.stage):
        result = step(tmp_path)

    assert result.state.trusted == (2, 3)
    assert result.state.signing == 2


def test_every_phase_and_step_pair_is_either_a_transition_or_a_clear_refusal() -> None:
    for phase, step in itertools.product(Phase, rotation.Step):
        if (phase, step) in rotation.TRANSITIONS:
            assert rotation.next_phase(phase, step) is rotation.TRANSITIONS[phase, step]
        else:
            with pytest.raises(RotationError, match=r"run 'rotate-root|finish it"):
                rotation.next_phase(phase, step)


def test_interrupted_step_is_repaired_by_running_it_again(tmp_path: Path) -> None:
    init_root(tmp_path, TD)
    rotation.stage(tmp_path)
    (tmp_path / BUNDLE).unlink()  # as if the step had died after saving its state

    rotation.stage(tmp_path)

    assert len(_bundle(tmp_path)) == 2


def test_encrypted_root_needs_the_same_passphrase_to_stage(tmp_path: Path) -> None:
    init_root(tmp_path, TD, passphrase=b"pw")

    with pytest.raises(KeyFileError, match="wrong passphrase"):
        rotation.stage(tmp_path, passphrase=b"other")
    with pytest.raises(LayoutError, match="encrypted"):
        rotation.stage(tmp_path)
    assert not (tmp_path / "roots/2").exists()

    rotation.stage(tmp_path, passphrase=b"pw")

    assert b"ENCRYPTED" in (tmp_path / "roots/2/root-key.pem").read_bytes()


def test_unencrypted_root_refuses_a_passphrase_on_stage(tmp_path: Path) -> None:
    init_root(tmp_path, TD)

    with pytest.raises(RotationError, match="not encrypted"):
        rotation.stage(tmp_path, passphrase=b"pw")


def test_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    init_root(tmp_path, TD)
    (tmp_path / "state.json").write_text('{"version": 1, "phase": "bogus"}')

    with pytest.raises(LayoutError, match="damaged state file"):
        rotation.promote(tmp_path)


def test_not_a_root_directory(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not a root directory"):
        rotation.stage(tmp_path)
