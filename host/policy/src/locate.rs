//! Where each node of a YAML document is, by path (`policies[2].trigger.cron`),
//! so errors found after parsing — a duplicate name, a cron that never fires, a
//! missing plugin — still point at a line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Positions (1-based line and column) of the nodes of one document.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Locations {
    values: HashMap<String, (usize, usize)>,
}

impl Locations {
    /// Indexes `text`. A document that does not parse yields no positions (its
    /// syntax error is reported by the deserializer with its own position).
    pub(crate) fn of(text: &str) -> Locations {
        let mut b = Builder::default();
        let _ = Parser::new_from_str(text).load(&mut b, false);
        Locations { values: b.values }
    }

    /// Returns where the node at `path` is, or the nearest enclosing node that
    /// has a position.
    pub(crate) fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    values: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// Returns the path of the node about to be read, or `None` when the next
    /// scalar is a mapping key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k) }) => Some(if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            }),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }

    /// Marks the current node as read.
    fn done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => match self.next_path() {
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let child = if path.is_empty() {
                            value.clone()
                        } else {
                            format!("{path}.{value}")
                        };
                        // Until the value is seen, the key stands for it.
                        self.values.insert(child, pos);
                        *key = Some(value);
                    }
                }
                Some(path) => {
                    self.values.insert(path, pos);
                    self.done();
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.values.entry(path.clone()).or_insert(pos);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.done();
            }
            Event::Alias(_) => self.done(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nodes_by_path() {
        let text = "policies:\n  - name: a\n    trigger:\n      cron: \"0 0 30 2 *\"\n  - name: b\n    labels: {team: x}\n";
        let l = Locations::of(text);
        assert_eq!(l.find("policies[0].name"), Some((2, 11)));
        assert_eq!(l.find("policies[0].trigger.cron"), Some((4, 13)));
        assert_eq!(l.find("policies[1].name"), Some((5, 11)));
        assert_eq!(l.find("policies[1].labels.team"), Some((6, 20)));
        // Unknown paths fall back to the nearest known parent.
        assert_eq!(l.find("policies[1].scope.paths[3]").map(|p| p.0), Some(5));
    }
}
