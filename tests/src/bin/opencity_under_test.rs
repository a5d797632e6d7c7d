//! The `opencity` binary, built again as a target of this package. Cargo gives integration tests
//! only the paths of their own package's binaries (`CARGO_BIN_EXE_<name>`), and the crash and
//! restart tests must run the real command line as a child process to kill it. So this target
//! compiles the product's `main` unchanged.

include!("../../../api/src/main.rs");
