//! Turns a task script into tokens, each with the line and column it starts at (1-based, columns
//! counted in characters), so that every later error can point at the text.

use super::{Pos, ScriptError};

/// One token of a script.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Ident(String),
    Number(f64),
    /// A number with a unit (`10s`, `500ms`, `1h`), in milliseconds.
    Duration(i64),
    Str(String),
    Pipe,
    Open,
    Close,
    Comma,
    Colon,
    Assign,
    Semicolon,
    Cmp(CmpOp),
    Arith(ArithOp),
    End,
}

/// A comparison in a condition (`< 30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn holds(self, value: f64, against: f64) -> bool {
        match self {
            CmpOp::Lt => value < against,
            CmpOp::Le => value <= against,
            CmpOp::Gt => value > against,
            CmpOp::Ge => value >= against,
            CmpOp::Eq => value == against,
            CmpOp::Ne => value != against,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// Arithmetic between two streams of points, or a stream and a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    /// `None` where the result is not a number (a division by zero).
    pub fn apply(self, a: f64, b: f64) -> Option<f64> {
        let r = match self {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div => a / b,
        };
        r.is_finite().then_some(r)
    }
}

/// What a token is called in an error message.
pub(crate) fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("{name:?}"),
        Token::Number(n) => format!("the number {n}"),
        Token::Duration(ms) => format!("the duration {ms}ms"),
        Token::Str(s) => format!("the string {s:?}"),
        Token::Pipe => "\"|\"".into(),
        Token::Open => "\"(\"".into(),
        Token::Close => "\")\"".into(),
        Token::Comma => "\",\"".into(),
        Token::Colon => "\":\"".into(),
        Token::Assign => "\"=\"".into(),
        Token::Semicolon => "\";\"".into(),
        Token::Cmp(op) => format!("{:?}", op.as_str()),
        Token::Arith(ArithOp::Add) => "\"+\"".into(),
        Token::Arith(ArithOp::Sub) => "\"-\"".into(),
        Token::Arith(ArithOp::Mul) => "\"*\"".into(),
        Token::Arith(ArithOp::Div) => "\"/\"".into(),
        Token::End => "the end of the script".into(),
    }
}

/// Units a duration may carry, longest first so that `ms` is not read as `m`.
const UNITS: [(&str, i64); 6] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

/// The tokens of `text`, ending with [`Token::End`].
pub(crate) fn tokens(text: &str) -> Result<Vec<(Token, Pos)>, ScriptError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        let start = i;
        let token = match c {
            '\n' => {
                i += 1;
                line += 1;
                col = 1;
                continue;
            }
            c if c.is_whitespace() => {
                i += 1;
                col += 1;
                continue;
            }
            '#' => {
                skip_comment(&chars, &mut i);
                col += (i - start) as u32;
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                skip_comment(&chars, &mut i);
                col += (i - start) as u32;
                continue;
            }
            '|' => one(&mut i, Token::Pipe),
            '(' => one(&mut i, Token::Open),
            ')' => one(&mut i, Token::Close),
            ',' => one(&mut i, Token::Comma),
            ':' => one(&mut i, Token::Colon),
            ';' => one(&mut i, Token::Semicolon),
            '+' => one(&mut i, Token::Arith(ArithOp::Add)),
            '-' => one(&mut i, Token::Arith(ArithOp::Sub)),
            '*' => one(&mut i, Token::Arith(ArithOp::Mul)),
            '/' => one(&mut i, Token::Arith(ArithOp::Div)),
            '<' | '>' | '=' | '!' => comparison(&chars, &mut i, pos)?,
            '"' | '\'' => string(&chars, &mut i, pos)?,
            c if c.is_ascii_digit() || (c == '.' && next_is_digit(&chars, i)) => {
                number(&chars, &mut i, pos)?
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                Token::Ident(chars[start..i].iter().collect())
            }
            other => return Err(ScriptError::at(pos, format!("unexpected {other:?}"))),
        };
        // Strings may span lines.
        for &ch in &chars[start..i] {
            if ch == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        out.push((token, pos));
    }
    out.push((Token::End, Pos { line, col }));
    Ok(out)
}

fn one(i: &mut usize, token: Token) -> Token {
    *i += 1;
    token
}

fn skip_comment(chars: &[char], i: &mut usize) {
    while *i < chars.len() && chars[*i] != '\n' {
        *i += 1;
    }
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

/// Letters, digits, `_` and `.` (tag keys and metric names are dotted: `tag.dc`, `cpu.idle`).
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn comparison(chars: &[char], i: &mut usize, pos: Pos) -> Result<Token, ScriptError> {
    let c = chars[*i];
    let equals_next = chars.get(*i + 1) == Some(&'=');
    *i += 1 + usize::from(equals_next);
    Ok(match (c, equals_next) {
        ('<', false) => Token::Cmp(CmpOp::Lt),
        ('<', true) => Token::Cmp(CmpOp::Le),
        ('>', false) => Token::Cmp(CmpOp::Gt),
        ('>', true) => Token::Cmp(CmpOp::Ge),
        ('=', true) => Token::Cmp(CmpOp::Eq),
        ('=', false) => Token::Assign,
        ('!', true) => Token::Cmp(CmpOp::Ne),
        _ => return Err(ScriptError::at(pos, "\"!\" must be followed by \"=\"")),
    })
}

fn string(chars: &[char], i: &mut usize, pos: Pos) -> Result<Token, ScriptError> {
    let quote = chars[*i];
    *i += 1;
    let mut s = String::new();
    while *i < chars.len() {
        match chars[*i] {
            c if c == quote => {
                *i += 1;
                return Ok(Token::Str(s));
            }
            '\\' if *i + 1 < chars.len() => {
                s.push(chars[*i + 1]);
                *i += 2;
            }
            c => {
                s.push(c);
                *i += 1;
            }
        }
    }
    Err(ScriptError::at(pos, "this string is never closed"))
}

fn number(chars: &[char], i: &mut usize, pos: Pos) -> Result<Token, ScriptError> {
    let start = *i;
    while *i < chars.len() && (chars[*i].is_ascii_digit() || chars[*i] == '.') {
        *i += 1;
    }
    if *i < chars.len() && matches!(chars[*i], 'e' | 'E') && exponent_follows(chars, *i) {
        *i += 2;
        while *i < chars.len() && chars[*i].is_ascii_digit() {
            *i += 1;
        }
    }
    let digits: String = chars[start..*i].iter().collect();
    let value: f64 = digits
        .parse()
        .map_err(|_| ScriptError::at(pos, format!("{digits:?} is not a number")))?;
    let unit_start = *i;
    while *i < chars.len() && chars[*i].is_ascii_alphabetic() {
        *i += 1;
    }
    if unit_start == *i {
        return Ok(Token::Number(value));
    }
    let unit: String = chars[unit_start..*i].iter().collect();
    let Some((_, ms)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(ScriptError::at(
            pos,
            format!("{digits}{unit}: unknown unit {unit:?}; durations take ms, s, m, h, d or w"),
        ));
    };
    let total = value * *ms as f64;
    if total.fract() != 0.0 || total < 1.0 {
        return Err(ScriptError::at(
            pos,
            format!("{digits}{unit} is not a whole number of milliseconds"),
        ));
    }
    Ok(Token::Duration(total as i64))
}

/// `1e3` or `1e-3`: an exponent, not the unit of a duration.
fn exponent_follows(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some(c) if c.is_ascii_digit() => true,
        Some('-' | '+') => chars.get(i + 2).is_some_and(char::is_ascii_digit),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Token> {
        tokens(text).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn durations_numbers_comparisons_and_names() {
        assert_eq!(
            kinds("window(period: 10s, every: 500ms) | filter(<= -2.5e1) // note"),
            vec![
                Token::Ident("window".into()),
                Token::Open,
                Token::Ident("period".into()),
                Token::Colon,
                Token::Duration(10_000),
                Token::Comma,
                Token::Ident("every".into()),
                Token::Colon,
                Token::Duration(500),
                Token::Close,
                Token::Pipe,
                Token::Ident("filter".into()),
                Token::Open,
                Token::Cmp(CmpOp::Le),
                Token::Arith(ArithOp::Sub),
                Token::Number(25.0),
                Token::Close,
                Token::End,
            ]
        );
        assert_eq!(
            kinds("tag.dc 'eu' != 1h"),
            vec![
                Token::Ident("tag.dc".into()),
                Token::Str("eu".into()),
                Token::Cmp(CmpOp::Ne),
                Token::Duration(3_600_000),
                Token::End
            ]
        );
    }

    #[test]
    fn positions_count_lines_and_columns() {
        let t = tokens("stream\n  | mean()\n# done\n").unwrap();
        assert_eq!(t[0].1, Pos { line: 1, col: 1 });
        assert_eq!(t[1].1, Pos { line: 2, col: 3 });
        assert_eq!(t[2].1, Pos { line: 2, col: 5 });
        assert_eq!(t.last().unwrap().1.line, 4);
    }

    #[test]
    fn errors_point_at_the_text() {
        let e = tokens("stream\n | window(10x)").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 11 });
        assert!(e.message.contains("unknown unit \"x\""), "{e}");
        assert_eq!(
            tokens("emit(\"abc").unwrap_err().to_string(),
            "line 1, column 6: this string is never closed"
        );
        assert!(tokens("a ! b").unwrap_err().message.contains("!"));
        assert!(tokens("1.5ms").unwrap_err().message.contains("whole"));
    }
}
