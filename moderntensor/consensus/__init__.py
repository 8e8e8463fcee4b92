"""Consensus: slots, stake-weighted leaders and Simplex-style finality, as pure state machines.

The protocol, step by step (Chan & Pass, "Simplex Consensus", 2023, weighted by stake):

1. **Time.** Slot ``s`` starts at ``genesis_time + s * slot_duration``; an epoch is
   ``epoch_length`` slots. The genesis block is slot 0 and final; voting starts at slot 1.
   Each validator also has a *view*: the slot it is voting in. It enters slot ``s + 1`` on
   seeing a notarization or nullification (or finalization) of ``s`` or any later slot.
2. **Validator set.** The set of epoch ``e`` (ids, keys, stakes) comes from the validator
   records in the state of the last finalized block at or before the last slot of epoch
   ``e - 2`` (genesis for ``e <= 1``): non-jailed validators with stake ``>= min_stake``, the
   ``max_validators`` largest. A validator is named by its *validator id*, the address of its
   consensus key. A *quorum* is a set of distinct members holding strictly more than 2/3 of
   the epoch's stake: ``3 * signed > 2 * total``, integer math.
3. **Leader.** Leader of ``s``: a stake-weighted draw from the epoch's set (members sorted by
   id, cumulative stakes) at ``keccak256(seed || s) mod total_stake``; the epoch seed is
   keccak256 of (genesis hash, epoch, snapshot block hash).
4. **Propose.** In view ``s`` and no earlier than the start of slot ``s``, the leader picks as
   parent the latest notarized block such that every slot between it and ``s`` is nullified
   in its view (the finalized block if none), builds and executes a block on it, and signs
   PROPOSE over the header's seal hash.
5. **Notarize.** In view ``s``, for the *first* proposal of ``s`` from its leader whose parent
   is notarized (or final) with every slot in between nullified in its own view, a validator
   has the block executed and, if valid, signs NOTARIZE(s, block hash) — once per slot, and
   not after it signed NULLIFY(s).
6. **Notarization.** A quorum of NOTARIZE(s, h) is a notarization certificate. Seeing one, a
   validator records ``h`` as notarized, signs FINALIZE(s, h) unless it signed NULLIFY(s), and
   enters ``s + 1``.
7. **Timeout.** If view ``s`` has no notarization by ``timeout`` after the slot's start (or at
   once, if it enters the view later than that), the validator signs NULLIFY(s); it
   rebroadcasts that vote and the certificate that brought it into ``s`` on every further
   timeout. A quorum of NULLIFY(s) is
   a nullification certificate; seeing one, it enters ``s + 1``.
8. **Finalize.** A quorum of FINALIZE(s, h) is a finalization certificate: ``h`` and all its
   ancestors are final. State of slots up to ``s`` is pruned (votes are kept for
   ``evidence_window`` more slots, to catch late equivocations).
9. **Certificates** are re-broadcast by everyone who first forms or receives one; a node
   verifies each against the set of the certificate's epoch, so a syncing node checks
   finality itself.
10. **Evidence.** Two signed messages of one validator for one slot are slashable when they are
    two PROPOSE with different seal hashes, two NOTARIZE with different block hashes, or a
    NULLIFY and a FINALIZE. Every validator checks every authentic message it sees (directly
    or inside a certificate) against the first of each kind it saw from that signer in that
    slot and reports :class:`EvidenceFound`; a block includes it; executing it slashes
    ``slash_fraction`` of the stake and jails the validator, once per (signer, slot, offence).
11. **Slashing protection.** Before any signature, the validator durably records it in its
    database and refuses anything conflicting with what it already signed for that slot.

Deviations from the Simplex paper:

* Stake-weighted quorums and leaders instead of ``n >= 3f + 1`` equal votes.
* View changes also happen on a finalization certificate (it implies a notarization).
* Honest validators do not notarize after nullifying a slot (as Commonware does); the paper's
  safety argument needs only "no FINALIZE after NULLIFY", so this only trades a little
  liveness in a slot that already timed out.
* Slots are wall-clock paced (DESIGN §4): the leader waits for its slot's start, and slot ``s``
  times out at ``slot start + timeout`` (at once if that is already past), not ``timeout``
  after entering the view; a node that was down nullifies the slots it missed at once and
  catches up with the clock. The paper moves as fast as the network.
* The paper multicasts every message received; we re-broadcast certificates (one per
  certificate) and our own votes on timeout, which keeps liveness under message loss.
* Votes cover the header's seal hash for PROPOSE and the full block hash otherwise.
* A leader that signs one header twice with different nonces gets two block hashes for one
  seal hash: not slashable (RFC 6979 signers never do it), it can only cost that slot.

Safety argument (agreement). Let byzantine validators hold less than 1/3 of an epoch's stake.
Two quorums overlap in more than 1/3 of the stake, so in some honest validator.
(a) No two blocks of one slot are both notarized: an honest validator in both quorums would
have signed two NOTARIZE in that slot, which it never does (one per slot, enforced by slashing
protection even across restarts). (b) If block ``h`` of slot ``s`` is finalized, slot ``s`` is
never nullified: an honest validator in both quorums signed FINALIZE(s) and NULLIFY(s), but an
honest validator signs FINALIZE(s) only if it did not sign NULLIFY(s) and signs NULLIFY only in
its current view, which it left for good before signing FINALIZE(s). (c) Hence every
notarized block of a slot ``t > s`` descends from ``h``: its notarization has an honest
signer, who checked that the parent is notarized and that every slot between the parent and
``t`` is nullified; by (b) slot ``s`` is not, so the parent's slot is ``>= s``, and by (a) and
induction on ``t`` the parent is ``h`` or descends from it. Every finalized block is notarized
(a finalization quorum has an honest signer, who saw the notarization), so of two finalized
blocks the later one descends from the earlier one: honest validators never finalize
conflicting blocks. Certificates are checked against the set of their own epoch, and the set
is a function of finalized state only, so all honest validators use the same sets.

Rewards (executed by the chain layer, not here): the proposer of each block receives the
genesis ``block_reward`` plus the transactions' priority fees; base fees are burned; slashing
burns the slashed stake. Supply changes only by these rules (DESIGN §5 conservation).
"""

from moderntensor.chain.votes import (
    Evidence,
    InvalidEvidence,
    Offence,
    SignedVote,
    VoteKind,
    compute_slash_amount,
    evidence_id,
    verify_evidence,
    vote_digest,
)

from ._certificates import (
    Certificate,
    SignatureVerifier,
    build_certificate,
    decode_certificate,
    encode_certificate,
    verify_certificate,
)
from ._core import CoreFailed, SimplexCore
from ._errors import (
    ConsensusError,
    ConsensusLocalError,
    ConsensusRemoteError,
    InvalidCertificate,
    InvalidMessage,
    SlashingRefused,
)
from ._messages import (
    Action,
    BlockRef,
    Broadcast,
    BuildBlock,
    EpochEntered,
    EvidenceFound,
    ExecuteBlock,
    FetchBlock,
    Finalized,
    Proposal,
    SetTimer,
    SigningRefused,
    Verdict,
)
from ._params import GENESIS_SLOT, MAINNET, MINIMAL, ConsensusConfig, Preset
from ._protection import (
    ALLOWED_AFTER,
    DatabaseStore,
    KeyValueStore,
    MemoryStore,
    ProtectedSigner,
    Round,
    SignedRecord,
    SlashingProtection,
)
from ._quorum import is_quorum
from ._schedule import (
    Validator,
    ValidatorSet,
    compute_block_epoch,
    compute_boundary_height,
    compute_epoch_seed,
    compute_leader,
    compute_next_validator_set,
    compute_slot_at,
    compute_slot_start_ms,
    compute_snapshot_height,
    compute_validator_set,
)

__all__ = [
    "ALLOWED_AFTER",
    "GENESIS_SLOT",
    "MAINNET",
    "MINIMAL",
    "Action",
    "BlockRef",
    "Broadcast",
    "BuildBlock",
    "Certificate",
    "ConsensusConfig",
    "ConsensusError",
    "ConsensusLocalError",
    "ConsensusRemoteError",
    "CoreFailed",
    "DatabaseStore",
    "EpochEntered",
    "Evidence",
    "EvidenceFound",
    "ExecuteBlock",
    "FetchBlock",
    "Finalized",
    "InvalidCertificate",
    "InvalidEvidence",
    "InvalidMessage",
    "KeyValueStore",
    "MemoryStore",
    "Offence",
    "Preset",
    "Proposal",
    "ProtectedSigner",
    "Round",
    "SetTimer",
    "SignatureVerifier",
    "SignedRecord",
    "SignedVote",
    "SigningRefused",
    "SimplexCore",
    "SlashingProtection",
    "SlashingRefused",
    "Validator",
    "ValidatorSet",
    "Verdict",
    "VoteKind",
    "build_certificate",
    "compute_block_epoch",
    "compute_boundary_height",
    "compute_epoch_seed",
    "compute_leader",
    "compute_next_validator_set",
    "compute_slash_amount",
    "compute_slot_at",
    "compute_slot_start_ms",
    "compute_snapshot_height",
    "compute_validator_set",
    "decode_certificate",
    "encode_certificate",
    "evidence_id",
    "is_quorum",
    "verify_certificate",
    "verify_evidence",
    "vote_digest",
]
