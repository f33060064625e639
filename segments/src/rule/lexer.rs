//! The rule language's tokens (see `docs/segments.md`), each with its byte span.

use logos::Logos;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// A duration's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

/// A distance's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistanceUnit {
    Kilometres,
    Metres,
}

fn quantity<U>(text: &str, units: &[(&str, U)]) -> Option<(f64, U)>
where
    U: Copy,
{
    units.iter().find_map(|(suffix, unit)| {
        let number = text.strip_suffix(suffix)?;
        Some((number.parse().ok()?, *unit))
    })
}

#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t\r\n]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
pub enum Token {
    #[token("and")]
    And,
    #[token("or")]
    Or,
    #[token("not")]
    Not,
    #[token("in")]
    In,
    #[token("now")]
    Now,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("(")]
    Open,
    #[token(")")]
    Close,
    #[token("[")]
    OpenList,
    #[token("]")]
    CloseList,
    #[token(",")]
    Comma,
    #[token(".")]
    Dot,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("=")]
    #[token("==")]
    Eq,
    #[token("!=")]
    Ne,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    /// `90d`, `2w`, `12h`, `30min`, `45s`.
    #[regex(r"[0-9]+(\.[0-9]+)?(w|d|h|min|s)", |lex| quantity(lex.slice(), &[
        ("min", TimeUnit::Minutes), ("w", TimeUnit::Weeks), ("d", TimeUnit::Days),
        ("h", TimeUnit::Hours), ("s", TimeUnit::Seconds),
    ]))]
    Duration((f64, TimeUnit)),
    /// `3km`, `500m`.
    #[regex(r"[0-9]+(\.[0-9]+)?(km|m)", |lex| quantity(lex.slice(), &[
        ("km", DistanceUnit::Kilometres), ("m", DistanceUnit::Metres),
    ]))]
    Distance((f64, DistanceUnit)),
    #[regex(r"[0-9]+(\.[0-9]+)?", |lex| lex.slice().parse::<f64>().ok())]
    Number(f64),
    /// A date, `2026-12-24`.
    #[regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", |lex| lex.slice().to_owned(), priority = 3)]
    Date(String),
    /// Double-quoted, with `\"` and `\\` escapes.
    #[regex(r#""([^"\\\n]|\\["\\])*""#, |lex| {
        let inner = &lex.slice()[1..lex.slice().len() - 1];
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    })]
    String(String),
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_owned())]
    Ident(String),
}

impl Token {
    /// How an error message names the token.
    pub fn describe(&self) -> String {
        match self {
            Token::And => "`and`".into(),
            Token::Or => "`or`".into(),
            Token::Not => "`not`".into(),
            Token::In => "`in`".into(),
            Token::Now => "`now`".into(),
            Token::True => "`true`".into(),
            Token::False => "`false`".into(),
            Token::Open => "`(`".into(),
            Token::Close => "`)`".into(),
            Token::OpenList => "`[`".into(),
            Token::CloseList => "`]`".into(),
            Token::Comma => "`,`".into(),
            Token::Dot => "`.`".into(),
            Token::Plus => "`+`".into(),
            Token::Minus => "`-`".into(),
            Token::Eq => "`=`".into(),
            Token::Ne => "`!=`".into(),
            Token::Lt => "`<`".into(),
            Token::Le => "`<=`".into(),
            Token::Gt => "`>`".into(),
            Token::Ge => "`>=`".into(),
            Token::Duration(_) => "a duration".into(),
            Token::Distance(_) => "a distance".into(),
            Token::Number(_) => "a number".into(),
            Token::Date(date) => format!("the date {date}"),
            Token::String(text) => format!("the string {text:?}"),
            Token::Ident(name) => format!("`{name}`"),
        }
    }
}

/// A token and where it is.
pub type Spanned = (Token, Range<usize>);

/// The tokens of `source`, or the span of the first text that is not one.
pub fn tokens(source: &str) -> Result<Vec<Spanned>, Range<usize>> {
    let mut lexer = Token::lexer(source);
    let mut out = Vec::new();
    while let Some(token) = lexer.next() {
        match token {
            Ok(token) => out.push((token, lexer.span())),
            Err(()) => return Err(lexer.span()),
        }
    }
    Ok(out)
}
