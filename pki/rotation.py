"""Root rotation without downtime: stage, promote, retire (``isthmus pki rotate-root``).

Called by the ``isthmus pki rotate-root`` command and tests. The lifecycle is a transition table
over :class:`~pki.rootdir.Phase`; a pair that is not in it is refused with a message saying
which step comes next. Repeating the step just done changes nothing (it only republishes the
derived files), so every step is safe to run again after an interruption.

- ``stage``: make root n+1. The bundle holds old and new; the old root still signs. Roll the
  bundle out to every cluster (re-run ``issue-intermediate``, or copy ``bundle.pem`` into each
  cluster's ``root-cert.pem``) before promoting.
- ``promote``: the new root signs the intermediates issued from now on. The bundle still holds
  both, so workloads under the old root and under the new one keep talking.
- ``retire``: the bundle holds the new root only. Run it once every intermediate and workload
  certificate has been re-issued under the new root. The old root's files stay in
  ``roots/<n>/`` for audit.

No cross-signing: the new root is trusted through the bundle, which every verifier already
receives before the new root signs anything (stage comes before promote). A cross-certificate
would only help peers whose bundle never gets the new root, and it would lengthen chains past
the root's pathLen of 1.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from pathlib import Path

from pki.authority import DEFAULT_ROOT_TTL
from pki.bundle import TrustBundle
from pki.errors import RotationError
from pki.keys import KeyType
from pki.rootdir import Phase, RootDir, RootState


class Step(enum.Enum):
    STAGE = "stage"
    PROMOTE = "promote"
    RETIRE = "retire"


# (phase, step) -> phase after the step. The step that led to a phase maps to itself (no-op).
TRANSITIONS: dict[tuple[Phase, Step], Phase] = {
    (Phase.ACTIVE, Step.STAGE): Phase.STAGED,
    (Phase.RETIRED, Step.STAGE): Phase.STAGED,
    (Phase.STAGED, Step.STAGE): Phase.STAGED,
    (Phase.STAGED, Step.PROMOTE): Phase.PROMOTED,
    (Phase.PROMOTED, Step.PROMOTE): Phase.PROMOTED,
    (Phase.PROMOTED, Step.RETIRE): Phase.RETIRED,
    (Phase.RETIRED, Step.RETIRE): Phase.RETIRED,
}

_REFUSALS: dict[tuple[Phase, Step], str] = {
    (Phase.ACTIVE, Step.PROMOTE): "no new root is staged: run 'rotate-root stage' first",
    (Phase.RETIRED, Step.PROMOTE): "no new root is staged: run 'rotate-root stage' first",
    (Phase.ACTIVE, Step.RETIRE): "no rotation is in progress: run 'rotate-root stage' first",
    (Phase.STAGED, Step.RETIRE): (
        "the new root is staged but not promoted: run 'rotate-root promote' first "
        "(retiring now would drop the root that signs every current intermediate)"
    ),
    (Phase.PROMOTED, Step.STAGE): (
        "a rotation is in progress (promoted): finish it with 'rotate-root retire' before "
        "staging another root"
    ),
}


def next_phase(phase: Phase, step: Step) -> Phase:
    """The phase after ``step``; raise :class:`RotationError` for an out-of-order step."""
    after = TRANSITIONS.get((phase, step))
    if after is None:
        message = _REFUSALS.get((phase, step), f"step {step.value} not allowed in {phase.value}")
        raise RotationError(f"{step.value}: {message}", rule="out-of-order")
    return after


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step did: the new state, whether anything changed, and the published bundle."""

    state: RootState
    changed: bool
    bundle: TrustBundle


def stage(
    path: Path,
    *,
    passphrase: bytes | None = None,
    key_type: KeyType | None = None,
    ttl: datetime.timedelta = DEFAULT_ROOT_TTL,
    now: datetime.datetime | None = None,
) -> StepResult:
    """Make the next root and trust it beside the current one; the current one still signs.

    The key is encrypted like the current one: an encrypted root directory needs the same
    ``passphrase``, which is checked against the current key before anything is written.
    """
    root_dir = RootDir(path)
    state = root_dir.load_state()
    after = next_phase(state.phase, Step.STAGE)
    if after is state.phase:
        return StepResult(state, False, root_dir.publish(state))
    if state.encrypted:
        root_dir.authority(state.signing, state, passphrase)  # checks the passphrase
    elif passphrase is not None:
        raise RotationError(
            "rotate-root stage: the current root key is not encrypted; leave out the "
            "passphrase (or encrypt every root key the same way)",
            rule="passphrase-unexpected",
        )
    generation = max(state.trusted) + 1
    kind = key_type or state.key_type
    root_dir.new_root(
        generation,
        state.trust_domain,
        kind,
        passphrase if state.encrypted else None,
        ttl=ttl,
        now=now,
    )
    new_state = state.with_changes(phase=after, key_type=kind, trusted=(state.signing, generation))
    root_dir.save_state(new_state)
    return StepResult(new_state, True, root_dir.publish(new_state))


def promote(path: Path) -> StepResult:
    """The staged root becomes the one that signs; both stay trusted."""
    root_dir = RootDir(path)
    state = root_dir.load_state()
    after = next_phase(state.phase, Step.PROMOTE)
    if after is state.phase:
        return StepResult(state, False, root_dir.publish(state))
    new_state = state.with_changes(phase=after, signing=state.trusted[-1])
    root_dir.save_state(new_state)
    return StepResult(new_state, True, root_dir.publish(new_state))


def retire(path: Path) -> StepResult:
    """Drop the old root from the bundle; the new root alone is trusted."""
    root_dir = RootDir(path)
    state = root_dir.load_state()
    after = next_phase(state.phase, Step.RETIRE)
    if after is state.phase:
        return StepResult(state, False, root_dir.publish(state))
    new_state = state.with_changes(phase=after, trusted=(state.signing,))
    root_dir.save_state(new_state)
    return StepResult(new_state, True, root_dir.publish(new_state))
