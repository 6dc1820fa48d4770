//! The runner of the test binaries that have their own harness
//! (`harness = false` in Cargo.toml): each case is reported `ok`, `FAILED`
//! with its message, or `skipped` with the reason (a server binary or a
//! corpus this machine does not have), never passed in its stead; the
//! totals line keeps cargo's shape, and a failure makes the exit status 1.
//! Names given on the command line select the cases whose name contains one.

use std::time::Instant;

pub struct Report {
    filter: Vec<String>,
    passed: usize,
    failed: usize,
    skipped: usize,
    started: Instant,
}

impl Report {
    pub fn new() -> Report {
        let filter = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        Report { filter, passed: 0, failed: 0, skipped: 0, started: Instant::now() }
    }

    /// Whether the command line selects the case `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|f| name.contains(f.as_str()))
    }

    pub fn skipped(&mut self, name: &str, why: &str) {
        println!("test {name} ... skipped: {why}");
        self.skipped += 1;
    }

    /// A case's outcome: `Ok` with what it checked (may be empty), or `Err`
    /// with what went wrong.
    pub fn outcome(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(what) if what.is_empty() => {
                println!("test {name} ... ok");
                self.passed += 1;
            }
            Ok(what) => {
                println!("test {name} ... ok ({what})");
                self.passed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED\n  {e}");
                self.failed += 1;
            }
        }
    }

    /// Prints the totals; exits 1 when a case failed.
    pub fn finish(self) {
        println!(
            "\ntest result: {}. {} passed; {} failed; {} skipped; finished in {:.1}s",
            if self.failed == 0 { "ok" } else { "FAILED" },
            self.passed,
            self.failed,
            self.skipped,
            self.started.elapsed().as_secs_f64()
        );
        if self.failed > 0 {
            std::process::exit(1);
        }
    }
}
