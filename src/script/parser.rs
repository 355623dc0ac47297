//! Reads the tokens of a script into its syntax tree, following the grammar in `docs/tasks.md`
//! (recursive descent, one token of look-ahead). Nothing is checked here beyond the grammar:
//! what each stage accepts is [`super::compile`]'s business.

use super::lexer::{describe, tokens, ArithOp, CmpOp, Token};
use super::{Pos, ScriptError};

/// A whole script: bindings and the pipelines that end in a sink.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Script {
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    Let { name: String, pos: Pos, value: Expr },
    Sink(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `stream` or `batch`.
    Source {
        name: String,
        pos: Pos,
    },
    Var {
        name: String,
        pos: Pos,
    },
    Number {
        value: f64,
        pos: Pos,
    },
    Binary {
        op: ArithOp,
        pos: Pos,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Pipe {
        input: Box<Expr>,
        stage: Stage,
    },
}

impl Expr {
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Expr::Source { pos, .. }
            | Expr::Var { pos, .. }
            | Expr::Number { pos, .. }
            | Expr::Binary { pos, .. } => *pos,
            Expr::Pipe { stage, .. } => stage.pos,
        }
    }
}

/// `name(args)`; the parentheses may be left out when there are no arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stage {
    pub name: String,
    pub pos: Pos,
    pub args: Vec<Arg>,
}

/// `key: value` or a bare value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arg {
    pub key: Option<String>,
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Duration(i64),
    Str(String),
    Ident(String),
    Bool(bool),
    Cond(Condition),
}

/// `< 30`, `> 10 and < 20`, `< 5 or > 95`; `and` binds tighter than `or`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Cmp(CmpOp, f64),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

impl Condition {
    pub fn holds(&self, value: f64) -> bool {
        match self {
            Condition::Cmp(op, against) => op.holds(value, *against),
            Condition::And(a, b) => a.holds(value) && b.holds(value),
            Condition::Or(a, b) => a.holds(value) || b.holds(value),
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::Cmp(op, n) => write!(f, "{} {n}", op.as_str()),
            Condition::And(a, b) => write!(f, "{a} and {b}"),
            Condition::Or(a, b) => write!(f, "{a} or {b}"),
        }
    }
}

pub(crate) fn parse(text: &str) -> Result<Script, ScriptError> {
    let mut p = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    let mut statements = Vec::new();
    loop {
        while p.eat(&Token::Semicolon) {}
        if p.peek() == &Token::End {
            break;
        }
        statements.push(p.statement()?);
    }
    if statements.is_empty() {
        return Err(ScriptError::at(
            Pos { line: 1, col: 1 },
            "the script is empty: write a pipeline such as stream | window(period: 10s) | mean() | alert(crit: < 30)",
        ));
    }
    Ok(Script { statements })
}

struct Parser {
    tokens: Vec<(Token, Pos)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].0
    }

    fn pos(&self) -> Pos {
        self.tokens[self.at].1
    }

    fn next(&mut self) -> (Token, Pos) {
        let t = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == token {
            self.next();
            true
        } else {
            false
        }
    }

    fn expected(&self, what: &str) -> ScriptError {
        ScriptError::at(
            self.pos(),
            format!("expected {what}, found {}", describe(self.peek())),
        )
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<(), ScriptError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn statement(&mut self) -> Result<Statement, ScriptError> {
        if self.peek() == &Token::Ident("let".into()) {
            self.next();
            let (name, pos) = match self.next() {
                (Token::Ident(name), pos) if !is_reserved(&name) => (name, pos),
                (t, pos) => {
                    return Err(ScriptError::at(
                        pos,
                        format!("expected a name after let, found {}", describe(&t)),
                    ))
                }
            };
            self.expect(&Token::Assign, "\"=\" after the name")?;
            let value = self.expression()?;
            return Ok(Statement::Let { name, pos, value });
        }
        Ok(Statement::Sink(self.expression()?))
    }

    /// expression = arithmetic { "|" stage }
    fn expression(&mut self) -> Result<Expr, ScriptError> {
        let mut expr = self.arithmetic()?;
        while self.eat(&Token::Pipe) {
            let stage = self.stage()?;
            expr = Expr::Pipe {
                input: Box::new(expr),
                stage,
            };
        }
        Ok(expr)
    }

    /// arithmetic = term { ("+" | "-") term }
    fn arithmetic(&mut self) -> Result<Expr, ScriptError> {
        let mut left = self.term()?;
        while let Token::Arith(op @ (ArithOp::Add | ArithOp::Sub)) = *self.peek() {
            let pos = self.next().1;
            let right = self.term()?;
            left = binary(op, pos, left, right);
        }
        Ok(left)
    }

    /// term = operand { ("*" | "/") operand }
    fn term(&mut self) -> Result<Expr, ScriptError> {
        let mut left = self.operand()?;
        while let Token::Arith(op @ (ArithOp::Mul | ArithOp::Div)) = *self.peek() {
            let pos = self.next().1;
            let right = self.operand()?;
            left = binary(op, pos, left, right);
        }
        Ok(left)
    }

    /// operand = "stream" | "batch" | name | number | "(" expression ")"
    fn operand(&mut self) -> Result<Expr, ScriptError> {
        let pos = self.pos();
        match self.peek().clone() {
            Token::Ident(name) if name == "stream" || name == "batch" => {
                self.next();
                Ok(Expr::Source { name, pos })
            }
            Token::Ident(name) if !is_reserved(&name) => {
                self.next();
                Ok(Expr::Var { name, pos })
            }
            Token::Number(_) | Token::Arith(ArithOp::Sub) => Ok(Expr::Number {
                value: self.number()?,
                pos,
            }),
            Token::Open => {
                self.next();
                let inner = self.expression()?;
                self.expect(&Token::Close, "\")\"")?;
                Ok(inner)
            }
            _ => Err(self.expected("stream, batch, a name bound by let, a number or \"(\"")),
        }
    }

    fn number(&mut self) -> Result<f64, ScriptError> {
        let negative = self.eat(&Token::Arith(ArithOp::Sub));
        match self.next() {
            (Token::Number(n), _) => Ok(if negative { -n } else { n }),
            (t, pos) => Err(ScriptError::at(
                pos,
                format!("expected a number, found {}", describe(&t)),
            )),
        }
    }

    /// stage = name [ "(" [ argument { "," argument } ] ")" ]
    fn stage(&mut self) -> Result<Stage, ScriptError> {
        let (name, pos) = match self.next() {
            (Token::Ident(name), pos) => (name, pos),
            (t, pos) => {
                return Err(ScriptError::at(
                    pos,
                    format!("expected a stage after \"|\", found {}", describe(&t)),
                ))
            }
        };
        let mut args = Vec::new();
        if self.eat(&Token::Open) && !self.eat(&Token::Close) {
            loop {
                args.push(self.argument()?);
                if self.eat(&Token::Close) {
                    break;
                }
                self.expect(&Token::Comma, "\",\" or \")\"")?;
            }
        }
        Ok(Stage { name, pos, args })
    }

    /// argument = [ name ":" ] value
    fn argument(&mut self) -> Result<Arg, ScriptError> {
        let pos = self.pos();
        let key = match (self.peek(), &self.tokens.get(self.at + 1).map(|t| &t.0)) {
            (Token::Ident(name), Some(Token::Colon)) => {
                let name = name.clone();
                self.next();
                self.next();
                Some(name)
            }
            _ => None,
        };
        let value = self.value()?;
        Ok(Arg { key, pos, value })
    }

    fn value(&mut self) -> Result<Value, ScriptError> {
        match self.peek().clone() {
            Token::Cmp(_) => Ok(Value::Cond(self.condition()?)),
            Token::Number(_) | Token::Arith(ArithOp::Sub) => Ok(Value::Number(self.number()?)),
            Token::Duration(ms) => {
                self.next();
                Ok(Value::Duration(ms))
            }
            Token::Str(s) => {
                self.next();
                Ok(Value::Str(s))
            }
            Token::Ident(name) => {
                self.next();
                Ok(match name.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Ident(name),
                })
            }
            _ => Err(self.expected(
                "a value (a number, a duration, a string, a name or a condition such as < 30)",
            )),
        }
    }

    /// condition = comparison { ("and" | "or") comparison }, `and` before `or`.
    fn condition(&mut self) -> Result<Condition, ScriptError> {
        let mut left = self.conjunction()?;
        while self.eat(&Token::Ident("or".into())) {
            let right = self.conjunction()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Condition, ScriptError> {
        let mut left = self.comparison()?;
        while self.eat(&Token::Ident("and".into())) {
            let right = self.comparison()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Condition, ScriptError> {
        match self.next() {
            (Token::Cmp(op), _) => Ok(Condition::Cmp(op, self.number()?)),
            (t, pos) => Err(ScriptError::at(
                pos,
                format!("expected a comparison such as < 30, found {}", describe(&t)),
            )),
        }
    }
}

fn binary(op: ArithOp, pos: Pos, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        pos,
        left: Box::new(left),
        right: Box::new(right),
    }
}

/// Words that cannot name a binding.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "let" | "stream" | "batch" | "and" | "or" | "true" | "false"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kapacitors_example_parses_as_a_chain_of_stages() {
        let script =
            parse("stream | window(period: 10s, every: 5s) | mean | filter(< 30) | alert()")
                .unwrap();
        let Statement::Sink(expr) = &script.statements[0] else {
            panic!("a sink")
        };
        let mut names = Vec::new();
        let mut e = expr;
        while let Expr::Pipe { input, stage } = e {
            names.push(stage.name.as_str());
            e = input;
        }
        names.reverse();
        assert_eq!(names, ["window", "mean", "filter", "alert"]);
        assert!(matches!(e, Expr::Source { name, .. } if name == "stream"));
    }

    #[test]
    fn arithmetic_binds_before_the_pipe_and_multiplication_before_addition() {
        let script =
            parse("let a = stream\nlet b = stream\n(a / b * 100 + 1) | emit(\"r\")").unwrap();
        assert_eq!(script.statements.len(), 3);
        let Statement::Sink(Expr::Pipe { input, .. }) = &script.statements[2] else {
            panic!("a pipe")
        };
        let Expr::Binary { op, left, .. } = &**input else {
            panic!("a sum")
        };
        assert_eq!(*op, ArithOp::Add);
        assert!(matches!(
            &**left,
            Expr::Binary {
                op: ArithOp::Mul,
                ..
            }
        ));
    }

    #[test]
    fn conditions_put_and_before_or() {
        let script = parse("stream | filter(< 5 or > 10 and < 20)").unwrap();
        let Statement::Sink(Expr::Pipe { stage, .. }) = &script.statements[0] else {
            panic!()
        };
        let Value::Cond(c) = &stage.args[0].value else {
            panic!()
        };
        assert!(matches!(c, Condition::Or(_, b) if matches!(**b, Condition::And(_, _))));
        assert!(c.holds(4.0) && c.holds(15.0) && !c.holds(7.0) && !c.holds(25.0));
    }

    #[test]
    fn grammar_errors_name_what_was_expected_where() {
        let cases = [
            (
                "stream |",
                "line 1, column 9: expected a stage after \"|\", found the end of the script",
            ),
            (
                "stream | window(period 10s)",
                "line 1, column 24: expected \",\" or \")\", found the duration 10000ms",
            ),
            (
                "let = stream",
                "line 1, column 5: expected a name after let, found \"=\"",
            ),
            (
                "stream\n | alert(crit: 30 <)",
                "line 2, column 19: expected \",\" or \")\", found \"<\"",
            ),
            ("", "line 1, column 1: the script is empty"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }
}
