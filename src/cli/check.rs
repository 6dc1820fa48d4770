//! `shardsync check --config F [--json]`: the precheck on its own, and the
//! way every front end without a screen prints a precheck report.

use std::path::Path;

use shardsync::precheck::{self, CheckResult, CheckStatus, PrecheckReport};

use super::exit::{EXIT_FAILED, EXIT_OK};

pub fn run(config: &Path, json: bool) -> i32 {
    let (task, rt) = match super::task_and_runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = rt.block_on(precheck::run(&task, None));
    if json {
        let v = serde_json::json!({ "passed": report.passed(), "checks": report.checks });
        println!("{v}");
    } else {
        for line in render(&report.checks) {
            println!("{line}");
        }
        println!("{}", summary(&report));
    }
    if report.passed() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The checks grouped by subject: a heading, then one line a check, with
/// `fix:` under what is not a pass.
pub fn render(checks: &[CheckResult]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut subject = None;
    for c in checks {
        if subject != Some(&c.subject) {
            subject = Some(&c.subject);
            lines.push(c.subject.clone());
        }
        let tag = match c.status {
            CheckStatus::Pass => "PASS",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
        };
        lines.push(format!("  {tag}  {}: {}", c.title, c.reason));
        if let Some(fix) = c.fix.as_ref().filter(|_| c.status != CheckStatus::Pass) {
            lines.push(format!("        fix: {fix}"));
        }
    }
    lines
}

pub fn summary(report: &PrecheckReport) -> String {
    let pass = report.checks.len() - report.warnings() - report.failures();
    let verdict =
        if report.passed() { "the task can start" } else { "the task cannot start until the failures are fixed" };
    format!("precheck: {pass} passed, {} warnings, {} failed: {verdict}", report.warnings(), report.failures())
}
