//! Lexer, parser and evaluator of RocketMQ's SQL92 filter language.
//!
//! The parser mirrors `SelectorParser.jj` production by production (or, and, equality,
//! comparison, unary, primary), so precedence is RocketMQ's: unary `NOT`, `+` and `-`
//! bind tightest (`NOT a = 'x'` is `(NOT a) = 'x'`), then `>`, `<`, `BETWEEN`, `IN`,
//! `CONTAINS`..., then `=`, `<>`, `IS NULL`, then `AND`, then `OR`. The evaluator mirrors
//! the Java expression classes; where Java throws during evaluation we return
//! [`Abort`], which the broker treats as "no match".

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use super::java;
use super::FilterError;

/// How deep the expression tree may be (parentheses, unary operators and chained
/// comparisons all deepen it), so a hostile subscription cannot exhaust the stack while
/// evaluating: about 256 bytes of stack per level in release builds, 2.7 KiB in debug.
pub const MAX_DEPTH: usize = 256;

/// How deeply parentheses and unary operators (`NOT`, `+`, `-`) may nest, which bounds
/// the parser's recursion: a parenthesis costs about 2.4 KiB of stack in release builds
/// and 13 KiB in debug ones, so 64 levels stay under 1 MiB either way. Real
/// subscriptions nest a handful of levels.
pub const MAX_NESTING: usize = 64;

// ---------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    /// `DECIMAL_LITERAL`, with any `l`/`L` suffix still attached.
    Decimal(String),
    /// `FLOATING_POINT_LITERAL`.
    Float(String),
    /// A string literal, quotes removed and `''` decoded.
    Str(String),
    Id(String),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::Not => "NOT",
            Tok::And => "AND",
            Tok::Or => "OR",
            Tok::Between => "BETWEEN",
            Tok::In => "IN",
            Tok::True => "TRUE",
            Tok::False => "FALSE",
            Tok::Null => "NULL",
            Tok::Is => "IS",
            Tok::Contains => "CONTAINS",
            Tok::StartsWith => "STARTSWITH",
            Tok::EndsWith => "ENDSWITH",
            Tok::Decimal(s) | Tok::Float(s) => return write!(f, "number {s}"),
            Tok::Str(s) => return write!(f, "string '{}'", s.replace('\'', "''")),
            Tok::Id(s) => return write!(f, "identifier {s}"),
            Tok::Eq => "'='",
            Tok::Ne => "'<>'",
            Tok::Gt => "'>'",
            Tok::Ge => "'>='",
            Tok::Lt => "'<'",
            Tok::Le => "'<='",
            Tok::LParen => "'('",
            Tok::RParen => "')'",
            Tok::Comma => "','",
            Tok::Plus => "'+'",
            Tok::Minus => "'-'",
            Tok::Eof => "end of input",
        };
        f.write_str(s)
    }
}

const KEYWORDS: [(&str, Tok); 12] = [
    ("NOT", Tok::Not),
    ("AND", Tok::And),
    ("OR", Tok::Or),
    ("BETWEEN", Tok::Between),
    ("IN", Tok::In),
    ("TRUE", Tok::True),
    ("FALSE", Tok::False),
    ("NULL", Tok::Null),
    ("IS", Tok::Is),
    ("CONTAINS", Tok::Contains),
    ("STARTSWITH", Tok::StartsWith),
    ("ENDSWITH", Tok::EndsWith),
];

/// Splits an expression into tokens, longest match first as JavaCC does; the last
/// token is always [`Tok::Eof`].
fn tokenize(src: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let b = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    // Position of the next '\n' or '\r' at or after the last "--" seen, if looked up.
    let mut line_end: Option<Option<usize>> = None;
    while i < b.len() {
        let start = i;
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                i += 1;
                continue;
            }
            // A line comment needs its line end; without one, "--" is two minus signs.
            b'-' if b.get(i + 1) == Some(&b'-') => {
                // Remember where the next line end is, so a long run of '-' stays linear.
                if line_end.is_some_and(|end| end.is_some_and(|end| end < i)) {
                    line_end = None;
                }
                let end = *line_end.get_or_insert_with(|| {
                    b[i..]
                        .iter()
                        .position(|&c| c == b'\n' || c == b'\r')
                        .map(|p| i + p)
                });
                if let Some(end) = end {
                    i = end + 1;
                    if b[i - 1] == b'\r' && b.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    continue;
                }
                tokens.push((i, Tok::Minus));
                i += 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..]
                    .find("*/")
                    .ok_or(FilterError::UnterminatedComment { offset: i })?;
                i += 2 + end + 2;
                continue;
            }
            b'\'' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    let Some(rel) = src[j..].find('\'') else {
                        return Err(FilterError::UnterminatedString { offset: start });
                    };
                    value.push_str(&src[j..j + rel]);
                    j += rel + 1;
                    if b.get(j) == Some(&b'\'') {
                        value.push('\'');
                        j += 1;
                    } else {
                        break;
                    }
                }
                tokens.push((start, Tok::Str(value)));
                i = j;
                continue;
            }
            b'0'..=b'9' | b'.' => {
                let decimal = decimal_len(&b[i..]);
                let float = float_len(&b[i..]);
                if decimal == 0 && float == 0 {
                    return Err(invalid_char(src, i));
                }
                let (len, tok): (usize, fn(String) -> Tok) = if float > decimal {
                    (float, Tok::Float)
                } else {
                    (decimal, Tok::Decimal)
                };
                tokens.push((start, tok(src[i..i + len].to_owned())));
                i += len;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let len = b[i..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$'))
                    .unwrap_or(b.len() - i);
                let word = &src[i..i + len];
                let tok = KEYWORDS
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(word))
                    .map_or_else(|| Tok::Id(word.to_owned()), |(_, t)| t.clone());
                tokens.push((start, tok));
                i += len;
                continue;
            }
            _ => {}
        }
        let next = b.get(i + 1).copied();
        let (len, tok) = match (c, next) {
            (b'<', Some(b'>')) => (2, Tok::Ne),
            (b'<', Some(b'=')) => (2, Tok::Le),
            (b'>', Some(b'=')) => (2, Tok::Ge),
            (b'<', _) => (1, Tok::Lt),
            (b'>', _) => (1, Tok::Gt),
            (b'=', _) => (1, Tok::Eq),
            (b'(', _) => (1, Tok::LParen),
            (b')', _) => (1, Tok::RParen),
            (b',', _) => (1, Tok::Comma),
            (b'+', _) => (1, Tok::Plus),
            (b'-', _) => (1, Tok::Minus),
            _ => return Err(invalid_char(src, i)),
        };
        tokens.push((start, tok));
        i += len;
    }
    tokens.push((src.len(), Tok::Eof));
    Ok(tokens)
}

fn invalid_char(src: &str, offset: usize) -> FilterError {
    FilterError::InvalidCharacter {
        offset,
        found: src[offset..].chars().next().unwrap_or('\0'),
    }
}

/// Length of `"0" | ["1"-"9"] (["0"-"9"])* (["l","L"])?` at the start of `b`, or 0.
fn decimal_len(b: &[u8]) -> usize {
    match b.first() {
        Some(b'0') => 1,
        Some(b'1'..=b'9') => {
            let digits = digits_len(b);
            match b.get(digits) {
                Some(b'l' | b'L') => digits + 1,
                _ => digits,
            }
        }
        _ => 0,
    }
}

/// Length of `FLOATING_POINT_LITERAL` at the start of `b`, or 0:
/// `D+ "." D* E?`, `"." D+ E?` or `D+ E`, where `E` is `[eE] [+-]? D+`.
fn float_len(b: &[u8]) -> usize {
    let int = digits_len(b);
    if b.get(int) == Some(&b'.') {
        let frac = digits_len(&b[int + 1..]);
        if int == 0 && frac == 0 {
            return 0;
        }
        let end = int + 1 + frac;
        end + exponent_len(&b[end..])
    } else if int > 0 {
        match exponent_len(&b[int..]) {
            0 => 0,
            e => int + e,
        }
    } else {
        0
    }
}

fn exponent_len(b: &[u8]) -> usize {
    if !matches!(b.first(), Some(b'e' | b'E')) {
        return 0;
    }
    let sign = usize::from(matches!(b.get(1), Some(b'+' | b'-')));
    match digits_len(&b[1 + sign..]) {
        0 => 0,
        d => 1 + sign + d,
    }
}

fn digits_len(b: &[u8]) -> usize {
    b.iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len())
}

// ---------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------

/// A value during evaluation: Java's `null`, `Boolean`, `Integer`, `Long`, `Double` or
/// `String` (property values are always strings).
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

/// A constant from the expression text.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(Arc<str>),
}

impl Literal {
    fn value(&self) -> Value<'_> {
        match self {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Long(l) => Value::Long(*l),
            Literal::Double(d) => Value::Double(*d),
            Literal::Str(s) => Value::Str(s),
        }
    }

    fn is_number(&self) -> bool {
        matches!(
            self,
            Literal::Int(_) | Literal::Long(_) | Literal::Double(_)
        )
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Long(l) => write!(f, "{l}"),
            Literal::Double(d) => write!(f, "{d}"),
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Order {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Order::Gt => ord.is_gt(),
            Order::Ge => ord.is_ge(),
            Order::Lt => ord.is_lt(),
            Order::Le => ord.is_le(),
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Order::Gt => ">",
            Order::Ge => ">=",
            Order::Lt => "<",
            Order::Le => "<=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `ConstantExpression` / `BooleanConstantExpression`.
    Const(Literal),
    /// `PropertyExpression`: the property's string value, or NULL when missing.
    Prop(Arc<str>),
    /// Unary minus: numbers negate, anything else is NULL.
    Negate(Box<Node>),
    /// `NOT`: NULL stays NULL.
    Not(Box<Node>),
    /// A property used as a condition: NULL if missing, otherwise FALSE (a string is
    /// never a `Boolean`).
    BoolCast(Box<Node>),
    /// `=` (and `IS NULL` against a NULL constant).
    Equal(Box<Node>, Box<Node>),
    /// `>`, `>=`, `<`, `<=`.
    Compare(Order, Box<Node>, Box<Node>),
    /// Left-deep chains of `AND` flattened; evaluation order and short-circuits are
    /// those of the nested Java expressions.
    And(Vec<Node>),
    Or(Vec<Node>),
    /// `[NOT] IN ('a', ...)`, only on a property.
    In {
        property: Arc<str>,
        list: Vec<Arc<str>>,
        negated: bool,
    },
    /// `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'text'`: FALSE (never NULL) when the operand is
    /// missing or not a string, or when the text is empty, negated or not.
    Text {
        op: TextOp,
        negated: bool,
        operand: Box<Node>,
        search: Arc<str>,
    },
}

/// An expression with the depth of its tree, kept to bound recursion.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    depth: usize,
    expr: Expr,
}

impl Node {
    fn leaf(expr: Expr) -> Node {
        Node { depth: 1, expr }
    }

    /// In Java terms, `instanceof BooleanExpression`.
    fn is_boolean(&self) -> bool {
        match &self.expr {
            Expr::Const(l) => matches!(l, Literal::Null | Literal::Bool(_)),
            Expr::Prop(_) | Expr::Negate(_) => false,
            Expr::Not(_)
            | Expr::BoolCast(_)
            | Expr::Equal(..)
            | Expr::Compare(..)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::In { .. }
            | Expr::Text { .. } => true,
        }
    }

    fn constant(&self) -> Option<&Literal> {
        match &self.expr {
            Expr::Const(l) => Some(l),
            _ => None,
        }
    }
}

/// One step of a `comparisonExpression` loop, operator consumed.
#[derive(Debug, Clone, Copy)]
enum Step {
    Order(Order),
    Between { negated: bool },
    Text { op: TextOp, negated: bool },
    In { negated: bool },
}

/// Evaluation threw in Java (a failed number conversion, a bad cast); the broker logs
/// it and treats the message as not matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Abort;

type Eval<'a> = Result<Value<'a>, Abort>;

impl Node {
    fn eval<'a>(&'a self, properties: &'a [u8]) -> Eval<'a> {
        match &self.expr {
            Expr::Const(l) => Ok(l.value()),
            Expr::Prop(name) => {
                Ok(protocol::message::get_property(properties, name)
                    .map_or(Value::Null, Value::Str))
            }
            Expr::Negate(inner) => Ok(match inner.eval(properties)? {
                Value::Int(i) => Value::Int(i.wrapping_neg()),
                Value::Long(l) => Value::Long(l.wrapping_neg()),
                Value::Double(d) => Value::Double(-d),
                _ => Value::Null,
            }),
            Expr::Not(inner) => Ok(match truth(inner.eval(properties)?)? {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            }),
            Expr::BoolCast(inner) => Ok(match inner.eval(properties)? {
                Value::Null => Value::Null,
                Value::Bool(b) => Value::Bool(b),
                _ => Value::Bool(false),
            }),
            Expr::Equal(l, r) => {
                let lv = l.eval(properties)?;
                let rv = r.eval(properties)?;
                Ok(match (lv, rv) {
                    (Value::Null, Value::Null) => Value::Bool(true),
                    (Value::Null, _) => Value::Null,
                    (_, Value::Null) => Value::Bool(false),
                    (lv, rv) => Value::Bool(compare(lv, rv)?.is_eq()),
                })
            }
            Expr::Compare(order, l, r) => {
                let lv = l.eval(properties)?;
                if lv == Value::Null {
                    return Ok(Value::Null);
                }
                let rv = r.eval(properties)?;
                if rv == Value::Null {
                    return Ok(Value::Null);
                }
                let ord = match (lv, rv) {
                    // Strings are only ordered as numbers.
                    (Value::Str(a), Value::Str(b)) => {
                        let a = java::parse_double(a).ok_or(Abort)?;
                        let b = java::parse_double(b).ok_or(Abort)?;
                        java::compare_double(a, b)
                    }
                    (lv, rv) => compare(lv, rv)?,
                };
                Ok(Value::Bool(order.holds(ord)))
            }
            Expr::And(operands) => {
                let mut acc = truth(operands[0].eval(properties)?)?;
                for operand in &operands[1..] {
                    if acc == Some(false) {
                        break;
                    }
                    let next = truth(operand.eval(properties)?)?;
                    acc = match next {
                        Some(false) => Some(false),
                        _ if acc.is_none() || next.is_none() => None,
                        _ => Some(true),
                    };
                }
                Ok(acc.map_or(Value::Null, Value::Bool))
            }
            Expr::Or(operands) => {
                let mut acc = truth(operands[0].eval(properties)?)?;
                for operand in &operands[1..] {
                    if acc == Some(true) {
                        break;
                    }
                    let next = truth(operand.eval(properties)?)?;
                    acc = match next {
                        Some(true) => Some(true),
                        _ if acc.is_none() || next.is_none() => None,
                        _ => Some(false),
                    };
                }
                Ok(acc.map_or(Value::Null, Value::Bool))
            }
            Expr::In {
                property,
                list,
                negated,
            } => Ok(
                match protocol::message::get_property(properties, property) {
                    None => Value::Null,
                    Some(v) => Value::Bool(list.iter().any(|s| **s == *v) ^ negated),
                },
            ),
            Expr::Text {
                op,
                negated,
                operand,
                search,
            } => {
                if search.is_empty() {
                    return Ok(Value::Bool(false));
                }
                Ok(match operand.eval(properties)? {
                    Value::Str(s) => Value::Bool(
                        match op {
                            TextOp::Contains => s.contains(&**search),
                            TextOp::StartsWith => s.starts_with(&**search),
                            TextOp::EndsWith => s.ends_with(&**search),
                        } ^ negated,
                    ),
                    _ => Value::Bool(false),
                })
            }
        }
    }
}

/// The `(Boolean)` cast Java applies to the operands of `AND`, `OR` and `NOT`.
fn truth(v: Value<'_>) -> Result<Option<bool>, Abort> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        _ => Err(Abort),
    }
}

/// `ComparisonExpression.__compare` with string conversion on: values of different
/// types are converted towards each other (a string towards the other side's type);
/// pairs with no conversion compare as "less"; a string that does not parse aborts.
fn compare(lv: Value<'_>, rv: Value<'_>) -> Result<Ordering, Abort> {
    use Value::*;
    let double = |s: &str| java::parse_double(s).ok_or(Abort);
    Ok(match (lv, rv) {
        (Bool(a), Bool(b)) => a.cmp(&b),
        (Int(a), Int(b)) => a.cmp(&b),
        (Long(a), Long(b)) => a.cmp(&b),
        (Double(a), Double(b)) => java::compare_double(a, b),
        (Str(a), Str(b)) => a.cmp(b),
        // Java casts the Boolean to String here and throws.
        (Bool(_), Str(_)) => return Err(Abort),
        (Int(a), Long(b)) => i64::from(a).cmp(&b),
        (Int(a), Double(b)) => java::compare_double(f64::from(a), b),
        (Int(a), Str(b)) => a.cmp(&java::parse_int(b).ok_or(Abort)?),
        (Long(a), Int(b)) => a.cmp(&i64::from(b)),
        (Long(a), Double(b)) => java::compare_double(a as f64, b),
        (Long(a), Str(b)) => a.cmp(&java::parse_long(b).ok_or(Abort)?),
        (Double(a), Int(b)) => java::compare_double(a, f64::from(b)),
        (Double(a), Long(b)) => java::compare_double(a, b as f64),
        (Double(a), Str(b)) => java::compare_double(a, double(b)?),
        (Str(a), Bool(b)) => java::parse_boolean(a).cmp(&b),
        (Str(a), Int(b)) => java::parse_int(a).ok_or(Abort)?.cmp(&b),
        (Str(a), Long(b)) => java::parse_long(a).ok_or(Abort)?.cmp(&b),
        (Str(a), Double(b)) => java::compare_double(double(a)?, b),
        // Boolean against a number, or a number against a Boolean.
        (Bool(_) | Int(_) | Long(_) | Double(_), _) => Ordering::Less,
        // NULL never gets here: callers check it first.
        (Null, _) | (Str(_), Null) => return Err(Abort),
    })
}

// ---------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    /// Current recursion depth of `unary`, which every nesting goes through; at most
    /// [`MAX_NESTING`].
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].1
    }

    fn peek2(&self) -> &Tok {
        &self.tokens[(self.pos + 1).min(self.tokens.len() - 1)].1
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].0
    }

    fn advance(&mut self) -> (usize, Tok) {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn syntax(&self, expected: &'static str) -> FilterError {
        FilterError::Syntax {
            offset: self.offset(),
            expected,
            found: self.peek().to_string(),
        }
    }

    fn expect(&mut self, tok: Tok, expected: &'static str) -> Result<(), FilterError> {
        if *self.peek() == tok {
            self.advance();
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    /// Builds a node whose deepest child is `child_depth` deep, refusing trees deeper
    /// than [`MAX_DEPTH`].
    fn node(&self, offset: usize, child_depth: usize, expr: Expr) -> Result<Node, FilterError> {
        let depth = child_depth + 1;
        if depth > MAX_DEPTH {
            return Err(FilterError::TooDeep {
                offset,
                limit: MAX_DEPTH,
            });
        }
        Ok(Node { depth, expr })
    }

    /// `JmsSelector`: an `orExpression` that must be a condition. Unlike the Java
    /// parser we also require the input to end here.
    fn selector(&mut self) -> Result<Node, FilterError> {
        let offset = self.offset();
        let e = self.or()?;
        if *self.peek() != Tok::Eof {
            return Err(self.syntax("AND, OR, a comparison or end of input"));
        }
        self.as_boolean(offset, e)
    }

    /// `asBooleanExpression`: conditions pass, a bare property is cast, anything else
    /// is refused.
    #[inline(never)]
    fn as_boolean(&self, offset: usize, e: Node) -> Result<Node, FilterError> {
        if e.is_boolean() {
            return Ok(e);
        }
        if matches!(e.expr, Expr::Prop(_)) {
            return self.node(offset, e.depth, Expr::BoolCast(Box::new(e)));
        }
        Err(FilterError::Invalid {
            offset,
            reason: "expression does not result in a boolean value".into(),
        })
    }

    fn logic(
        &mut self,
        separator: Tok,
        operand: fn(&mut Self) -> Result<Node, FilterError>,
        make: fn(Vec<Node>) -> Expr,
    ) -> Result<Node, FilterError> {
        let offset = self.offset();
        let first = operand(self)?;
        if *self.peek() != separator {
            return Ok(first);
        }
        let mut operands = vec![self.as_boolean(offset, first)?];
        while *self.peek() == separator {
            self.advance();
            let offset = self.offset();
            let next = operand(self)?;
            operands.push(self.as_boolean(offset, next)?);
        }
        let child_depth = operands.iter().map(|n| n.depth).max().unwrap_or(0);
        self.node(offset, child_depth, make(operands))
    }

    fn or(&mut self) -> Result<Node, FilterError> {
        self.logic(Tok::Or, Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Node, FilterError> {
        self.logic(Tok::And, Self::equality, Expr::And)
    }

    /// `equalityExpression`: `=`, `<>`, `IS [NOT] NULL`, left-associative.
    ///
    /// This and the other functions on the recursive path stay small, with the work in
    /// non-recursive helpers, because their frames add up once per nesting level.
    fn equality(&mut self) -> Result<Node, FilterError> {
        let mut left = self.comparison()?;
        loop {
            let offset = self.offset();
            left = match self.peek() {
                Tok::Eq | Tok::Ne => {
                    let negated = self.advance().1 == Tok::Ne;
                    let right = self.comparison()?;
                    self.equal(offset, negated, left, right)?
                }
                Tok::Is => self.is_null(offset, left)?,
                _ => return Ok(left),
            };
        }
    }

    /// `createEqual` / `createNotEqual`.
    #[inline(never)]
    fn equal(
        &self,
        offset: usize,
        negated: bool,
        left: Node,
        right: Node,
    ) -> Result<Node, FilterError> {
        check_equal_operands(offset, &left, &right)?;
        let child_depth = left.depth.max(right.depth);
        let eq = self.node(
            offset,
            child_depth,
            Expr::Equal(Box::new(left), Box::new(right)),
        )?;
        if negated {
            self.not(offset, eq)
        } else {
            Ok(eq)
        }
    }

    /// `IS NULL` / `IS NOT NULL` after `left`, from the `IS` token on.
    #[inline(never)]
    fn is_null(&mut self, offset: usize, left: Node) -> Result<Node, FilterError> {
        self.advance();
        let negated = *self.peek() == Tok::Not;
        if negated {
            self.advance();
        }
        self.expect(Tok::Null, if negated { "NULL" } else { "NULL or NOT NULL" })?;
        let null = Node::leaf(Expr::Const(Literal::Null));
        let eq = self.node(
            offset,
            left.depth,
            Expr::Equal(Box::new(left), Box::new(null)),
        )?;
        if negated {
            self.not(offset, eq)
        } else {
            Ok(eq)
        }
    }

    #[inline(never)]
    fn not(&self, offset: usize, inner: Node) -> Result<Node, FilterError> {
        self.node(offset, inner.depth, Expr::Not(Box::new(inner)))
    }

    /// `comparisonExpression`: `> >= < <=`, `[NOT] BETWEEN`, `[NOT] IN`,
    /// `[NOT] CONTAINS|STARTSWITH|ENDSWITH`, left-associative.
    fn comparison(&mut self) -> Result<Node, FilterError> {
        let mut left = self.unary()?;
        loop {
            let offset = self.offset();
            left = match self.comparison_operator()? {
                None => return Ok(left),
                Some(Step::Order(order)) => {
                    let right = self.unary()?;
                    self.ordering(offset, order, left, right)?
                }
                Some(Step::Between { negated }) => {
                    let low = self.unary()?;
                    self.expect(Tok::And, "AND between the bounds of BETWEEN")?;
                    let high = self.unary()?;
                    self.between(offset, negated, left, low, high)?
                }
                Some(Step::Text { op, negated }) => self.text(offset, op, negated, left)?,
                Some(Step::In { negated }) => self.in_list(offset, negated, left)?,
            };
        }
    }

    /// Consumes the operator of a `comparisonExpression` step, if one follows.
    #[inline(never)]
    fn comparison_operator(&mut self) -> Result<Option<Step>, FilterError> {
        let negated = match (self.peek(), self.peek2()) {
            (
                Tok::Not,
                Tok::Contains | Tok::StartsWith | Tok::EndsWith | Tok::Between | Tok::In,
            ) => {
                self.advance();
                true
            }
            (Tok::Not, _) => {
                self.advance();
                return Err(self.syntax("CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT"));
            }
            _ => false,
        };
        let step = match self.peek() {
            Tok::Gt => Step::Order(Order::Gt),
            Tok::Ge => Step::Order(Order::Ge),
            Tok::Lt => Step::Order(Order::Lt),
            Tok::Le => Step::Order(Order::Le),
            Tok::Contains => Step::Text {
                op: TextOp::Contains,
                negated,
            },
            Tok::StartsWith => Step::Text {
                op: TextOp::StartsWith,
                negated,
            },
            Tok::EndsWith => Step::Text {
                op: TextOp::EndsWith,
                negated,
            },
            Tok::Between => Step::Between { negated },
            Tok::In => Step::In { negated },
            _ => return Ok(None),
        };
        self.advance();
        Ok(Some(step))
    }

    /// `[NOT] CONTAINS|STARTSWITH|ENDSWITH 'text'` after `left`.
    #[inline(never)]
    fn text(
        &mut self,
        offset: usize,
        op: TextOp,
        negated: bool,
        left: Node,
    ) -> Result<Node, FilterError> {
        let search = self.string_literal()?;
        let child_depth = left.depth;
        let operand = Box::new(left);
        self.node(
            offset,
            child_depth,
            Expr::Text {
                op,
                negated,
                operand,
                search,
            },
        )
    }

    /// `[NOT] IN ('a', ...)` after `left`, from the `(` on.
    #[inline(never)]
    fn in_list(&mut self, offset: usize, negated: bool, left: Node) -> Result<Node, FilterError> {
        self.expect(Tok::LParen, "'(' after IN")?;
        let mut list = vec![self.string_literal()?];
        while *self.peek() == Tok::Comma {
            self.advance();
            list.push(self.string_literal()?);
        }
        self.expect(Tok::RParen, "',' or ')' in the IN list")?;
        let Expr::Prop(property) = left.expr else {
            return Err(FilterError::Invalid {
                offset,
                reason: "IN needs a property on its left".into(),
            });
        };
        Ok(Node::leaf(Expr::In {
            property,
            list,
            negated,
        }))
    }

    /// `createGreaterThan` and friends: both sides must be able to be numbers.
    #[inline(never)]
    fn ordering(
        &self,
        offset: usize,
        order: Order,
        left: Node,
        right: Node,
    ) -> Result<Node, FilterError> {
        for side in [&left, &right] {
            let refused = match side.constant() {
                Some(l) => !l.is_number(),
                None => side.is_boolean(),
            };
            if refused {
                let what = side
                    .constant()
                    .map_or_else(|| "a condition".to_owned(), |l| l.to_string());
                return Err(FilterError::Invalid {
                    offset,
                    reason: format!("{what} cannot be compared with '{}'", order.symbol()),
                });
            }
        }
        let child_depth = left.depth.max(right.depth);
        self.node(
            offset,
            child_depth,
            Expr::Compare(order, Box::new(left), Box::new(right)),
        )
    }

    /// `createBetween` (`value >= low AND value <= high`, constant bounds checked for
    /// NULL and order) and `createNotBetween` (`value < low OR value > high`).
    #[inline(never)]
    fn between(
        &self,
        offset: usize,
        negated: bool,
        value: Node,
        low: Node,
        high: Node,
    ) -> Result<Node, FilterError> {
        if !negated {
            if let (Some(lo), Some(hi)) = (low.constant(), high.constant()) {
                let invalid = |reason: String| FilterError::Invalid { offset, reason };
                if *lo == Literal::Null || *hi == Literal::Null {
                    return Err(invalid("the bounds of BETWEEN cannot be NULL".into()));
                }
                match compare(hi.value(), lo.value()) {
                    Ok(Ordering::Less) => {
                        return Err(invalid(format!(
                            "the lower bound of BETWEEN ({lo}) is greater than the upper ({hi})"
                        )))
                    }
                    Err(Abort) => {
                        return Err(invalid(format!(
                            "the bounds of BETWEEN ({lo}, {hi}) cannot be compared"
                        )))
                    }
                    Ok(_) => {}
                }
            }
        }
        let (first, second, make): (Order, Order, fn(Vec<Node>) -> Expr) = if negated {
            (Order::Lt, Order::Gt, Expr::Or)
        } else {
            (Order::Ge, Order::Le, Expr::And)
        };
        let a = self.ordering(offset, first, value.clone(), low)?;
        let b = self.ordering(offset, second, value, high)?;
        let child_depth = a.depth.max(b.depth);
        self.node(offset, child_depth, make(vec![a, b]))
    }

    /// `unaryExpr`: `+x`, `-x`, `NOT x` or a primary. Every nesting passes here, so this
    /// is where recursion is bounded.
    fn unary(&mut self) -> Result<Node, FilterError> {
        let offset = self.offset();
        if self.nesting >= MAX_NESTING {
            return Err(FilterError::TooDeep {
                offset,
                limit: MAX_NESTING,
            });
        }
        self.nesting += 1;
        let result = self.unary_inner(offset);
        self.nesting -= 1;
        result
    }

    fn unary_inner(&mut self, offset: usize) -> Result<Node, FilterError> {
        match self.peek() {
            Tok::Plus => {
                self.advance();
                self.unary()
            }
            Tok::Minus => {
                self.advance();
                let inner = self.unary()?;
                self.node(offset, inner.depth, Expr::Negate(Box::new(inner)))
            }
            Tok::Not => {
                self.advance();
                let inner_offset = self.offset();
                let inner = self.unary()?;
                let inner = self.as_boolean(inner_offset, inner)?;
                self.not(offset, inner)
            }
            _ => self.primary(),
        }
    }

    /// `primaryExpr`: a literal, a property or a parenthesised expression.
    fn primary(&mut self) -> Result<Node, FilterError> {
        let offset = self.offset();
        let literal = match self.peek() {
            Tok::LParen => {
                self.advance();
                let e = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                return Ok(e);
            }
            Tok::Id(name) => {
                let name: Arc<str> = name.as_str().into();
                self.advance();
                return Ok(Node::leaf(Expr::Prop(name)));
            }
            Tok::Str(s) => Literal::Str(s.as_str().into()),
            Tok::True => Literal::Bool(true),
            Tok::False => Literal::Bool(false),
            Tok::Null => Literal::Null,
            Tok::Decimal(text) => decimal_literal(offset, text)?,
            Tok::Float(text) => float_literal(offset, text)?,
            _ => return Err(self.syntax("a literal, a property name, '(', NOT, '+' or '-'")),
        };
        self.advance();
        Ok(Node::leaf(Expr::Const(literal)))
    }

    fn string_literal(&mut self) -> Result<Arc<str>, FilterError> {
        match self.peek() {
            Tok::Str(s) => {
                let s = s.as_str().into();
                self.advance();
                Ok(s)
            }
            _ => Err(self.syntax("a string literal")),
        }
    }
}

/// `createEqual`'s checks: no NULL literal on either side (use `IS NULL`), and a
/// boolean literal on the left only against another boolean literal.
fn check_equal_operands(offset: usize, left: &Node, right: &Node) -> Result<(), FilterError> {
    let invalid = |reason: String| Err(FilterError::Invalid { offset, reason });
    if left.constant() == Some(&Literal::Null) || right.constant() == Some(&Literal::Null) {
        return invalid("NULL cannot be compared with '=' or '<>'; use IS NULL".into());
    }
    if let (Some(l @ Literal::Bool(_)), Some(r)) = (left.constant(), right.constant()) {
        if !matches!(r, Literal::Bool(_)) {
            return invalid(format!("{l} cannot be compared with {r}"));
        }
    }
    Ok(())
}

/// `ConstantExpression.createFromDecimal`: an `Integer` when it fits, else a `Long`;
/// beyond `Long` the literal is refused.
fn decimal_literal(offset: usize, text: &str) -> Result<Literal, FilterError> {
    let digits = text.strip_suffix(['l', 'L']).unwrap_or(text);
    let value: i64 = digits.parse().map_err(|_| FilterError::NumberOutOfRange {
        offset,
        literal: text.to_owned(),
    })?;
    Ok(match i32::try_from(value) {
        Ok(i) => Literal::Int(i),
        Err(_) => Literal::Long(value),
    })
}

/// `ConstantExpression.createFloat`: a `Double`, refused when infinite or below
/// `Double.MIN_VALUE` (which, literals being unsigned, means zero, `0.0` included).
fn float_literal(offset: usize, text: &str) -> Result<Literal, FilterError> {
    let out_of_range = || FilterError::NumberOutOfRange {
        offset,
        literal: text.to_owned(),
    };
    let value: f64 = text.parse().map_err(|_| out_of_range())?;
    if value.is_infinite() || value < f64::from_bits(1) {
        return Err(out_of_range());
    }
    Ok(Literal::Double(value))
}

// ---------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------

/// A compiled SQL92 filter expression. Cheap to clone (the tree is shared).
#[derive(Debug, Clone)]
pub struct Sql92Filter {
    root: Arc<Node>,
}

impl Sql92Filter {
    /// Compiles an expression, refusing exactly what RocketMQ refuses (plus trailing
    /// input and nesting beyond [`MAX_DEPTH`]); the error says where and what was
    /// expected.
    pub fn compile(expression: &str) -> Result<Self, FilterError> {
        let tokens = tokenize(expression)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            nesting: 0,
        };
        let root = parser.selector()?;
        Ok(Sql92Filter {
            root: Arc::new(root),
        })
    }

    /// Whether a message with these raw properties (`name\x01value\x02...`) matches:
    /// true only when the expression evaluates to TRUE (not FALSE, not NULL, and no
    /// failed conversion along the way).
    pub fn matches(&self, properties: &[u8]) -> bool {
        self.root.eval(properties) == Ok(Value::Bool(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (name, value) in pairs {
            raw.extend_from_slice(name.as_bytes());
            raw.push(1);
            raw.extend_from_slice(value.as_bytes());
            raw.push(2);
        }
        raw
    }

    /// An expression, a message's properties, and whether it matches.
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);

    fn check(expression: &str, pairs: &[(&str, &str)], want: bool) {
        let filter = Sql92Filter::compile(expression)
            .unwrap_or_else(|e| panic!("{expression:?} did not compile: {e}"));
        assert_eq!(
            filter.matches(&props(pairs)),
            want,
            "{expression:?} with {pairs:?}"
        );
    }

    #[test]
    fn evaluates_like_rocketmq() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Strings, equality, and NULL (a missing property) on either side.
            ("a = 'x'", &[("a", "x")], true),
            ("a = 'x'", &[("a", "y")], false),
            ("a = 'x'", &[], false),
            ("a <> 'x'", &[("a", "y")], true),
            ("a <> 'x'", &[], false),
            // Java's equality is asymmetric: NULL on the right is FALSE, not NULL.
            ("'x' = a", &[], false),
            ("'x' <> a", &[], true),
            ("a = b", &[], true),
            ("a = b", &[("a", "10"), ("b", "10.0")], false),
            ("a = 'it''s'", &[("a", "it's")], true),
            ("a = ''''", &[("a", "'")], true),
            ("a = 'héllo ✓'", &[("a", "héllo ✓")], true),
            ("TAGS = 'TagA'", &[("TAGS", "TagA")], true),
            ("TAGS = 'TagA'", &[("tags", "TagA")], false),
            // Numbers: the property is parsed as the literal's type.
            ("a > 5", &[("a", "10")], true),
            ("a > 5", &[("a", "5")], false),
            ("a >= 5", &[("a", "5")], true),
            ("a < 5", &[("a", "-3")], true),
            ("a <= -3", &[("a", "-3")], true),
            ("a > -5", &[("a", "-4")], true),
            ("a = 5", &[("a", "05")], true),
            ("a = 5", &[("a", "+5")], true),
            ("a = 5L", &[("a", "5")], true),
            ("5 = a", &[("a", "5")], true),
            ("a > 5", &[("a", "abc")], false),
            ("a <> 5", &[("a", "abc")], false),
            // Integer.valueOf: no decimals, no spaces, int range.
            ("a > 5", &[("a", "5.5")], false),
            ("a > 5", &[("a", " 10")], false),
            ("a = 5", &[("a", "2147483648")], false),
            ("a = 2147483648", &[("a", "2147483648")], true),
            ("a > 3000000000", &[("a", "4000000000")], true),
            ("a > 3000000000", &[("a", "5")], false),
            // Double.valueOf: trims, takes exponents, suffixes and NaN (the greatest).
            ("a > 5.0", &[("a", "5.5")], true),
            ("a > 5.0", &[("a", " 10 ")], true),
            ("a = 5.0", &[("a", "5")], true),
            ("a = 1.5E1", &[("a", "15")], true),
            ("a > .5", &[("a", "1")], true),
            ("a > 5.0", &[("a", "6f")], true),
            ("a > 5.0", &[("a", "NaN")], true),
            ("a > 5.0", &[("a", "nan")], false),
            ("1 = 1.0", &[], true),
            ("3000000000 > 2.5", &[], true),
            // Two properties are ordered as doubles, equated as strings.
            ("a > b", &[("a", "10"), ("b", "9")], true),
            ("a > b", &[("a", "1e3"), ("b", "999")], true),
            ("a > b", &[("a", "x"), ("b", "9")], false),
            ("a > b", &[("a", "10")], false),
            // Unary minus works on numbers only.
            ("-a > 5", &[("a", "-10")], false),
            ("- -5 = 5", &[], true),
            ("a = -'x'", &[], true),
            // BETWEEN and NOT BETWEEN.
            ("a BETWEEN 1 AND 10", &[("a", "5")], true),
            ("a BETWEEN 1 AND 10", &[("a", "10")], true),
            ("a BETWEEN 1 AND 10", &[("a", "11")], false),
            ("a BETWEEN 1 AND 10", &[], false),
            ("a BETWEEN -1 AND 1", &[("a", "0")], true),
            ("a BETWEEN 1.5 AND 2.0", &[("a", "1.75")], true),
            // Each bound converts the property to its own type: "1.75" is no Integer.
            ("a BETWEEN 1.5 AND 2", &[("a", "1.75")], false),
            ("a NOT BETWEEN 1 AND 10", &[("a", "11")], true),
            ("a NOT BETWEEN 1 AND 10", &[("a", "5")], false),
            ("a NOT BETWEEN 1 AND 10", &[], false),
            ("a BETWEEN 1 AND 10 AND b = 'x'", &[("a", "5"), ("b", "x")], true),
            ("a BETWEEN 1 AND 10 AND b = 'x'", &[("a", "5"), ("b", "y")], false),
            // IN and NOT IN.
            ("a IN ('x', 'y')", &[("a", "y")], true),
            ("a IN ('x', 'y')", &[("a", "z")], false),
            ("a IN ('x', 'y')", &[], false),
            ("a IN ('1', '2', '3', '4', '5', '6')", &[("a", "6")], true),
            ("a NOT IN ('x', 'y')", &[("a", "z")], true),
            ("a NOT IN ('x', 'y')", &[("a", "x")], false),
            ("a NOT IN ('x', 'y')", &[], false),
            ("NOT (a IN ('x'))", &[], false),
            ("(a) IN ('x')", &[("a", "x")], true),
            ("+a IN ('x')", &[("a", "x")], true),
            // IS [NOT] NULL.
            ("a IS NULL", &[], true),
            ("a IS NULL", &[("a", "x")], false),
            ("a IS NOT NULL", &[("a", "x")], true),
            ("a IS NOT NULL", &[], false),
            ("NULL IS NULL", &[], true),
            ("5 IS NOT NULL", &[], true),
            // CONTAINS, STARTSWITH, ENDSWITH: missing is FALSE even when negated.
            ("a CONTAINS 'bc'", &[("a", "abcd")], true),
            ("a CONTAINS 'bc'", &[("a", "acbd")], false),
            ("a NOT CONTAINS 'bc'", &[("a", "xyz")], true),
            ("a NOT CONTAINS 'bc'", &[], false),
            ("NOT (a CONTAINS 'bc')", &[], true),
            ("a CONTAINS ''", &[("a", "abc")], false),
            ("a NOT CONTAINS ''", &[("a", "abc")], false),
            ("a STARTSWITH 'ab'", &[("a", "abc")], true),
            ("a NOT STARTSWITH 'ab'", &[("a", "abc")], false),
            ("a NOT STARTSWITH 'ab'", &[("a", "cab")], true),
            ("a ENDSWITH 'bc'", &[("a", "abc")], true),
            ("a NOT ENDSWITH 'bc'", &[("a", "abd")], true),
            ("5 CONTAINS '5'", &[], false),
            // Booleans.
            ("TRUE", &[], true),
            ("FALSE", &[], false),
            ("NULL", &[], false),
            ("NOT FALSE", &[], true),
            ("NOT NULL", &[], false),
            ("TRUE = FALSE", &[], false),
            ("1 = TRUE", &[], false),
            ("'true' = TRUE", &[], true),
            ("a = TRUE", &[("a", "TrUe")], true),
            ("a = FALSE", &[("a", "yes")], true),
            ("TRUE = a", &[("a", "true")], false),
            // A bare property is a condition that is never TRUE (a string is not a
            // Boolean), so NOT of a present property is TRUE.
            ("a", &[("a", "true")], false),
            ("NOT a", &[("a", "x")], true),
            ("NOT a", &[], false),
            ("a AND TRUE", &[("a", "true")], false),
            // Three-valued logic.
            ("a = 'x' OR TRUE", &[], true),
            ("a = 'x' AND FALSE", &[], false),
            ("a = 'x' AND TRUE", &[], false),
            ("NOT (a = 'x' AND TRUE)", &[], false),
            ("NOT (a = 'x' AND FALSE)", &[], true),
            ("NOT (a = 'x' OR FALSE)", &[], false),
            ("NOT (NOT (a = 'x'))", &[], false),
            // A failed conversion abandons the whole evaluation, unless short-circuited.
            ("a > 5 OR b = 'y'", &[("a", "abc"), ("b", "y")], false),
            ("b = 'y' OR a > 5", &[("a", "abc"), ("b", "y")], true),
            ("b = 'y' AND a > 5", &[("a", "abc"), ("b", "z")], false),
            ("NOT (a > 5)", &[("a", "abc")], false),
            ("a IS NULL OR a > 5", &[("a", "abc")], false),
            // Precedence: unary NOT, then comparisons, then equality, AND, OR.
            ("a = '1' OR b = '1' AND c = '1'", &[("a", "1")], true),
            ("(a = '1' OR b = '1') AND c = '1'", &[("a", "1")], false),
            ("a = '1' AND b = '1' OR c = '1'", &[("c", "1")], true),
            ("a = '1' AND (b = '1' OR c = '1')", &[("c", "1")], false),
            ("NOT a = 'x'", &[("a", "x")], false),
            ("NOT a = 'x'", &[("a", "y")], false),
            ("NOT (a = 'x')", &[("a", "y")], true),
            ("NOT a = 'x' OR b = 'y'", &[("a", "y"), ("b", "y")], false),
            ("b = 'y' OR NOT a = 'x'", &[("a", "y"), ("b", "y")], true),
            ("a = 'x' = TRUE", &[("a", "x")], true),
            ("a > 1 = TRUE", &[("a", "2")], true),
            ("a > 1 CONTAINS 'x'", &[("a", "2")], false),
            // Keywords in any case, comments, whitespace.
            ("a = 'x' and b is not null", &[("a", "x"), ("b", "1")], true),
            ("a BeTwEeN 1 aNd 3", &[("a", "2")], true),
            ("a not in ('x') Or true", &[("a", "x")], true),
            ("a contains 'b' AND a startsWith 'a' and a ENDSWITH 'c'", &[("a", "abc")], true),
            ("tRuE", &[], true),
            ("/* leading */ a = 'x' -- trailing\n", &[("a", "x")], true),
            ("a\t=\r\n'x'\x0c", &[("a", "x")], true),
            // Identifiers: letters, digits, '_' and '$', case-sensitive.
            ("$a_1 = 'x'", &[("$a_1", "x")], true),
            ("_ = 'x'", &[("_", "x")], true),
            ("Notes = 'x'", &[("Notes", "x")], true),
        ];
        assert!(cases.len() >= 40);
        for (expression, pairs, want) in cases {
            check(expression, pairs, *want);
        }
    }

    #[test]
    fn properties_are_read_like_the_broker_does() {
        let filter = Sql92Filter::compile("a = 'y'").unwrap();
        // The last occurrence wins, as in Java's map.
        assert!(filter.matches(b"a\x01x\x02a\x01y"));
        assert!(!filter.matches(b"a\x01y\x02a\x01x\x02"));
        // Empty values and malformed entries are no property at all.
        let null = Sql92Filter::compile("a IS NULL").unwrap();
        assert!(null.matches(b""));
        assert!(null.matches(b"a\x01\x02"));
        assert!(null.matches(b"a\x02b\x01c"));
        assert!(!null.matches(b"b\x01c\x02a\x01v"));
    }

    #[test]
    fn refuses_what_rocketmq_refuses() {
        let bad = [
            // Syntax.
            "",
            "   ",
            "-- only a comment\n",
            "(a = 'x'",
            "((a = 'x')",
            "a = 'x')",
            "a = 'x' AND",
            "AND a = 'x'",
            "a = 'x' OR OR b = 'y'",
            "a =",
            "= 'x'",
            "a == 'x'",
            "a != 'x'",
            "a LIKE 'x%'",
            "a = 'x' b = 'y'",
            "a NOT = 'x'",
            "a IS 5",
            "a IS NOT 5",
            "a BETWEEN 1",
            "a BETWEEN 1 OR 2",
            "a IN ()",
            "a IN ('x',)",
            "a IN ('x'",
            "a IN 'x'",
            "a IN (1, 2)",
            "a CONTAINS 5",
            "a CONTAINS b",
            "()",
            "a.b = 'x'",
            // Lexical.
            "a = 'abc",
            "a = 'x''",
            "a # 1",
            "a = \"x\"",
            "a = 'x' /* unterminated",
            "a = 1.2.3",
            "a = 007",
            "a = .",
            "a = 'x' -- no line end",
            "a\u{a0}= 'x'",
            // Literals out of range.
            "a = 9223372036854775808",
            "a = 99999999999999999999",
            "a = 0.0",
            "a = 1e400",
            "a = 1e-400",
            // Rejected by RocketMQ's checks.
            "'abc'",
            "5",
            "-a",
            "a = NULL",
            "NULL = a",
            "a <> NULL",
            "TRUE = 'x'",
            "TRUE = 1",
            "a > 'x'",
            "'x' < a",
            "a > TRUE",
            "a >= NULL",
            "a > (b = 1)",
            "a > 1 > 2",
            "NOT 5",
            "NOT 'x'",
            "NOT -a",
            "5 AND TRUE",
            "TRUE OR 'x'",
            "5 IN ('x')",
            "-a IN ('x')",
            "'a' IN ('x')",
            "a BETWEEN 10 AND 1",
            "a BETWEEN NULL AND 1",
            "a BETWEEN 1 AND NULL",
            "a BETWEEN 'a' AND 'b'",
            "a BETWEEN 1 AND 'b'",
            "a BETWEEN FALSE AND TRUE",
            "a NOT BETWEEN 'a' AND 'b'",
        ];
        for expression in bad {
            let result = Sql92Filter::compile(expression);
            assert!(result.is_err(), "{expression:?} compiled: {result:?}");
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let err = Sql92Filter::compile("a = 'x' AND").unwrap_err();
        assert!(
            matches!(err, FilterError::Syntax { offset: 11, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("end of input"), "{err}");
        let err = Sql92Filter::compile("a = # 1").unwrap_err();
        assert_eq!(
            err,
            FilterError::InvalidCharacter {
                offset: 4,
                found: '#'
            }
        );
        let err = Sql92Filter::compile("(a = 'x'").unwrap_err();
        assert!(err.to_string().contains("')'"), "{err}");
        let err = Sql92Filter::compile("a > 'x'").unwrap_err();
        assert!(
            matches!(err, FilterError::Invalid { offset: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |n: usize| format!("{}a = 'x'{}", "(".repeat(n), ")".repeat(n));
        check(&nested(MAX_NESTING - 1), &[("a", "x")], true);
        let err = Sql92Filter::compile(&nested(MAX_NESTING)).unwrap_err();
        assert!(matches!(err, FilterError::TooDeep { .. }), "{err:?}");
        assert!(Sql92Filter::compile(&nested(100_000)).is_err());

        let nots = |n: usize| format!("{}a = 'x'", "NOT ".repeat(n));
        check(&nots(MAX_NESTING - 2), &[("a", "x")], false);
        assert!(Sql92Filter::compile(&nots(MAX_NESTING)).is_err());
        assert!(Sql92Filter::compile(&format!("{}a", "NOT ".repeat(100_000))).is_err());
        assert!(Sql92Filter::compile(&format!("{}5 > 1", "-".repeat(100_000))).is_err());
        assert!(Sql92Filter::compile(&format!("{}TRUE", "+".repeat(100_000))).is_err());

        // Chained operators deepen the tree without recursing in the parser.
        let chain = |n: usize| format!("a = 'x'{}", " = TRUE".repeat(n));
        check(&chain(MAX_DEPTH - 2), &[("a", "x")], true);
        let err = Sql92Filter::compile(&chain(MAX_DEPTH)).unwrap_err();
        assert!(matches!(err, FilterError::TooDeep { .. }), "{err:?}");
        assert!(Sql92Filter::compile(&format!("a{}", " IS NULL".repeat(300))).is_err());
        assert!(Sql92Filter::compile(&format!("a{}", " CONTAINS 'x'".repeat(300))).is_err());

        // Long AND/OR chains are flat, so they are fine at any length.
        let or = vec!["TAGS = 'x'"; 10_000].join(" OR ") + " OR TAGS = 'y'";
        check(&or, &[("TAGS", "y")], true);
        let and = vec!["a IS NOT NULL"; 10_000].join(" AND ");
        check(&and, &[("a", "1")], true);
        check(&and, &[], false);
    }

    #[test]
    fn deepest_expressions_fit_a_small_stack() {
        // At the limits, parsing and evaluating fit in 1 MiB even in a debug build.
        let deepest = [
            format!(
                "{}a = 'x'{}",
                "(".repeat(MAX_NESTING - 1),
                ")".repeat(MAX_NESTING - 1)
            ),
            format!("{}a = 'x'", "NOT ".repeat(MAX_NESTING - 2)),
            format!("a = 'x'{}", " = TRUE".repeat(MAX_DEPTH - 2)),
            format!(
                "{}a = 'x'{}{}",
                "(".repeat(MAX_NESTING - 1),
                " = TRUE".repeat(MAX_DEPTH - MAX_NESTING - 2),
                ")".repeat(MAX_NESTING - 1)
            ),
        ];
        for expression in deepest {
            std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || {
                    let filter = Sql92Filter::compile(&expression).unwrap();
                    filter.matches(b"a\x01x")
                })
                .unwrap()
                .join()
                .unwrap();
        }
    }

    #[test]
    fn filters_are_shareable() {
        fn assert_send_sync_clone<T: Send + Sync + Clone + std::fmt::Debug>() {}
        assert_send_sync_clone::<Sql92Filter>();
        assert_send_sync_clone::<FilterError>();
    }

    /// Fragments that make random strings likely to be almost-valid expressions.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("TAGS".to_owned()),
            Just(" ".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("'x'".to_owned()),
            Just("''''".to_owned()),
            Just("'".to_owned()),
            Just("5".to_owned()),
            Just("5L".to_owned()),
            Just("1.5e3".to_owned()),
            Just(".5".to_owned()),
            Just("0".to_owned()),
            Just("-".to_owned()),
            Just("+".to_owned()),
            Just(",".to_owned()),
            Just("--".to_owned()),
            Just("/*".to_owned()),
            Just("*/".to_owned()),
            Just("\n".to_owned()),
            Just("=".to_owned()),
            Just("<>".to_owned()),
            Just(">".to_owned()),
            Just(">=".to_owned()),
            Just("<".to_owned()),
            Just("<=".to_owned()),
            Just("NOT".to_owned()),
            Just("AND".to_owned()),
            Just("OR".to_owned()),
            Just("BETWEEN".to_owned()),
            Just("IN".to_owned()),
            Just("IS".to_owned()),
            Just("NULL".to_owned()),
            Just("TRUE".to_owned()),
            Just("false".to_owned()),
            Just("CONTAINS".to_owned()),
            Just("STARTSWITH".to_owned()),
            Just("ENDSWITH".to_owned()),
            "\\PC{0,3}",
        ]
    }

    const SAMPLE_EXPRESSIONS: [&str; 12] = [
        "a > 5 OR b = 'y'",
        "a = b",
        "a BETWEEN 1.5 AND 3000000000",
        "a NOT IN ('x', 'y') AND b IS NOT NULL",
        "a CONTAINS 'x' OR NOT (b STARTSWITH 'y') OR c NOT ENDSWITH 'z'",
        "a",
        "NOT a",
        "a = TRUE OR a = 5.0 OR a = 5 OR a = 3000000000",
        "-a < -b",
        "a > b",
        "'x' <> a",
        "a = 'x' = (b > 1)",
    ];

    proptest! {
        #[test]
        fn compile_never_panics(s in "\\PC{0,64}") {
            let _ = Sql92Filter::compile(&s);
        }

        #[test]
        fn compile_never_panics_on_near_misses(parts in proptest::collection::vec(fragment(), 0..24)) {
            let s = parts.join(" ");
            if let Ok(filter) = Sql92Filter::compile(&s) {
                let _ = filter.matches(b"a\x015\x02b\x01x\x02TAGS\x01x");
                let _ = filter.matches(b"");
            }
            let _ = Sql92Filter::compile(&parts.concat());
        }

        #[test]
        fn matches_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..128)) {
            for expression in SAMPLE_EXPRESSIONS {
                let _ = Sql92Filter::compile(expression).unwrap().matches(&raw);
            }
        }

        #[test]
        fn matches_never_panics_on_odd_values(
            a in prop_oneof!["\\PC{0,12}", "[-+ ]?[0-9.eE]{0,12}[fd]?", "0x[0-9a-f.]{0,8}p-?[0-9]{0,5}"],
            b in "\\PC{0,12}",
        ) {
            let raw = props(&[("a", &a), ("b", &b), ("c", "z")]);
            for expression in SAMPLE_EXPRESSIONS {
                let _ = Sql92Filter::compile(expression).unwrap().matches(&raw);
            }
        }

        #[test]
        fn integer_comparison_agrees_with_parsing(v in any::<i64>(), n in any::<i32>()) {
            let filter = Sql92Filter::compile(&format!("a > {}", n.unsigned_abs())).unwrap();
            let value = v.to_string();
            let want = i32::try_from(v).is_ok_and(|v| i64::from(v) > i64::from(n.unsigned_abs()));
            // Literals beyond i32 are Longs: then any i64 value parses.
            let want = if n.unsigned_abs() > i32::MAX as u32 { v > i64::from(n.unsigned_abs()) } else { want };
            prop_assert_eq!(filter.matches(&props(&[("a", &value)])), want);
        }
    }
}
