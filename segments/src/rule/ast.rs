//! A parsed rule. Its JSON form is this tree as serde writes it; `Display` writes the text form
//! back, so that text, tree and JSON say the same thing.

pub use super::lexer::{DistanceUnit, TimeUnit};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A condition on one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Any of them holds (two or more).
    Or(Vec<Rule>),
    /// All of them hold (two or more).
    And(Vec<Rule>),
    Not(Box<Rule>),
    Compare {
        left: Value,
        op: Op,
        right: Value,
    },
    /// The value is one of the list's.
    In {
        value: Value,
        list: Vec<Value>,
    },
    /// A true-or-false value on its own: `bought(sku = "X")`, `consent.marketing_sms`.
    Holds(Value),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `+` or `-` between an instant and a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sign {
    Plus,
    Minus,
}

/// A value a rule compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Number(f64),
    String(String),
    Bool(bool),
    /// A calendar date, `YYYY-MM-DD`.
    Date(String),
    Duration {
        amount: f64,
        unit: TimeUnit,
    },
    Distance {
        amount: f64,
        unit: DistanceUnit,
    },
    /// The instant the rule is evaluated at.
    Now,
    /// An instant moved by a duration: `now - 90d`.
    Offset {
        base: Box<Value>,
        sign: Sign,
        by: Box<Value>,
    },
    /// A profile fact, by its path: `orders`, `trait.gender`, `channel.tmall.orders`.
    Field(Vec<String>),
    /// A function of the customer's journal or of the population: `count(type = "view", within = 14d)`.
    Call {
        name: String,
        args: Vec<Arg>,
    },
    /// Several values, as an argument: `sku = ["A", "B"]`.
    List(Vec<Value>),
}

/// A function's argument: positional or named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub value: Value,
}

impl TimeUnit {
    fn suffix(self) -> &'static str {
        match self {
            TimeUnit::Weeks => "w",
            TimeUnit::Days => "d",
            TimeUnit::Hours => "h",
            TimeUnit::Minutes => "min",
            TimeUnit::Seconds => "s",
        }
    }

    /// Microseconds in one unit.
    pub fn micros(self) -> i64 {
        match self {
            TimeUnit::Weeks => 7 * 86_400_000_000,
            TimeUnit::Days => 86_400_000_000,
            TimeUnit::Hours => 3_600_000_000,
            TimeUnit::Minutes => 60_000_000,
            TimeUnit::Seconds => 1_000_000,
        }
    }
}

impl DistanceUnit {
    fn suffix(self) -> &'static str {
        match self {
            DistanceUnit::Kilometres => "km",
            DistanceUnit::Metres => "m",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

/// Whether `text` reads back as a name (else a field's part is written quoted).
fn is_word(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(text, "and" | "or" | "not" | "in" | "now" | "true" | "false")
}

fn quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    write!(f, "\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(f: &mut fmt::Formatter<'_>, values: &[Value]) -> fmt::Result {
    f.write_str("[")?;
    for (at, value) in values.iter().enumerate() {
        if at > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{value}")?;
    }
    f.write_str("]")
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(number) => write!(f, "{number}"),
            Value::String(text) => quoted(f, text),
            Value::Bool(value) => write!(f, "{value}"),
            Value::Date(date) => f.write_str(date),
            Value::Duration { amount, unit } => write!(f, "{amount}{}", unit.suffix()),
            Value::Distance { amount, unit } => write!(f, "{amount}{}", unit.suffix()),
            Value::Now => f.write_str("now"),
            Value::Offset { base, sign, by } => {
                let sign = match sign {
                    Sign::Plus => "+",
                    Sign::Minus => "-",
                };
                write!(f, "{base} {sign} {by}")
            }
            Value::Field(path) => {
                for (at, part) in path.iter().enumerate() {
                    if at > 0 {
                        f.write_str(".")?;
                    }
                    if at > 0 && !is_word(part) {
                        quoted(f, part)?;
                    } else {
                        f.write_str(part)?;
                    }
                }
                Ok(())
            }
            Value::Call { name, args } => {
                write!(f, "{name}(")?;
                for (at, arg) in args.iter().enumerate() {
                    if at > 0 {
                        f.write_str(", ")?;
                    }
                    if let Some(name) = &arg.name {
                        write!(f, "{name} = ")?;
                    }
                    write!(f, "{}", arg.value)?;
                }
                f.write_str(")")
            }
            Value::List(values) => list(f, values),
        }
    }
}

/// How tightly `rule` binds: 0 `or`, 1 `and`, 2 `not`, 3 a condition.
fn level(rule: &Rule) -> u8 {
    match rule {
        Rule::Or(_) => 0,
        Rule::And(_) => 1,
        Rule::Not(_) => 2,
        Rule::Compare { .. } | Rule::In { .. } | Rule::Holds(_) => 3,
    }
}

/// Writes `rule` where binding at least `outer` is needed, in parentheses if it binds looser.
fn write_rule(f: &mut fmt::Formatter<'_>, rule: &Rule, outer: u8) -> fmt::Result {
    let parenthesised = level(rule) < outer;
    if parenthesised {
        f.write_str("(")?;
    }
    match rule {
        Rule::Or(rules) => join(f, rules, " or ", 1)?,
        Rule::And(rules) => join(f, rules, " and ", 2)?,
        Rule::Not(inner) => {
            f.write_str("not ")?;
            write_rule(f, inner, 2)?;
        }
        Rule::Compare { left, op, right } => write!(f, "{left} {op} {right}")?,
        Rule::In {
            value,
            list: values,
        } => {
            write!(f, "{value} in ")?;
            list(f, values)?;
        }
        Rule::Holds(value) => write!(f, "{value}")?,
    }
    if parenthesised {
        f.write_str(")")?;
    }
    Ok(())
}

fn join(f: &mut fmt::Formatter<'_>, rules: &[Rule], by: &str, inner: u8) -> fmt::Result {
    for (at, rule) in rules.iter().enumerate() {
        if at > 0 {
            f.write_str(by)?;
        }
        write_rule(f, rule, inner)?;
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rule(f, self, 0)
    }
}
