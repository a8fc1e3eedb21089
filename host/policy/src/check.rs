//! `warden check`: everything a reload would do short of running — parse,
//! check, resolve and compile every plugin against the world its kind needs,
//! and let each plugin read its config (`init`, WIT 0.2.0 on) — over any
//! files and directories, with a report for people or programs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::compile::PluginCache;
use super::live::policy_files;
use super::parse::{self, ParseContext, PolicyError};
use warden_plugin_host::{MemoryStates, NoData};

/// The result for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Names of its policies that passed.
    pub policies: Vec<String>,
    /// What is wrong.
    pub errors: Vec<PolicyError>,
    /// What is not wrong but risky: a scope path under a directory that
    /// another user than root can write.
    pub warnings: Vec<PolicyError>,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// True if and only if there are no errors.
    pub ok: bool,
    /// Per file.
    pub files: Vec<FileReport>,
}

/// Checks `paths` (files, or directories of policy files).
pub fn check(paths: &[PathBuf], cx: &ParseContext, plugins: &PluginCache) -> CheckReport {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match policy_files(p) {
                Ok(found) => files.extend(found),
                Err(e) => files.push(p.join(format!("(cannot list: {e})"))),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut reports = Vec::new();
    for path in files {
        reports.push(check_file(&path, cx, plugins, &mut seen));
    }
    CheckReport {
        ok: reports.iter().all(|r| r.errors.is_empty()),
        files: reports,
    }
}

fn check_file(
    path: &Path,
    cx: &ParseContext,
    plugins: &PluginCache,
    seen: &mut HashMap<String, PathBuf>,
) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        policies: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let text = match parse::read_policy_file(path) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let policies = match parse::parse(path, &text, cx) {
        Ok(p) => p,
        Err(errors) => {
            report.errors = errors;
            return report;
        }
    };
    for policy in policies {
        let error = |message: String| PolicyError::at_policy(path, &policy, message);
        if let Some(other) = seen.get(policy.name()) {
            report.errors.push(error(format!(
                "the name is already used by a policy in `{}`",
                other.display()
            )));
            continue;
        }
        seen.insert(policy.name().to_owned(), path.to_path_buf());
        for scope in &policy.scope_paths {
            report.warnings.extend(
                crate::cleanup::writable_ancestors(scope)
                    .into_iter()
                    .map(|w| PolicyError::at_policy(path, &policy, w)),
            );
        }
        if let (Some(source), Some(kind)) = (&policy.plugin, policy.kind().plugin_kind()) {
            let plugin = match plugins.resolve(source, kind, policy.spec.sha256.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    report
                        .errors
                        .push(error(format!("plugin {}", e.kind_message())));
                    continue;
                }
            };
            // The plugin reads its config as it would live; no data, and
            // state that goes nowhere.
            if let Err(errors) = super::bind::bind(
                path,
                &policy,
                &plugin,
                Arc::new(NoData),
                Arc::new(MemoryStates::default()),
            ) {
                report.errors.extend(errors);
                continue;
            }
        }
        report.policies.push(policy.name().to_owned());
    }
    report
}
