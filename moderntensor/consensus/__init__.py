"""Consensus: slots, stake-weighted leaders and Simplex-style finality, as pure state machines.

The protocol, step by step (Chan & Pass, "Simplex Consensus", 2023, weighted by stake, with
epochs that end at a finalized block as Commonware's do; docs/consensus.md has the details):

1. **Time and rounds.** Slot ``s`` starts at ``genesis_time + s * slot_duration``. Epochs count
   blocks: epoch ``e`` holds heights ``e*L+1 .. (e+1)*L``, and the block of height
   ``(e+1)*L`` is its *boundary block*. A *round* is ``(epoch, slot)``; every vote, certificate
   and slashing-protection record names its round, and the epoch is in every vote digest. The
   genesis block is slot 0 and final. Each validator has a *view*, the slot it votes in within
   its epoch; it enters ``s + 1`` on a notarization, nullification or finalization of ``s`` or
   any later slot of its epoch.
2. **Validator set.** The set of epoch ``e`` comes from the validator records in the state of
   the boundary block of epoch ``e - 2`` (genesis for ``e <= 1``): non-jailed validators with
   stake ``>= min_stake``, the ``max_validators`` largest (the previous members if nobody is
   eligible). A *quorum* is a set of distinct members holding strictly more than 2/3 of the
   epoch's stake: ``3 * signed > 2 * total``, integer math.
3. **Leader.** Leader of ``(e, s)``: a stake-weighted draw from set ``e`` (members sorted by
   id, cumulative stakes) at ``keccak256(seed_e || s) mod total_stake``.
4. **Propose.** In view ``s`` and no earlier than the start of slot ``s``, the leader picks as
   parent the latest notarized block such that every slot between it and ``s`` is nullified
   in its view (the finalized block if none), builds a block on it and signs PROPOSE over the
   header's seal hash. If that parent is the epoch's boundary block, no block may follow it in
   the epoch: the leader proposes the boundary block again in its own slot (a re-proposal).
5. **Notarize.** For the *first* proposal of its view from its leader whose parent is notarized
   (or final) with every slot in between nullified in its own view, a validator has the block
   executed; MISSING data is fetched, never final; if valid (and durably stored) it signs
   NOTARIZE(e, s, block hash) — once per round, not after NULLIFY in that round.
6. **Notarization.** A quorum of NOTARIZE is a notarization certificate. Seeing one, a validator
   records the block as notarized, signs FINALIZE(e, s, h) unless it signed NULLIFY(e, s), and
   enters ``s + 1``.
7. **Timeout.** ``timeout`` after entering view ``s`` (never before ``timeout`` after its start)
   with no notarization, or at once on an invalid block or the leader's own NULLIFY, a
   validator signs NULLIFY(e, s); on every timeout it re-sends its votes, the certificates that
   brought it into the view, the newest finalization and its latest unfinished FINALIZE. A
   quorum of NULLIFY is a nullification certificate; seeing one, it enters ``s + 1``.
8. **Finalize.** A quorum of FINALIZE is a finalization certificate: the block and all its
   ancestors are final. When the boundary block of epoch ``e`` is final, epoch ``e + 1`` starts
   at the view after the boundary block's slot.
9. **Certificates** are re-broadcast by everyone who first forms or receives one; a node
   verifies each against the set of the certificate's own epoch, so a syncing node checks
   finality itself.
10. **Evidence.** Two signed messages of one validator for one round are slashable when they
    are two PROPOSE with different seal hashes, two NOTARIZE with different block hashes, or a
    NULLIFY and a FINALIZE. Every validator checks every authentic message it sees against the
    first of each kind it saw from that signer in that round and reports
    :class:`EvidenceFound`; a block includes it within ``evidence_epochs``; executing it slashes
    ``slash_fraction`` of the stake and jails the validator, once per jail.
11. **Slashing protection and restarts.** Before any signature the validator durably records
    it and refuses anything conflicting with its record, and any NULLIFY at or below the
    highest certified round it saw. After a restart it merges into its record the votes of
    its own that peers still hold (their status), and signs nothing new until certificates
    show it is past every certificate they hold.

Deviations from the Simplex paper:

* Stake-weighted quorums and leaders instead of ``n >= 3f + 1`` equal votes.
* View changes also happen on a finalization certificate (it implies a notarization).
* Honest validators do not notarize after nullifying a round (as Commonware does); the
  paper's safety argument needs only "no FINALIZE after NULLIFY".
* Slots are wall-clock paced: the leader waits for its slot's start and a view times out
  ``timeout`` after it is entered, never before ``timeout`` after its slot's start.
* The paper multicasts every message received; we re-broadcast certificates (one per
  certificate) and, on every timeout, our votes, the certificates behind our view and the
  newest finalization, which keeps liveness under message loss.
* Votes cover the header's seal hash for PROPOSE and the full block hash otherwise.
* Validator sets change per epoch; an epoch ends at a finalized boundary block, with
  re-proposals of that block, so no outage can leave a set unknown.
* A leader that signs one header twice with different nonces gets two block hashes for one
  seal hash: not slashable (RFC 6979 signers never do it), it can only cost that slot.

Safety argument (agreement). Let byzantine validators hold less than 1/3 of an epoch's stake.
Two quorums overlap in more than 1/3 of the stake, so in some honest validator. Within an
epoch: (a) no two blocks of one round are both notarized: an honest validator in both quorums
would have signed two NOTARIZE in that round. (b) If block ``h`` of round ``(e, s)`` is
finalized, the round is never nullified: an honest validator in both quorums signed FINALIZE
and NULLIFY in it, but it signs FINALIZE only if it did not sign NULLIFY there and signs
NULLIFY only in its current view, which it left for good before signing FINALIZE. (c) Hence
every notarized block of a later slot ``t`` of the epoch descends from ``h``: its notarization
has an honest signer, who checked that the parent is notarized and that every slot between the
parent and ``t`` is nullified; by (b) slot ``s`` is not, so the parent's slot is ``>= s``, and
by (a) and induction on ``t`` the parent is ``h`` or descends from it (a re-proposal counts as
an empty child of its block). Every finalized block is notarized, so of two finalized blocks
of an epoch the later one descends from the earlier one. Across epochs: the boundary block of
epoch ``e`` is the unique finalized block of its height; after it no other block of ``e`` can
be finalized (later notarized blocks of ``e`` extend it, none may lie above it); epoch
``e + 1`` starts from it at the same view for everyone (its header slot + 1), and the epoch in
every digest keeps votes of one epoch out of the other. Sets are a function of finalized state,
so all honest validators use the same sets.

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
    MAX_CERTIFICATE_SIZE,
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
    FetchCertificates,
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
    "MAX_CERTIFICATE_SIZE",
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
    "FetchCertificates",
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
