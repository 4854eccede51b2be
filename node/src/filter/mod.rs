//! Message filtering by SQL92 expression, as RocketMQ consumers subscribe with
//! `MessageSelector.bySql("a > 5 AND TAGS IN ('x', 'y')")`.
//!
//! [`Sql92Filter::compile`] accepts the language of RocketMQ's `SelectorParser.jj` and
//! applies the same compile-time checks as its `ComparisonExpression` factories;
//! [`Sql92Filter::matches`] evaluates against a message's raw property string with the
//! semantics of the Java broker's `ExpressionMessageFilter.isMatchedByCommitLog`:
//! three-valued logic (a missing property is NULL), property strings converted to a
//! number when compared with one, and any conversion failure (`a > 5` with `a = "x"`)
//! abandoning the whole evaluation so the message does not match.
//!
//! Deliberately not here: the bloom-filter bitmap the Java broker computes per consumer
//! group at dispatch time (an optimisation only), and tag filtering (`TAG` subscriptions
//! are matched by hash code elsewhere).
//!
//! Known differences from the Java broker, each a choice:
//! - Input after a complete expression is an error (`a = 1)`, `a = 1 b`); the generated
//!   Java parser stops at the end of the first expression and ignores the rest.
//! - Parentheses and unary operators nest at most [`MAX_NESTING`] deep and the tree is at
//!   most [`MAX_DEPTH`] deep; Java has no limit but its stack.
//! - Numbers in property values use ASCII digits only (Java also takes other Unicode
//!   digits), and a property whose name or value is not valid UTF-8 counts as missing
//!   (Java decodes it with replacement characters).

mod java;
mod sql92;

pub use sql92::{Sql92Filter, MAX_DEPTH, MAX_NESTING};

/// Why an expression did not compile. Offsets are byte offsets into the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A character that starts no token (Java's `TokenMgrError`).
    #[error("invalid character {found:?} at offset {offset}")]
    InvalidCharacter { offset: usize, found: char },
    /// A `'` with no closing quote.
    #[error("unterminated string literal starting at offset {offset}")]
    UnterminatedString { offset: usize },
    /// A `/*` with no closing `*/`.
    #[error("unterminated comment starting at offset {offset}")]
    UnterminatedComment { offset: usize },
    /// The grammar wanted something else here (Java's `ParseException`).
    #[error("syntax error at offset {offset}: expected {expected}, found {found}")]
    Syntax {
        offset: usize,
        expected: &'static str,
        found: String,
    },
    /// A numeric literal out of range: integers beyond `Long`, floats that overflow to
    /// infinity or round to zero (RocketMQ rejects both).
    #[error("numeric literal {literal} at offset {offset} is out of range")]
    NumberOutOfRange { offset: usize, literal: String },
    /// Well-formed but rejected by RocketMQ's checks: comparing with NULL, ordering a
    /// string or boolean, `IN` on a non-property, an empty or reversed `BETWEEN`, or a
    /// non-boolean where a condition is needed.
    #[error("invalid expression at offset {offset}: {reason}")]
    Invalid { offset: usize, reason: String },
    /// Parentheses, `NOT`s, signs or chained comparisons nested too deeply.
    #[error("expression nests deeper than {limit} levels at offset {offset}")]
    TooDeep { offset: usize, limit: usize },
}
