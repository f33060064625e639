//! The segment rule language: text (or its JSON form) to a checked [`Rule`]. See
//! `docs/segments.md` for the syntax, the facts and the functions.

pub mod ast;
pub mod catalog;
pub mod lexer;
pub mod parser;

pub use ast::{Arg, Op, Rule, Sign, Value};
pub use parser::{MAX_RULE_BYTES, RuleError, parse};

/// A rule's JSON form read back and checked: the same checks as the text, by writing it as
/// text and parsing that (so both forms accept exactly the same rules).
pub fn from_json(json: &str) -> Result<Rule, RuleError> {
    let rule: Rule = serde_json::from_str(json).map_err(|error| RuleError {
        message: format!("not a rule's JSON form: {error}"),
        span: 0..json.len(),
    })?;
    let text = rule.to_string();
    parse(&text).map_err(|error| RuleError {
        message: format!("{} (in the rule `{text}`)", error.message),
        span: 0..json.len(),
    })
}
