//! Checks of what concerns failures in a policy: the `recovery:` block and
//! `on_failure` (recovery policies only), the failure scope
//! (`scope.operations`, `scope.labels`, `scope.classes`: recovery policies
//! and policies triggered by `failure-reported`), and the triggers a
//! recovery policy may have.

use crate::schema::{EventKind, PolicyKind, PolicySpec, Trigger};

/// Checks what concerns failures: the `recovery:` block and `on_failure`
/// (recovery policies only), the failure scope (recovery policies, and
/// policies triggered by `event: failure-reported`), and the triggers a
/// recovery policy can have. Returns the recovery options of a recovery
/// policy.
pub(crate) fn check(
    spec: &PolicySpec,
    trigger: &Trigger,
    fail: &mut impl FnMut(&str, String),
) -> Option<crate::recovery::RecoveryOptions> {
    let scope = &spec.scope;
    let on_failures = matches!(trigger, Trigger::Event(EventKind::FailureReported));
    if spec.kind != PolicyKind::Recovery {
        for (field, set) in [
            ("recovery", spec.recovery.is_some()),
            ("on_failure", spec.on_failure.is_some()),
        ] {
            if set {
                fail(
                    field,
                    format!(
                        "`{field}` applies to recovery policies only; this one is of kind `{}`",
                        spec.kind.name()
                    ),
                );
            }
        }
        let failure_scope =
            !scope.operations.is_empty() || !scope.labels.is_empty() || !scope.classes.is_empty();
        if failure_scope && !on_failures {
            fail(
                "scope",
                "`scope.operations`, `scope.labels` and `scope.classes` choose failures; they apply to recovery policies and to policies with `trigger: {event: failure-reported}`".into(),
            );
        }
        if on_failures {
            // Checked for their syntax; the runtime filters with them.
            crate::recovery::check(None, scope, fail);
        }
        return None;
    }
    match trigger {
        Trigger::Event(EventKind::FailureReported) | Trigger::Manual => {}
        _ => fail(
            "trigger",
            "a recovery policy decides when a failure of an operation in its scope is reported: its trigger is `{event: failure-reported}` (the default) or `manual` (only `POST /api/v1/policies/NAME/run`)".into(),
        ),
    }
    if !scope.classes.is_empty() {
        fail(
            "scope.classes",
            "a recovery policy is chosen before the failure is classified (its `recovery.classify` rules take part), so it cannot be chosen by class; decide per class in the plugin's config".into(),
        );
    }
    for (field, set) in [
        ("scope.paths", !scope.paths.is_empty()),
        ("scope.kinds", !scope.kinds.is_empty()),
        ("scope.signals", !scope.signals.is_empty()),
        ("scope.processes", scope.processes.is_some()),
        ("retries", spec.retries.is_some()),
    ] {
        if set {
            fail(
                field,
                format!(
                    "`{field}` has no meaning for a recovery policy: it acts on nothing but its breakers"
                ),
            );
        }
    }
    Some(crate::recovery::check(spec.recovery.as_ref(), scope, fail))
}
