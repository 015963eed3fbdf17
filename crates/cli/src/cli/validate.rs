//! `switchyard validate PKG`: every error and warning of a package and its children.

use std::path::Path;

use switchyard_package::{LoadError, load_package};

use super::exit;

/// Prints diagnostics on stdout; exits 0 with warnings only, 5 with errors, 4 when not found.
pub fn validate(path: &Path) -> u8 {
    match load_package(path) {
        Ok(loaded) => {
            let warnings = loaded.warnings.warnings().count();
            for warning in loaded.warnings.warnings() {
                println!("{warning}");
            }
            println!("{}: valid ({warnings} warning(s))", path.display());
            exit::SUCCESS
        }
        Err(LoadError::Invalid(diagnostics)) => {
            println!("{diagnostics}");
            let errors = diagnostics.errors().count();
            let warnings = diagnostics.warnings().count();
            println!("{}: invalid: {errors} error(s), {warnings} warning(s)", path.display());
            exit::INVALID
        }
        Err(e) => super::run::report_load_error(&e),
    }
}
