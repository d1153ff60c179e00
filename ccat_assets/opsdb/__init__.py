"""The operations database: typed SQLAlchemy 2 models, enums, sessions and migrations."""

from ccat_assets.opsdb.base import Base
from ccat_assets.opsdb.enums import (
    IN_FLIGHT_STATUSES,
    TERMINAL_STATUSES,
    DataProductType,
    LocationType,
    PackageState,
    PhysicalCopyStatus,
    RunStatus,
    StorageType,
    TriggerType,
    VersionPolicy,
)
from ccat_assets.opsdb.location import DataLocation, PhysicalCopy
from ccat_assets.opsdb.observation import (
    ExecutedObsUnit,
    InstrumentModule,
    ObservingProgram,
    ObsUnit,
    RawDataFile,
    RawDataPackage,
    Source,
)
from ccat_assets.opsdb.pipeline import (
    DataGrouping,
    GroupingPreset,
    Pipeline,
    ReductionSoftware,
    ReductionSoftwareVersion,
    ReductionStep,
    ReductionStepConfig,
    User,
    reduction_step_dependency,
)
from ccat_assets.opsdb.retired import RetiredPartition
from ccat_assets.opsdb.runs import (
    DataProduct,
    ExecutedReductionStep,
    data_product_lineage,
    run_input_data_product,
    run_input_raw_data_package,
)

__all__ = [
    "Base",
    "DataGrouping",
    "DataLocation",
    "DataProduct",
    "DataProductType",
    "ExecutedObsUnit",
    "ExecutedReductionStep",
    "GroupingPreset",
    "IN_FLIGHT_STATUSES",
    "InstrumentModule",
    "LocationType",
    "ObsUnit",
    "ObservingProgram",
    "PackageState",
    "PhysicalCopy",
    "PhysicalCopyStatus",
    "Pipeline",
    "RawDataFile",
    "RawDataPackage",
    "RetiredPartition",
    "ReductionSoftware",
    "ReductionSoftwareVersion",
    "ReductionStep",
    "ReductionStepConfig",
    "RunStatus",
    "Source",
    "StorageType",
    "TERMINAL_STATUSES",
    "TriggerType",
    "User",
    "VersionPolicy",
    "data_product_lineage",
    "reduction_step_dependency",
    "run_input_data_product",
    "run_input_raw_data_package",
]
