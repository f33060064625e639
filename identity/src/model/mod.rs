//! The pure part of identity: rules and graph, no I/O.

mod chunked;
pub mod graph;
mod inputs;
mod known;
mod places;
pub mod preview;
pub mod rules;

pub use graph::{
    Cause, Change, Customer, CustomerId, EventIdentifiers, GraphError, IdentityGraph, Input,
    Resolution, ReviewItem,
};
pub use preview::{Regrouping, RulePreview, compare, preview};
pub use rules::{Blocked, DEFAULT_RULES, Limit, Rules, RulesError, RulesFile};

#[cfg(test)]
pub(crate) mod tests {
    use kinfold_core::{Identifier, IdentifierKind};

    /// An identifier, for the unit tests.
    pub(crate) fn id(kind: IdentifierKind, issuer: &str, value: &str) -> Identifier {
        Identifier {
            kind,
            issuer: issuer.into(),
            value: value.into(),
        }
    }
}
