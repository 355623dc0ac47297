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
    literal: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.into(),
            literal: !pattern.contains(['*', '?']),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The pattern itself when it has no wildcard (an exact name).
    pub fn literal(&self) -> Option<&str> {
        self.literal.then_some(&*self.pattern)
    }

    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return *self.pattern == *text;
        }
        // Iterative matching with one backtrack point (the last `*`): linear in practice,
        // never exponential.
        let (p, t): (Vec<char>, Vec<char>) =
            (self.pattern.chars().collect(), text.chars().collect());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some('?') => {
                    pi += 1;
                    ti += 1;
                }
                Some(&c) if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

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
        ];
        for (pattern, text, want) in cases {
            assert_eq!(Glob::new(pattern).matches(text), want, "{pattern} ~ {text}");
        }
        assert_eq!(Glob::new("web-1").literal(), Some("web-1"));
        assert_eq!(Glob::new("web-*").literal(), None);
    }
}
