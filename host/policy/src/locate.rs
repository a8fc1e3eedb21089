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

/// Nodes deeper than this are not indexed: every error Warden reports is
/// about a field a few levels down (`policies[2].notify[0].url`), and
/// deeper ones (inside `config:`) fall back to their nearest indexed parent.
const MAX_DEPTH: usize = 8;

/// Keys longer than this are not indexed (nor anything under them): no
/// field of the format is that long, and a path string per node must not
/// carry a long key into every descendant.
const MAX_KEY: usize = 64;

/// Where a mapping is in reading its entries.
enum Key {
    /// The next scalar is a key.
    Waiting,
    /// The key of the value being read, if it is indexed.
    Read(Option<String>),
}

enum Frame {
    Map { path: Option<String>, key: Key },
    Seq { path: Option<String>, index: usize },
}

/// Builds the index. Paths are only built for nodes at most [`MAX_DEPTH`]
/// deep under keys of at most [`MAX_KEY`] bytes, so the index is linear in
/// the document's size, however deep or wide it is.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    values: HashMap<String, (usize, usize)>,
}

fn child(parent: &Option<String>, segment: std::fmt::Arguments<'_>) -> Option<String> {
    let parent = parent.as_ref()?;
    Some(if parent.is_empty() {
        segment.to_string().trim_start_matches('.').to_owned()
    } else {
        format!("{parent}{segment}")
    })
}

impl Builder {
    /// Returns the path of the node about to be read (`Some(None)` if it is
    /// not indexed), or `None` when the next scalar is a mapping key.
    fn next_path(&self) -> Option<Option<String>> {
        if self.stack.len() > MAX_DEPTH {
            return Some(None);
        }
        match self.stack.last() {
            None => Some(Some(String::new())),
            Some(Frame::Map {
                key: Key::Waiting, ..
            }) => None,
            Some(Frame::Map {
                path,
                key: Key::Read(k),
            }) => Some(k.as_ref().and_then(|k| child(path, format_args!(".{k}")))),
            Some(Frame::Seq { path, index }) => Some(child(path, format_args!("[{index}]"))),
        }
    }

    /// Marks the current node as read.
    fn done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = Key::Waiting,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        let deep = self.stack.len() > MAX_DEPTH;
        match ev {
            Event::Scalar(value, ..) => match self.next_path() {
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let indexed = (!deep && value.len() <= MAX_KEY).then_some(value);
                        // Until the value is seen, the key stands for it.
                        if let Some(k) = &indexed
                            && let Some(child) = child(path, format_args!(".{k}"))
                        {
                            self.values.insert(child, pos);
                        }
                        *key = Key::Read(indexed);
                    }
                }
                Some(path) => {
                    if let Some(path) = path {
                        self.values.insert(path, pos);
                    }
                    self.done();
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or(None);
                if let Some(p) = &path {
                    self.values.entry(p.clone()).or_insert(pos);
                }
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map {
                        path,
                        key: Key::Waiting,
                    }
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

/// Returns the line (1-based) where the second document of `text` starts,
/// if it has more than one.
pub(crate) fn second_document(text: &str) -> Option<usize> {
    #[derive(Default)]
    struct Docs {
        starts: usize,
        second: Option<usize>,
    }
    impl MarkedEventReceiver for Docs {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            if matches!(ev, Event::DocumentStart) {
                self.starts += 1;
                if self.starts == 2 && self.second.is_none() {
                    self.second = Some(mark.line());
                }
            }
        }
    }
    let mut d = Docs::default();
    let _ = Parser::new_from_str(text).load(&mut d, true);
    d.second
}

impl Locations {
    /// Returns how many bytes the index holds, for tests of its bound.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.values.keys().map(|k| k.len() + 16).sum()
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

    #[test]
    fn the_index_is_linear_in_the_document_however_long_its_keys() {
        // One long key over many values: a path string per value that
        // repeated the key would make the index quadratic.
        let key = "k".repeat(10_000);
        let values = vec!["1"; 10_000].join(", ");
        let text = format!("policies:\n  - name: a\n    config:\n      {key}: [{values}]\n");
        let l = Locations::of(&text);
        assert!(
            l.bytes() <= 4 * text.len(),
            "{} bytes of index for {} bytes of text",
            l.bytes(),
            text.len()
        );
        // What is not indexed falls back to where it is.
        let config = l.find("policies[0].config");
        assert!(config.is_some());
        assert_eq!(l.find(&format!("policies[0].config.{key}[5]")), config);
        // Deep nesting, too.
        let deep = format!(
            "policies:\n  - config: {}1{}\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        let l = Locations::of(&deep);
        assert!(l.bytes() <= 4 * deep.len(), "{}", l.bytes());
    }

    #[test]
    fn the_second_document_is_found() {
        assert_eq!(second_document("policies: []\n"), None);
        assert_eq!(
            second_document("policies: []\n---\npolicies: []\n"),
            Some(2)
        );
        assert_eq!(second_document("---\na: 1\n...\n---\nb: 2\n"), Some(4));
    }
}
