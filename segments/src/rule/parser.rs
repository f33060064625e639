//! Text to [`Rule`], checked against the catalog as it is read: every error names what was
//! expected and points at the token that is wrong.

use super::ast::{Arg, Op, Rule, Sign, Value};
use super::catalog::{Type, field_type, function};
use super::lexer::{Spanned, Token, tokens};
use std::ops::Range;

/// Why a rule's text is not a rule: a message and the byte range it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {}..{})", span.start, span.end)]
pub struct RuleError {
    pub message: String,
    pub span: Range<usize>,
}

impl RuleError {
    fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            message: message.into(),
            span,
        }
    }

    /// The error with the line of `source` it is about and a marker under the offending text:
    /// what a person editing the rule is shown.
    pub fn render(&self, source: &str) -> String {
        let start = self.span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |at| at + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |at| start + at);
        let line_number = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let width = source[start..self.span.end.clamp(start, line_end)]
            .chars()
            .count()
            .max(1);
        format!(
            "line {line_number}, column {column}: {}\n  {}\n  {}{}",
            self.message,
            &source[line_start..line_end],
            " ".repeat(column - 1),
            "^".repeat(width)
        )
    }
}

/// The longest rule text accepted, in bytes.
pub const MAX_RULE_BYTES: usize = 16 * 1024;
/// The deepest nesting of parentheses, `not`s and calls accepted.
const MAX_DEPTH: usize = 64;

/// Parses and checks `source`.
pub fn parse(source: &str) -> Result<Rule, RuleError> {
    if source.len() > MAX_RULE_BYTES {
        return Err(RuleError::new(
            format!("a rule is at most {MAX_RULE_BYTES} bytes"),
            MAX_RULE_BYTES..source.len(),
        ));
    }
    let tokens =
        tokens(source).map_err(|span| RuleError::new("not a token of the rule language", span))?;
    let mut parser = Parser {
        tokens,
        at: 0,
        end: source.len(),
        depth: 0,
    };
    let rule = parser.rule()?;
    if let Some((token, span)) = parser.peek() {
        return Err(RuleError::new(
            format!(
                "expected `and`, `or` or the end of the rule, found {}",
                token.describe()
            ),
            span.clone(),
        ));
    }
    Ok(rule)
}

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
    end: usize,
    depth: usize,
}

/// A value, its type and where it is.
struct Typed {
    value: Value,
    kind: Type,
    span: Range<usize>,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Spanned> {
        let token = self.tokens.get(self.at).cloned();
        self.at += usize::from(token.is_some());
        token
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek().is_some_and(|(next, _)| next == token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// The span of the next token, or the end of the text.
    fn here(&self) -> Range<usize> {
        self.peek()
            .map_or(self.end..self.end, |(_, span)| span.clone())
    }

    fn found(&self) -> String {
        self.peek().map_or_else(
            || "the end of the rule".to_owned(),
            |(token, _)| token.describe(),
        )
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<Range<usize>, RuleError> {
        match self.peek() {
            Some((next, span)) if next == token => {
                let span = span.clone();
                self.at += 1;
                Ok(span)
            }
            _ => Err(RuleError::new(
                format!("expected {what}, found {}", self.found()),
                self.here(),
            )),
        }
    }

    fn deeper(&mut self) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(RuleError::new(
                format!("nested more than {MAX_DEPTH} deep"),
                self.here(),
            ));
        }
        Ok(())
    }

    fn rule(&mut self) -> Result<Rule, RuleError> {
        let mut any = vec![self.all()?];
        while self.eat(&Token::Or) {
            any.push(self.all()?);
        }
        Ok(if any.len() == 1 {
            any.pop().expect("one")
        } else {
            Rule::Or(any)
        })
    }

    fn all(&mut self) -> Result<Rule, RuleError> {
        let mut all = vec![self.unary()?];
        while self.eat(&Token::And) {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.pop().expect("one")
        } else {
            Rule::And(all)
        })
    }

    fn unary(&mut self) -> Result<Rule, RuleError> {
        if self.eat(&Token::Not) {
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Rule::Not(Box::new(inner)));
        }
        // `(` opens a sub-rule here; a value never starts with one.
        if self.eat(&Token::Open) {
            self.deeper()?;
            let inner = self.rule()?;
            self.expect(&Token::Close, "`)`")?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Rule, RuleError> {
        let left = self.value()?;
        let op = match self.peek().map(|(token, _)| token) {
            Some(Token::Eq) => Some(Op::Eq),
            Some(Token::Ne) => Some(Op::Ne),
            Some(Token::Lt) => Some(Op::Lt),
            Some(Token::Le) => Some(Op::Le),
            Some(Token::Gt) => Some(Op::Gt),
            Some(Token::Ge) => Some(Op::Ge),
            Some(Token::In) => {
                self.at += 1;
                return self.membership(left);
            }
            _ => None,
        };
        let Some(op) = op else {
            if left.kind != Type::Bool {
                return Err(RuleError::new(
                    format!(
                        "{} is {}, not a condition: compare it (=, !=, <, <=, >, >=, in)",
                        left.value,
                        left.kind.describe()
                    ),
                    left.span,
                ));
            }
            return Ok(Rule::Holds(left.value));
        };
        let op_span = self.here();
        self.at += 1;
        let right = self.value()?;
        if left.kind != right.kind || left.kind == Type::List {
            return Err(RuleError::new(
                format!(
                    "cannot compare {} with {}",
                    left.kind.describe(),
                    right.kind.describe()
                ),
                left.span.start..right.span.end,
            ));
        }
        if matches!(left.kind, Type::Bool | Type::Text) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(RuleError::new(
                format!("{} only compares with = or !=", left.kind.describe()),
                op_span,
            ));
        }
        Ok(Rule::Compare {
            left: left.value,
            op,
            right: right.value,
        })
    }

    fn membership(&mut self, left: Typed) -> Result<Rule, RuleError> {
        let list = self.value()?;
        let Value::List(values) = list.value else {
            return Err(RuleError::new(
                format!("`in` takes a list, [..], not {}", list.kind.describe()),
                list.span,
            ));
        };
        if !matches!(left.kind, Type::Text | Type::Number) {
            return Err(RuleError::new(
                format!(
                    "only a text or a number can be in a list, not {}",
                    left.kind.describe()
                ),
                left.span,
            ));
        }
        Ok(Rule::In {
            value: left.value,
            list: values,
        })
    }

    /// A value: a term, or an instant plus or minus durations.
    fn value(&mut self) -> Result<Typed, RuleError> {
        let mut value = self.term()?;
        loop {
            let sign = match self.peek().map(|(token, _)| token) {
                Some(Token::Plus) => Sign::Plus,
                Some(Token::Minus) => Sign::Minus,
                _ => return Ok(value),
            };
            self.at += 1;
            let by = self.term()?;
            if value.kind != Type::Instant || by.kind != Type::Duration {
                return Err(RuleError::new(
                    format!(
                        "only an instant plus or minus a duration is computed (`now - 90d`), not {} and {}",
                        value.kind.describe(),
                        by.kind.describe()
                    ),
                    value.span.start..by.span.end,
                ));
            }
            value = Typed {
                span: value.span.start..by.span.end,
                value: Value::Offset {
                    base: Box::new(value.value),
                    sign,
                    by: Box::new(by.value),
                },
                kind: Type::Instant,
            };
        }
    }

    fn term(&mut self) -> Result<Typed, RuleError> {
        let Some((token, span)) = self.next() else {
            return Err(RuleError::new(
                "expected a value, found the end of the rule",
                self.end..self.end,
            ));
        };
        let typed = |value, kind| Typed {
            value,
            kind,
            span: span.clone(),
        };
        Ok(match token {
            Token::Number(number) => typed(Value::Number(number), Type::Number),
            Token::Minus => match self.next() {
                Some((Token::Number(number), end)) => Typed {
                    value: Value::Number(-number),
                    kind: Type::Number,
                    span: span.start..end.end,
                },
                _ => {
                    return Err(RuleError::new("expected a number after `-`", span));
                }
            },
            Token::String(text) => typed(Value::String(text), Type::Text),
            Token::True => typed(Value::Bool(true), Type::Bool),
            Token::False => typed(Value::Bool(false), Type::Bool),
            Token::Date(date) => {
                if chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_err() {
                    return Err(RuleError::new(format!("{date} is not a date"), span));
                }
                typed(Value::Date(date), Type::Date)
            }
            Token::Duration((amount, unit)) => {
                typed(Value::Duration { amount, unit }, Type::Duration)
            }
            Token::Distance((amount, unit)) => {
                typed(Value::Distance { amount, unit }, Type::Distance)
            }
            Token::Now => typed(Value::Now, Type::Instant),
            Token::OpenList => self.list(span)?,
            Token::Ident(name) => {
                if self.peek().is_some_and(|(token, _)| *token == Token::Open) {
                    self.call(name, span)?
                } else {
                    self.field(name, span)?
                }
            }
            other => {
                return Err(RuleError::new(
                    format!("expected a value, found {}", other.describe()),
                    span,
                ));
            }
        })
    }

    fn list(&mut self, open: Range<usize>) -> Result<Typed, RuleError> {
        let mut values = Vec::new();
        let mut kind = None;
        if !self.eat(&Token::CloseList) {
            loop {
                let item = self.term()?;
                if !matches!(item.kind, Type::Text | Type::Number)
                    || kind.is_some_and(|k| k != item.kind)
                {
                    return Err(RuleError::new(
                        "a list holds texts or numbers, all of one kind",
                        item.span,
                    ));
                }
                kind = Some(item.kind);
                values.push(item.value);
                if self.eat(&Token::CloseList) {
                    break;
                }
                self.expect(&Token::Comma, "`,` or `]`")?;
            }
        }
        let end = self.tokens[self.at - 1].1.end;
        Ok(Typed {
            value: Value::List(values),
            kind: Type::List,
            span: open.start..end,
        })
    }

    fn field(&mut self, first: String, span: Range<usize>) -> Result<Typed, RuleError> {
        let mut path = vec![first];
        let mut end = span.end;
        while self.eat(&Token::Dot) {
            match self.next() {
                Some((Token::Ident(part), part_span)) => {
                    path.push(part);
                    end = part_span.end;
                }
                // Store ids and the like may be numbers or have dashes: quote them.
                Some((Token::String(part), part_span)) => {
                    path.push(part);
                    end = part_span.end;
                }
                _ => {
                    return Err(RuleError::new(
                        "expected a name after `.` (quote one that is not a plain word: store.\"SH-021\")",
                        self.tokens[self.at - 1].1.clone(),
                    ));
                }
            }
        }
        let span = span.start..end;
        let kind = field_type(&path).map_err(|message| RuleError::new(message, span.clone()))?;
        Ok(Typed {
            value: Value::Field(path),
            kind,
            span,
        })
    }

    fn call(&mut self, name: String, span: Range<usize>) -> Result<Typed, RuleError> {
        let Some(function) = function(&name) else {
            return Err(RuleError::new(
                format!(
                    "no function `{name}`; there are {}",
                    super::catalog::FUNCTIONS
                        .iter()
                        .map(|function| function.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                span,
            ));
        };
        self.deeper()?;
        self.expect(&Token::Open, "`(`")?;
        let mut args: Vec<Arg> = Vec::new();
        let mut positional = 0;
        if !self.eat(&Token::Close) {
            loop {
                // `name = value` or a positional value.
                let named = match (self.tokens.get(self.at), self.tokens.get(self.at + 1)) {
                    (Some((Token::Ident(arg), arg_span)), Some((Token::Eq, _))) => {
                        Some((arg.clone(), arg_span.clone()))
                    }
                    _ => None,
                };
                if let Some((arg, arg_span)) = named {
                    self.at += 2;
                    let Some((_, kinds)) = function.named.iter().find(|(n, _)| *n == arg) else {
                        return Err(RuleError::new(
                            format!(
                                "`{name}` takes no `{arg}`; it takes {}",
                                describe_named(function.named)
                            ),
                            arg_span,
                        ));
                    };
                    if args
                        .iter()
                        .any(|given| given.name.as_deref() == Some(arg.as_str()))
                    {
                        return Err(RuleError::new(format!("`{arg}` given twice"), arg_span));
                    }
                    let value = self.value()?;
                    check_kind(&value, kinds, &arg)?;
                    args.push(Arg {
                        name: Some(arg),
                        value: value.value,
                    });
                } else {
                    let value = self.value()?;
                    let Some((what, kinds)) = function.positional.get(positional) else {
                        return Err(RuleError::new(
                            format!(
                                "`{name}` takes {} value(s) before its named ones",
                                function.positional.len()
                            ),
                            value.span,
                        ));
                    };
                    if args.iter().any(|arg| arg.name.is_some()) {
                        return Err(RuleError::new(
                            "positional values come before named ones",
                            value.span,
                        ));
                    }
                    check_kind(&value, kinds, what)?;
                    if name == "has"
                        && let Value::String(kind) = &value.value
                        && kind.parse::<kinfold_core::IdentifierKind>().is_err()
                    {
                        return Err(RuleError::new(
                            format!("`{kind}` is not an identifier kind"),
                            value.span,
                        ));
                    }
                    positional += 1;
                    args.push(Arg {
                        name: None,
                        value: value.value,
                    });
                }
                if self.eat(&Token::Close) {
                    break;
                }
                self.expect(&Token::Comma, "`,` or `)`")?;
            }
        }
        let end = self.tokens[self.at - 1].1.end;
        self.depth -= 1;
        if positional < function.positional.len() {
            return Err(RuleError::new(
                format!(
                    "`{name}` needs {} ({})",
                    function.positional[positional].0, function.about
                ),
                span.start..end,
            ));
        }
        Ok(Typed {
            value: Value::Call { name, args },
            kind: function.result,
            span: span.start..end,
        })
    }
}

fn describe_named(named: &[(&str, &[Type])]) -> String {
    if named.is_empty() {
        return "no named values".to_owned();
    }
    named
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_kind(value: &Typed, kinds: &[Type], what: &str) -> Result<(), RuleError> {
    if kinds.contains(&value.kind) {
        return Ok(());
    }
    Err(RuleError::new(
        format!(
            "{what} is {}, not {}",
            kinds
                .iter()
                .map(|kind| kind.describe())
                .collect::<Vec<_>>()
                .join(" or "),
            value.kind.describe()
        ),
        value.span.clone(),
    ))
}
