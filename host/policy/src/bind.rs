//! Binding a policy to its compiled plugin: the evaluator with the policy's
//! limits, isolation and plugin state, and the plugin's `init` run with the
//! policy's config — by `warden check` and by a reload before the policy goes
//! live — its config errors located at their line and column in the file.

use std::path::Path;
use std::sync::Arc;

use super::parse::{Policy, PolicyError};
use warden_plugin_host::{
    DataSource, EvalFailure, Evaluator, Isolation, Plugin, PluginStateStore, PolicyId,
};

/// Returns `plugin` bound to `policy` of `file`, its `init` run and passed.
/// `warden check`, a reload and `warden replay` all bind through here.
pub fn bind(
    file: &Path,
    policy: &Policy,
    plugin: &Arc<Plugin>,
    data: Arc<dyn DataSource>,
    states: Arc<dyn PluginStateStore>,
) -> Result<Evaluator, Vec<PolicyError>> {
    let at_policy = |message: String| vec![PolicyError::at_policy(file, policy, message)];
    let info = plugin.info();
    if info.wit_version == "0.1.0" {
        let spec = &policy.spec;
        let asked = [
            (
                "isolation: warm",
                spec.isolation == Some(super::schema::IsolationMode::Warm),
            ),
            ("recycle_after", spec.recycle_after.is_some()),
            ("state_limit", spec.state_limit.is_some()),
        ];
        if let Some((field, _)) = asked.iter().find(|(_, set)| *set) {
            return Err(at_policy(format!(
                "`{field}` needs a plugin built against WIT 0.2.0 or later, and `{}` is built against 0.1.0, which runs every evaluation in a fresh instance and keeps no state; rebuild it with warden-sdk 0.2 or remove `{}`",
                info.name,
                field.split(':').next().unwrap_or(field)
            )));
        }
    }
    let isolation = if info.wit_version == "0.1.0" {
        Isolation::Fresh
    } else {
        policy.isolation
    };
    let evaluator = Evaluator::new(
        Arc::clone(plugin),
        policy.name(),
        &policy.config,
        policy.limits,
        data,
    )
    .with_isolation(isolation)
    .with_state(
        states,
        PolicyId {
            file: file.to_path_buf(),
            name: policy.name().to_owned(),
        },
        policy.state_limit,
    );
    match evaluator.prepare() {
        Ok(()) => Ok(evaluator),
        Err(e) => match e.failure {
            EvalFailure::InvalidConfig(errors) => Err(errors
                .iter()
                .map(|c| {
                    let pos = policy.locate_config(&c.path);
                    PolicyError {
                        file: file.to_path_buf(),
                        line: pos.map(|p| p.0).or(Some(policy.line)),
                        column: pos.map(|p| p.1),
                        policy: Some(policy.name().to_owned()),
                        message: if c.path.is_empty() {
                            format!("config: {}", c.message)
                        } else {
                            format!("{}: {}", c.path, c.message)
                        },
                    }
                })
                .collect()),
            failure => Err(at_policy(format!(
                "plugin `{}` failed while reading its config (`init`): {failure}",
                info.name
            ))),
        },
    }
}
