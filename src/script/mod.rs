//! The task language: a script chains stages after `stream` or `batch` (`stream |
//! window(period: 10s) | groupby(host) | mean() | alert(crit: < 30)`), binds pipelines with
//! `let`, and combines aggregated points with arithmetic. Pure: [`compile`] turns the text into
//! a checked [`Program`] or a [`ScriptError`] that points at a line and column. The grammar, in
//! EBNF, is in `docs/tasks.md`; the lexer and the recursive-descent parser follow it rule by rule.

mod compile;
mod lexer;
mod parser;

pub use compile::{
    compile, Aggregate, AlertSpec, Field, Flow, Level, LevelRule, Matcher, Program, Reduction,
    Sink, SourceKind, Window, MAX_WINDOWS_PER_EVENT,
};
pub use lexer::{ArithOp, CmpOp};
pub use parser::Condition;

/// A place in a script: line and column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// What is wrong with a script, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {}, column {}: {message}", pos.line, pos.col)]
pub struct ScriptError {
    pub pos: Pos,
    pub message: String,
}

impl ScriptError {
    pub(crate) fn at(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

/// A shell-style pattern: `*` matches any run of characters, `?` any one; anything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<str>,
    /// The text before the first wildcard, which every match starts with.
    prefix_len: usize,
    literal: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let prefix_len = pattern.find(['*', '?']).unwrap_or(pattern.len());
        Self {
            pattern: pattern.into(),
            prefix_len,
            literal: prefix_len == pattern.len(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The pattern itself when it has no wildcard (an exact name).
    pub fn literal(&self) -> Option<&str> {
        self.literal.then_some(&*self.pattern)
    }

    /// Whether `text` matches, without allocating: the literal prefix first, then the rest byte
    /// by byte (`?` takes one whole UTF-8 character) with one backtrack point (the last `*`),
    /// linear in practice and never exponential.
    pub fn matches(&self, text: &str) -> bool {
        let prefix = &self.pattern[..self.prefix_len];
        if self.literal {
            return prefix == text;
        }
        let Some(rest) = text.strip_prefix(prefix) else {
            return false;
        };
        let (p, t) = (self.pattern[self.prefix_len..].as_bytes(), rest.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(b'?') => {
                    pi += 1;
                    ti += utf8_len(t[ti]);
                }
                Some(&c) if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        // The star takes one more character.
                        let next = st + utf8_len(t[st]);
                        pi = sp + 1;
                        ti = next;
                        star = Some((sp, next));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// The length of the UTF-8 character starting with `first`.
fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;
    use proptest::prelude::*;

    /// The definition, by recursion over characters (exponential, fine for short strings).
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn globs_match_as_defined(p in "[ab*?é]{0,7}", t in "[abé]{0,8}") {
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(Glob::new(&p).matches(&t), reference(&pc, &tc), "{} ~ {}", p, t);
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        let cases = [
            ("cpu.*", "cpu.idle", true),
            ("cpu.*", "cpu", false),
            ("*.idle", "cpu.idle", true),
            ("c?u*e", "cpu.idle", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("web-1", "web-1", true),
            ("web-1", "web-10", false),
            ("*", "", true),
            ("é*", "été", true),
            ("?t?", "été", true),
            ("*é", "été", true),
            ("a?c", "aéc", true),
            ("a?c", "aéèc", false),
            ("other.1.*", "svc.requests.1", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(Glob::new(pattern).matches(text), want, "{pattern} ~ {text}");
        }
        assert_eq!(Glob::new("web-1").literal(), Some("web-1"));
        assert_eq!(Glob::new("web-*").literal(), None);
    }
}
