"""triomem's public API: open an engine, remember and recall, typed errors and values."""

from ..actors._backup import BackupResult
from ..actors._errors import (
    DuplicateContent,
    EmbedderMismatch,
    EmbedderUnavailable,
    EngineClosed,
    InvalidMemory,
    NotFound,
    Overloaded,
    RecallTimeout,
    RemoteUnavailable,
    SchemaTooNew,
    StoreBusy,
    StoreCorrupt,
    StoreIOError,
    TriomemError,
)
from ..actors._fusion import FusionParams
from ..actors._recall import (
    LegQuery,
    RecallConfig,
    RecallHit,
    RecallLeg,
    RecallResult,
    RecallStatistics,
)
from ..actors._remote import (
    PROTOCOL_VERSION,
    ClockSkew,
    DeviceInfo,
    MemoryVersion,
    PullPage,
    PushResult,
    RemoteAuth,
    RemoteBackend,
    RemoteHit,
    RemoteInfo,
    RemotePermanent,
    RemoteTransient,
    UpgradeNeeded,
)
from ..actors._store import RetryPolicy, StoreStatistics
from ..actors._sync import SyncConfig, SyncStatus
from ..actors._values import DEFAULT_SPACE, DEFAULT_TYPE, Limits, Memory, Page, Remembered
from ..embedders import Embedder
from ._config import EngineConfig
from ._engine import Engine, EngineStatistics, open_engine, run_engine
from ._hub import HubService
from ._importers import FORMATS as IMPORT_FORMATS
from ._importers import read_records
from ._reembed import reembed_database
from ._transfer import ImportReport

__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_TYPE",
    "IMPORT_FORMATS",
    "PROTOCOL_VERSION",
    "BackupResult",
    "ClockSkew",
    "DeviceInfo",
    "DuplicateContent",
    "Embedder",
    "EmbedderMismatch",
    "EmbedderUnavailable",
    "Engine",
    "EngineClosed",
    "EngineConfig",
    "EngineStatistics",
    "FusionParams",
    "HubService",
    "ImportReport",
    "InvalidMemory",
    "LegQuery",
    "Limits",
    "Memory",
    "MemoryVersion",
    "NotFound",
    "Overloaded",
    "Page",
    "PullPage",
    "PushResult",
    "RecallConfig",
    "RecallHit",
    "RecallLeg",
    "RecallResult",
    "RecallStatistics",
    "RecallTimeout",
    "Remembered",
    "RemoteAuth",
    "RemoteBackend",
    "RemoteHit",
    "RemoteInfo",
    "RemotePermanent",
    "RemoteTransient",
    "RemoteUnavailable",
    "RetryPolicy",
    "SchemaTooNew",
    "StoreBusy",
    "StoreCorrupt",
    "StoreIOError",
    "StoreStatistics",
    "SyncConfig",
    "SyncStatus",
    "TriomemError",
    "UpgradeNeeded",
    "open_engine",
    "read_records",
    "reembed_database",
    "run_engine",
]
