"""node.toml: the operator's configuration file, loaded strictly into frozen attrs classes.

Sections (see the commented ``node.toml`` at the repository root for every key and default):
``[node]`` data_dir and genesis (both required), log_level, log_format; ``[validator]`` key_file
(absent on a non-validator node); ``[rpc]``; ``[p2p]``; ``[metrics]``; ``[mempool]``;
``[explorer]``.

Every mistake -- missing or unreadable file, bad TOML, unknown section or key, wrong type,
missing required key, a referenced file that does not exist or does not load, a bad address,
port or multiaddr -- raises one :class:`ConfigError` listing every problem found, each naming
the file, the dotted key (``rpc.port``) and what was expected. Relative paths in the file are
relative to the file's directory (so a config works from any working directory); paths given
on the command line are relative to the working directory, as usual for flags.

Types are checked strictly: TOML ``"8545"`` is not a port and ``1`` is not ``true``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NewType, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from moderntensor.keys import KeyFileError, load_node_key, load_validator_keys
from moderntensor.mempool import MempoolConfig
from moderntensor.network import MULTIADDR_FORM, Multiaddr, parse_multiaddr
from moderntensor.rpc import RpcConfig

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ConfigError",
    "ConfigOverrides",
    "ExplorerSection",
    "MempoolSection",
    "MetricsSection",
    "Multiaddr",
    "NodeConfig",
    "NodeSection",
    "P2PSection",
    "RpcSection",
    "ValidatorSection",
    "load_config",
    "parse_multiaddr",
]

DEFAULT_MAX_INBOUND = 40
DEFAULT_MAX_OUTBOUND = 10
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")

Port = NewType("Port", int)
"""A TCP port, 0-65535 (0: let the system pick a free one, for tests)."""
Positive = NewType("Positive", int)
Seconds = NewType("Seconds", float)
"""A positive duration in seconds (an integer or a float in the file)."""


NonNegative = NewType("NonNegative", int)
IPAddress = NewType("IPAddress", str)
"""An IPv4 or IPv6 literal to bind to (hostnames are not resolved for binding)."""
LogLevel = NewType("LogLevel", str)
LogFormat = NewType("LogFormat", str)


class ConfigError(ValueError):
    """A configuration that cannot be used; ``errors`` lists each problem with its key."""

    def __init__(self, errors: list[str], source: str) -> None:
        self.errors = errors
        self.source = source
        body = (
            errors[0] if len(errors) == 1 else f"{len(errors)} problems:\n  " + "\n  ".join(errors)
        )
        super().__init__(f"{source}: {body}")


@attrs.frozen(slots=True, kw_only=True)
class NodeSection:
    data_dir: Path
    """Where the chain database and generated keys live (created if missing)."""
    genesis: Path | None
    """The genesis JSON file; required in a file. ``None`` (in code only) means the built-in
    dev genesis (:mod:`moderntensor.node.devnet`)."""
    log_level: LogLevel = LogLevel("info")
    log_format: LogFormat = LogFormat("text")


@attrs.frozen(slots=True, kw_only=True)
class ValidatorSection:
    key_file: Path | None = None
    """Validator key file (``moderntensor keys new validator``); none: a non-validator node."""


_RPC = RpcConfig()


@attrs.frozen(slots=True, kw_only=True)
class RpcSection:
    """The RPC server (:class:`moderntensor.rpc.RpcConfig` says what each limit does)."""

    enabled: bool = True
    addr: IPAddress = IPAddress("127.0.0.1")
    port: Port = Port(8545)
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: Positive = Positive(5 * 1024 * 1024)  # geth's HTTP body limit
    max_batch: Positive = Positive(1000)  # geth's batch request limit
    max_connections: Positive = Positive(_RPC.max_connections)
    max_http_connections_per_ip: Positive = Positive(_RPC.max_http_connections_per_ip)
    max_ws_connections_per_ip: Positive = Positive(_RPC.max_ws_connections_per_ip)
    first_request_timeout_s: Seconds = Seconds(_RPC.first_request_timeout_s)
    idle_timeout_s: Seconds = Seconds(_RPC.idle_timeout_s)
    batch_response_max_bytes: Positive = Positive(_RPC.batch_response_max_bytes)  # geth's
    batch_cpu_budget_s: Seconds = Seconds(_RPC.batch_cpu_budget_s)
    read_threads: Positive = Positive(_RPC.read_threads)
    health_max_unfinalized_slots: Positive = Positive(_RPC.health_max_unfinalized_slots)

    def to_rpc_config(self) -> RpcConfig:
        fields = attrs.asdict(self)
        del fields["enabled"]
        fields["cors_origins"] = tuple(self.cors_origins)
        fields["addr"] = str(self.addr)
        return RpcConfig(**fields)


@attrs.frozen(slots=True, kw_only=True)
class P2PSection:
    enabled: bool = True
    listen_addr: IPAddress = IPAddress("0.0.0.0")
    port: Port = Port(30303)
    bootstrap: tuple[Multiaddr, ...] = ()
    max_peers: Positive = Positive(50)
    """Connected peers in all (both directions)."""
    max_inbound: Positive | None = None
    """Peers that dialed us; none: ``min(40, max_peers)``. At most ``max_peers``."""
    max_outbound: Positive | None = None
    """Connections we dial; none: ``min(10, max_peers)``. At most ``max_peers``."""
    max_inbound_per_ip: Positive = Positive(4)
    """Inbound peers from one IP address (loopback exempt: localnets share 127.0.0.1)."""
    bootnode: bool = False
    """Serve peer lists as the main job: serve the addresses seen recently, dial none learned."""
    stale_after_s: Positive = Positive(600)
    """Forget (and stop serving) an address not seen for this many seconds."""
    discover: bool = True
    """Dial addresses learned by peer exchange; false: only ``bootstrap`` (and inbound), e.g.
    when every connection must go through a fault-injecting relay."""
    node_key_file: Path | None = None
    """Network identity key; none: ``<data_dir>/node.key``, created on first start."""

    @property
    def inbound_limit(self) -> int:
        return int(self.max_inbound or min(DEFAULT_MAX_INBOUND, self.max_peers))

    @property
    def outbound_limit(self) -> int:
        return int(self.max_outbound or min(DEFAULT_MAX_OUTBOUND, self.max_peers))


@attrs.frozen(slots=True, kw_only=True)
class MetricsSection:
    enabled: bool = False
    addr: IPAddress = IPAddress("127.0.0.1")
    port: Port = Port(6060)  # geth's metrics port


@attrs.frozen(slots=True, kw_only=True)
class ExplorerSection:
    """The block explorer the node serves (docs/explorer.md); the other limits keep the
    defaults of :class:`moderntensor.explorer.ExplorerConfig`."""

    enabled: bool = False
    addr: IPAddress = IPAddress("127.0.0.1")
    port: Port = Port(4000)
    max_connections: Positive = Positive(256)
    index_blocks: Positive = Positive(10_000)


_POOL = MempoolConfig()


@attrs.frozen(slots=True, kw_only=True)
class MempoolSection:
    """Limits of the transaction pool (:class:`moderntensor.mempool.MempoolConfig`; geth's
    ``--txpool.*`` names in the commented node.toml)."""

    global_slots: Positive = Positive(_POOL.global_slots)
    account_slots: Positive = Positive(_POOL.account_slots)
    global_queue: Positive = Positive(_POOL.global_queue)
    account_queue: Positive = Positive(_POOL.account_queue)
    queue_lifetime_s: Positive = Positive(_POOL.queue_lifetime_s)
    max_tx_size: Positive = Positive(_POOL.max_tx_size)
    price_bump_percent: Positive = Positive(_POOL.price_bump_percent)
    min_tip: NonNegative = NonNegative(_POOL.min_tip)
    journal: bool = _POOL.journal
    journal_max_bytes: Positive = Positive(_POOL.journal_max_bytes)

    def to_pool_config(self) -> MempoolConfig:
        return MempoolConfig(**attrs.asdict(self))


@attrs.frozen(slots=True, kw_only=True)
class NodeConfig:
    node: NodeSection
    validator: ValidatorSection = ValidatorSection()
    rpc: RpcSection = RpcSection()
    p2p: P2PSection = P2PSection()
    metrics: MetricsSection = MetricsSection()
    mempool: MempoolSection = MempoolSection()
    explorer: ExplorerSection = ExplorerSection()


@attrs.frozen(slots=True, kw_only=True)
class ConfigOverrides:
    """Command-line flags that win over the file: --data-dir, --rpc-addr, --rpc-port,
    --p2p-port, --explorer-port (which also enables the explorer), --log-level (None: not
    given)."""

    data_dir: Path | None = None
    rpc_addr: str | None = None
    rpc_port: int | None = None
    p2p_port: int | None = None
    explorer_port: int | None = None
    log_level: str | None = None


# -- strict scalar checks (each raises ValueError with what was expected) ------------------

_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}


def _kind(value: Any) -> str:
    name = "table" if isinstance(value, dict) else _TOML_TYPES.get(type(value), "date/time")
    return f"{name} {value!r}" if not isinstance(value, dict | list) else name


def _expect(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise ValueError(f"expected {what}, got {_kind(value)}")
    return value


def _port(value: Any, _: Any = None) -> Port:
    if type(value) is not int or not 0 <= value <= 65535:
        raise ValueError(f"expected a TCP port (integer 0-65535), got {_kind(value)}")
    return Port(value)


def _positive(value: Any, _: Any = None) -> Positive:
    if type(value) is not int or value < 1:
        raise ValueError(f"expected a positive integer, got {_kind(value)}")
    return Positive(value)


def _seconds(value: Any, _: Any = None) -> Seconds:
    if type(value) not in (int, float) or not value > 0 or value == float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {_kind(value)}")
    return Seconds(float(value))


def _not_negative(value: Any, _: Any = None) -> NonNegative:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a non-negative integer, got {_kind(value)}")
    return NonNegative(value)


def _ip(value: Any, _: Any = None) -> IPAddress:
    _expect(value, str, "an IP address such as 127.0.0.1 or 0.0.0.0")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            f"expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got {value!r}"
        ) from None
    return IPAddress(value)


def _choice(choices: tuple[str, ...]) -> Callable[[Any, Any], str]:
    def check(value: Any, _: Any = None) -> str:
        if type(value) is not str or value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}; got {_kind(value)}")
        return value.lower()

    return check


def _path(value: Any, _: Any) -> Path:
    if type(value) is not str or not value:
        raise ValueError(f"expected a path (non-empty string), got {_kind(value)}")
    return Path(value).expanduser()


_T = TypeVar("_T")


def _array(item: Callable[[Any], _T]) -> Callable[[Any, Any], tuple[_T, ...]]:
    def check(value: Any, _: Any) -> tuple[_T, ...]:
        if type(value) is not list:
            raise ValueError(f"expected an array, got {_kind(value)}")
        out = []
        for i, element in enumerate(value):
            try:
                out.append(item(element))
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        return tuple(out)

    return check


def _multiaddr(value: Any) -> Multiaddr:
    return parse_multiaddr(_expect(value, str, f"a string {MULTIADDR_FORM}"))


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(bool, lambda v, _: _expect(v, bool, "true or false"))
    conv.register_structure_hook(int, lambda v, _: _expect(v, int, "an integer"))
    conv.register_structure_hook(str, lambda v, _: _expect(v, str, "a string"))
    conv.register_structure_hook(Path, _path)
    conv.register_structure_hook(Port, _port)
    conv.register_structure_hook(Positive, _positive)
    conv.register_structure_hook(Seconds, _seconds)

    conv.register_structure_hook(NonNegative, _not_negative)
    conv.register_structure_hook(IPAddress, _ip)
    conv.register_structure_hook(LogLevel, _choice(LOG_LEVELS))
    conv.register_structure_hook(LogFormat, _choice(LOG_FORMATS))
    strings = _array(lambda v: _expect(v, str, "a string (an origin)"))
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], strings)
    conv.register_structure_hook_func(lambda t: t == tuple[Multiaddr, ...], _array(_multiaddr))
    return conv


_CONVERTER = _converter()


def _flatten(exc: BaseException, path: list[str], out: list[str]) -> None:
    """cattrs' nested exception groups -> ``dotted.key: problem`` lines."""
    if isinstance(exc, ClassValidationError):
        errors, others = exc.group_exceptions()
        for sub, note in errors:
            _flatten(sub, [*path, note.name], out)
        for sub in others:
            _flatten(sub, path, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        valid = ", ".join(f.name for f in attrs.fields(exc.cl))
        for key in sorted(exc.extra_fields):
            where = ".".join([*path, key])
            if path:
                out.append(f"{where}: unknown key; valid keys in [{path[0]}]: {valid}")
            else:
                out.append(f"[{key}]: unknown section; valid sections: {valid}")
    elif isinstance(exc, KeyError):
        out.append(f"{'.'.join(path)}: missing required key")
    else:
        out.append(f"{'.'.join(path)}: {exc}")


def _structure(doc: dict[str, Any], source: str) -> NodeConfig:
    problems = [
        f"[{name}]: expected a table, got {_kind(value)}"
        for name, value in doc.items()
        if name in {f.name for f in attrs.fields(NodeConfig)} and not isinstance(value, dict)
    ]
    if "node" not in doc:
        problems.append("[node]: missing required section (with data_dir and genesis)")
    if problems:
        raise ConfigError(problems, source)
    try:
        return _CONVERTER.structure(doc, NodeConfig)
    except (ClassValidationError, ValueError, TypeError) as exc:
        out: list[str] = []
        _flatten(exc, [], out)
        raise ConfigError(out, source) from None


def _resolve(path: Path | None, base: Path) -> Path | None:
    return None if path is None else (base / path)


def _check_files(config: NodeConfig) -> list[str]:
    """Files the config names must exist (and key files must load)."""
    problems = []
    data_dir = config.node.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        problems.append(f"node.data_dir: {data_dir} exists and is not a directory")
    genesis = config.node.genesis
    if genesis is not None and genesis.is_dir():
        problems.append(f"node.genesis: {genesis} is a directory, expected the genesis JSON file")
    elif genesis is not None and not genesis.is_file():
        problems.append(f"node.genesis: file not found: {genesis}")
    checks: list[tuple[str, Path | None, Callable[[Path], object]]] = [
        ("validator.key_file", config.validator.key_file, load_validator_keys),
        ("p2p.node_key_file", config.p2p.node_key_file, load_node_key),
    ]
    for key, path, load in checks:
        if path is None:
            continue
        if not path.is_file():
            problems.append(f"{key}: file not found: {path}")
            continue
        try:
            load(path)
        except KeyFileError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _check_limits(p2p: P2PSection) -> list[str]:
    """The direction limits fit in the total."""
    return [
        f"p2p.{key}: {value} is more than p2p.max_peers ({p2p.max_peers})"
        for key, value in (("max_inbound", p2p.max_inbound), ("max_outbound", p2p.max_outbound))
        if value is not None and value > p2p.max_peers
    ]


def _apply_overrides(config: NodeConfig, overrides: ConfigOverrides) -> NodeConfig:
    node, rpc, p2p, explorer = config.node, config.rpc, config.p2p, config.explorer
    try:
        if overrides.data_dir is not None:
            node = attrs.evolve(node, data_dir=Path(overrides.data_dir).expanduser().absolute())
        if overrides.log_level is not None:
            try:
                level = _choice(LOG_LEVELS)(overrides.log_level, None)
            except ValueError as exc:
                raise ValueError(f"--log-level: {exc}") from None
            node = attrs.evolve(node, log_level=LogLevel(level))
        if overrides.rpc_addr is not None:
            try:
                rpc = attrs.evolve(rpc, addr=_ip(overrides.rpc_addr))
            except ValueError as exc:
                raise ValueError(f"--rpc-addr: {exc}") from None
        if overrides.rpc_port is not None:
            try:
                rpc = attrs.evolve(rpc, port=_port(overrides.rpc_port))
            except ValueError as exc:
                raise ValueError(f"--rpc-port: {exc}") from None
        if overrides.p2p_port is not None:
            try:
                p2p = attrs.evolve(p2p, port=_port(overrides.p2p_port))
            except ValueError as exc:
                raise ValueError(f"--p2p-port: {exc}") from None
        if overrides.explorer_port is not None:
            try:
                port = _port(overrides.explorer_port)
                explorer = attrs.evolve(explorer, enabled=True, port=port)
            except ValueError as exc:
                raise ValueError(f"--explorer-port: {exc}") from None
    except ValueError as exc:
        raise ConfigError([str(exc)], "command line") from None
    return attrs.evolve(config, node=node, rpc=rpc, p2p=p2p, explorer=explorer)


def load_config(path: str | Path, overrides: ConfigOverrides | None = None) -> NodeConfig:
    """Read, check and resolve a node.toml; command-line ``overrides`` win over the file.

    Raises:
        ConfigError: every problem found; its message starts with the file name (or
            "command line" for a bad flag) and names each key.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read config file: {exc.strerror}"], source) from None
    except UnicodeDecodeError:
        raise ConfigError(["not a UTF-8 text file"], source) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML: {exc}"], source) from None
    config = _structure(doc, source)
    base = Path(path).resolve().parent
    config = attrs.evolve(
        config,
        node=attrs.evolve(
            config.node,
            data_dir=base / config.node.data_dir,
            genesis=_resolve(config.node.genesis, base),
        ),
        validator=attrs.evolve(
            config.validator, key_file=_resolve(config.validator.key_file, base)
        ),
        p2p=attrs.evolve(config.p2p, node_key_file=_resolve(config.p2p.node_key_file, base)),
    )
    config = _apply_overrides(config, overrides or ConfigOverrides())
    problems = _check_limits(config.p2p) + _check_files(config)
    if problems:
        raise ConfigError(problems, source)
    return config
