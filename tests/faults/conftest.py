"""The fault suite's fixtures live in `faults_support` (a module with a unique name, so that test
modules can import its helpers while other suites' `conftest` modules are loaded too)."""

from faults_support import (  # noqa: F401  (fixtures, registered by being imported here)
    _faults_admin_key,
    _restore_logging,
    face_engine,
    private_postgres,
    tiny_model_dir,
)
