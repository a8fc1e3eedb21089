//! The lines of the snapshot and the log ([`Rec`]), how a loaded one is
//! applied to the registry, and how waiting changes become lines.

use super::*;

/// One line of the snapshot or the log.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Rec<'a> {
    /// First line of both files.
    Head { v: u32, generation: u64, next: u64 },
    /// A resource (as registered, or as it stands in a snapshot).
    Reg(#[serde(borrow)] RegRec<'a>),
    /// Used at `at`.
    Touch { seq: u64, at: TimestampMs },
    /// Released.
    Rel {
        seq: u64,
        at: TimestampMs,
        action: Action,
        #[serde(borrow)]
        by: Cow<'a, str>,
    },
    /// Found an orphan.
    Orphan { seq: u64, at: TimestampMs },
    /// `seq` depends on `on`: in a snapshot after every resource (a
    /// resource may depend on a newer one), in a log when it was made.
    Dep { seq: u64, on: u64 },
    /// `seq` no longer depends on `on`.
    Undep { seq: u64, on: u64 },
    /// A remembered policy release (snapshot only).
    Tomb {
        seq: u64,
        at: TimestampMs,
        #[serde(borrow)]
        policy: Cow<'a, str>,
    },
    /// An audit event.
    Audit {
        seq: u64,
        at: TimestampMs,
        action: Action,
        #[serde(borrow)]
        by: Cow<'a, str>,
        #[serde(borrow)]
        name: Cow<'a, str>,
        /// The other resource of the event, if any (absent before
        /// dependencies were).
        #[serde(default, skip_serializing_if = "is_zero")]
        on: u64,
    },
    /// Last line of a snapshot: how many lines came before it.
    End { records: u64 },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct RegRec<'a> {
    seq: u64,
    kind: ResourceKind,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    owner: Cow<'a, str>,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    /// The owner process's start time, 0 if none.
    #[serde(default, skip_serializing_if = "is_zero")]
    start: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    created: TimestampMs,
    accessed: TimestampMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audited: Option<TimestampMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    orphan: Option<TimestampMs>,
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<'a> RegRec<'a> {
    pub(super) fn of(e: &'a Entry) -> Self {
        Self::with_text(e, e.text.as_ref())
    }

    /// The record of `e` whose name and labels are `text`.
    pub(super) fn with_text(e: &'a Entry, text: TextRef<'a>) -> Self {
        RegRec {
            seq: e.seq,
            kind: e.kind,
            name: Cow::Borrowed(text.name()),
            owner: Cow::Borrowed(&e.owner),
            size: e.size_bytes,
            pid: e.pid(),
            start: e.start_ticks,
            labels: text
                .labels()
                .map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
                .collect(),
            ttl: e.ttl(),
            created: e.created_ms,
            accessed: e.accessed_ms,
            audited: (e.audited_ms != NEVER).then_some(e.audited_ms),
            orphan: e.orphan(),
        }
    }
}

/// Applies one record to the registry being loaded.
pub(super) fn apply(g: &mut Inner, rec: Rec<'_>) -> Result<(), String> {
    match rec {
        Rec::Head { .. } => return Err("a second head line".into()),
        Rec::End { .. } => return Err("an end line before the end".into()),
        Rec::Reg(r) => {
            if g.entries.last_seq().is_some_and(|l| l >= r.seq) || r.seq == 0 {
                return Err(format!("resource {} out of order", r.seq));
            }
            let owner = g.owners.get(&r.owner);
            g.insert(Entry {
                seq: r.seq,
                created_ms: r.created,
                accessed_ms: r.accessed,
                audited_ms: r.audited.unwrap_or(NEVER),
                size_bytes: r.size,
                ttl_ms: r.ttl.unwrap_or(NO_TTL).min(NO_TTL - 1),
                orphan_since: r.orphan.unwrap_or(NOT_ORPHAN),
                start_ticks: r.start,
                owner,
                text: Text::new(&r.name, r.labels.iter().map(|(k, v)| (&**k, &**v))),
                pid: r.pid.unwrap_or(0),
                kind: r.kind,
                flags: 0,
            });
        }
        Rec::Touch { seq, at } => {
            if let Some(e) = g.entries.get_mut(seq) {
                e.accessed_ms = e.accessed_ms.max(at);
            }
        }
        Rec::Rel {
            seq,
            at,
            action,
            by,
        } => {
            if let Some(e) = g.remove(seq) {
                g.owners.put_back(e.owner);
            }
            // A cascade a policy started is the policy's release too.
            let policy = match action {
                Action::PolicyRelease => Some(by.strip_prefix("policy:").unwrap_or(&by)),
                Action::CascadeRelease => by.strip_prefix("policy:"),
                _ => None,
            };
            if let Some(p) = policy {
                g.remember(seq, p, at);
            }
        }
        Rec::Orphan { seq, at } => {
            if let Some(e) = g.entries.get_mut(seq)
                && e.orphan_since == NOT_ORPHAN
            {
                e.orphan_since = at;
            }
        }
        // Either end gone: released later in the same log (or earlier,
        // and this is a stale line of no consequence). Not bounded by
        // `max_dependencies` here: what was accepted stays, as resources
        // do past a lowered `max_tracked`.
        Rec::Dep { seq, on } => {
            if g.entries.get(seq).is_some() && g.entries.get(on).is_some() {
                g.graph.add(seq, on);
            }
        }
        Rec::Undep { seq, on } => {
            g.graph.remove(seq, on);
        }
        Rec::Tomb { seq, at, policy } => g.remember(seq, &policy, at),
        Rec::Audit {
            seq,
            at,
            action,
            by,
            name,
            on,
        } => g.trail.push(Event {
            at_ms: at,
            seq,
            name: Box::from(&*name),
            action,
            actor: Arc::from(&*by),
            other: on,
        }),
    }
    Ok(())
}

pub(super) fn push_line(buf: &mut Vec<u8>, rec: &Rec<'_>) {
    // Serializing these records cannot fail: no maps with non-string keys,
    // no non-finite floats.
    if serde_json::to_writer(&mut *buf, rec).is_ok() {
        buf.push(b'\n');
    }
}

/// A change waiting in the registry, taken out under its lock (a
/// registration as a copy of its entry: the copy costs an allocation, its
/// JSON line about ten times that), so that the lock is not held while it
/// is written.
pub(super) enum Change {
    Reg(Entry),
    /// A release, an orphan or a dependency, as it waited.
    Waiting(Pending),
    Touch {
        seq: u64,
        at_ms: TimestampMs,
    },
    Audit(Event),
}

/// Takes the changes waiting in `g`, in the order they are to be logged.
pub(super) fn take_changes(g: &mut Inner) -> Vec<Change> {
    let pending = g.pending.as_mut().map(std::mem::take).unwrap_or_default();
    let mut out = Vec::with_capacity(pending.len() + g.touched.len() + g.trail.unsaved);
    for p in pending {
        out.push(match p {
            Pending::Reg(seq) => {
                // Released since: its release record is enough.
                let Some(e) = g.entries.get(seq) else {
                    continue;
                };
                Change::Reg(e.clone())
            }
            p => Change::Waiting(p),
        });
    }
    for seq in std::mem::take(&mut g.touched) {
        if let Some(e) = g.entries.get_mut(seq) {
            e.flags &= !store::TOUCHED;
            out.push(Change::Touch {
                seq,
                at_ms: e.accessed_ms,
            });
        }
    }
    out.extend(g.trail.unsaved().cloned().map(Change::Audit));
    g.trail.unsaved = 0;
    out
}

/// Writes `changes` into `out` as log lines; returns how many.
pub(super) fn write_changes(changes: &[Change], out: &mut Vec<u8>) -> u64 {
    let mut n = 0;
    for c in changes {
        let rec = match c {
            Change::Reg(e) => Rec::Reg(RegRec::of(e)),
            Change::Waiting(p) => match p {
                // `take_changes` makes each a `Change::Reg`, with its entry.
                Pending::Reg(_) => continue,
                Pending::Rel {
                    seq,
                    at_ms,
                    action,
                    actor,
                } => Rec::Rel {
                    seq: *seq,
                    at: *at_ms,
                    action: *action,
                    by: Cow::Borrowed(actor),
                },
                Pending::Orphan { seq, at_ms } => Rec::Orphan {
                    seq: *seq,
                    at: *at_ms,
                },
                Pending::Dep { seq, on, added } => {
                    if *added {
                        Rec::Dep { seq: *seq, on: *on }
                    } else {
                        Rec::Undep { seq: *seq, on: *on }
                    }
                }
            },
            Change::Touch { seq, at_ms } => Rec::Touch {
                seq: *seq,
                at: *at_ms,
            },
            Change::Audit(e) => audit_rec(e),
        };
        push_line(out, &rec);
        n += 1;
    }
    n
}

pub(super) fn audit_rec(e: &Event) -> Rec<'_> {
    Rec::Audit {
        seq: e.seq,
        at: e.at_ms,
        action: e.action,
        by: Cow::Borrowed(&e.actor),
        name: Cow::Borrowed(&e.name),
        on: e.other,
    }
}
