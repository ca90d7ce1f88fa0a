//! Python literals as `ast.literal_eval` reads them: the language of a
//! `.npy` header.
//!
//! numpy parses a header with `ast.literal_eval` (numpy/lib/_format_impl.py,
//! `_read_array_header`), so "what numpy accepts" is what that function
//! accepts, then numpy's checks on the result. This module reproduces the
//! first half for the node types `literal_eval` allows (constants, tuples,
//! lists, sets, dicts, `set()`, one sign on a number, `real ± imag`),
//! with Python's tokenizer rules for the tokens they are made of: string
//! prefixes, escapes and implicit concatenation, number forms with
//! underscores, comments, line continuations and bracketed line joining.
//! Anything else is refused, as `literal_eval` refuses it.
//!
//! One divergence, on the safe side: `\N{NAME}` escapes (which need the
//! Unicode name table) are refused.

/// A value `literal_eval` can return. Floats and complex numbers carry no
/// value: no accepted header uses one where numpy looks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Bytes(Vec<u8>),
    /// An int, or `None` if it does not fit in `i128`.
    Int(Option<i128>),
    Bool(bool),
    Float,
    Complex,
    /// Python's `None`.
    Nothing,
    Ellipsis,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Set(Vec<Value>),
    /// Entries in source order, duplicates kept (the last one wins in Python).
    Dict(Vec<(Value, Value)>),
}

/// Why a text is not a literal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LiteralError {
    /// Python would raise `SyntaxError` (numpy then retries old headers
    /// with Python 2 `L` suffixes removed).
    Syntax(String),
    /// Valid syntax that `literal_eval` refuses (`ValueError`, `TypeError`).
    NotLiteral(String),
}

/// Parses `text` as `ast.literal_eval(text)` would; with `py2_filter`, as
/// it would after numpy's `_filter_header` (tried on format 1.0 and 2.0
/// headers that fail first): that drops an `L` right after a number
/// (Python 2 longs) and, rebuilding the text from its tokens, a trailing
/// line of blanks.
pub(crate) fn literal_eval(text: &str, py2_filter: bool) -> Result<Value, LiteralError> {
    // literal_eval strips leading blanks and tabs (not form feeds) first.
    let chars: Vec<char> = text.trim_start_matches([' ', '\t']).chars().collect();
    if chars.contains(&'\0') {
        return Err(LiteralError::NotLiteral("the header holds a NUL character".into()));
    }
    let mut p = Parser { s: &chars, i: 0, depth: 0, py2_filter, first_line: true };
    loop {
        match p.line_start()? {
            Line::Blank => continue,
            Line::End => return Err(p.syntax("the header is empty")),
            Line::Token => break,
        }
    }
    let node = p.expr()?;
    p.skip_trivia()?;
    // Only blank lines and comments may follow the expression.
    if p.i < p.s.len() && !p.newline() {
        return Err(p.syntax("unexpected text after the header's dict"));
    }
    while p.i < p.s.len() {
        if p.line_start()? == Line::Token {
            return Err(p.syntax("unexpected text after the header's dict"));
        }
    }
    eval(node)
}

/// What the start of a physical line outside brackets holds.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Only blanks or a comment; consumed up to the next line.
    Blank,
    /// The end of the text.
    End,
    /// A token, at which the parser now stands.
    Token,
}

/// Deepest bracket nesting Python's tokenizer accepts.
const MAX_NESTING: usize = 200;

/// A parsed expression, before `literal_eval`'s node checks.
#[derive(Debug)]
enum Node {
    Const(Value),
    Name(String),
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Set(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    Call(Box<Node>),
    Sign(bool, Box<Node>),
    AddSub(Box<Node>, Box<Node>),
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
    /// Bracket nesting: inside brackets, newlines are plain whitespace.
    depth: usize,
    py2_filter: bool,
    /// Still on the text's first physical line.
    first_line: bool,
}

fn is_ident(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl Parser<'_> {
    fn syntax(&self, what: &str) -> LiteralError {
        LiteralError::Syntax(format!("{what} at character {}", self.i))
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    /// Consumes one newline (`\n`, `\r\n` or `\r`); false if none is here.
    fn newline(&mut self) -> bool {
        match self.peek() {
            Some('\r') if self.peek_at(1) == Some('\n') => self.i += 2,
            Some('\n' | '\r') => self.i += 1,
            _ => return false,
        }
        true
    }

    /// Skips blanks, comments and line continuations; inside brackets
    /// also newlines.
    fn skip_trivia(&mut self) -> Result<(), LiteralError> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\x0c') => self.i += 1,
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
                        self.i += 1;
                    }
                }
                Some('\\') => {
                    self.i += 1;
                    if !self.newline() {
                        return Err(self.syntax("unexpected character after line continuation"));
                    }
                    if self.peek().is_none() {
                        return Err(self.syntax("unexpected EOF while parsing"));
                    }
                }
                Some('\n' | '\r') if self.depth > 0 => drop(self.newline()),
                _ => return Ok(()),
            }
        }
    }

    /// At the start of a physical line outside brackets, Python's tokenizer
    /// measures its indentation (a form feed resets it), skips it if the
    /// line is blank or a comment, and otherwise refuses any indentation
    /// ("unexpected indent"), also for a last line of blanks with no newline.
    fn line_start(&mut self) -> Result<Line, LiteralError> {
        // numpy's filter rebuilds the first line's indentation as blanks,
        // which literal_eval strips.
        let forgiven = self.py2_filter && std::mem::take(&mut self.first_line);
        let mut indent = 0;
        while let Some(c @ (' ' | '\t' | '\x0c')) = self.peek() {
            indent = if c == '\x0c' { 0 } else { indent + 1 };
            self.i += 1;
        }
        match self.peek() {
            Some('#') => {
                while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
                    self.i += 1;
                }
                Ok(if self.newline() { Line::Blank } else { Line::End })
            }
            Some('\n' | '\r') => {
                self.newline();
                Ok(Line::Blank)
            }
            // numpy's filter re-tokenizes the text and rebuilds it from its
            // tokens, which drops a last line of blanks.
            None if self.py2_filter => Ok(Line::End),
            _ if indent > 0 && !forgiven => Err(self.syntax("unexpected indent")),
            None => Ok(Line::End),
            Some(_) => Ok(Line::Token),
        }
    }

    fn eat(&mut self, c: char) -> Result<bool, LiteralError> {
        self.skip_trivia()?;
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        Ok(hit)
    }

    fn expect(&mut self, c: char) -> Result<(), LiteralError> {
        match self.eat(c)? {
            true => Ok(()),
            false => Err(self.syntax(&format!("expected '{c}'"))),
        }
    }

    /// `term (('+' | '-') term)*`
    fn expr(&mut self) -> Result<Node, LiteralError> {
        let mut left = self.term()?;
        loop {
            self.skip_trivia()?;
            match self.peek() {
                Some('+' | '-') if self.peek_at(1) != Some('=') => {
                    self.i += 1;
                    let right = self.term()?;
                    left = Node::AddSub(Box::new(left), Box::new(right));
                }
                _ => return Ok(left),
            }
        }
    }

    /// `('+' | '-')* primary`; a run of signs is read in a loop, not by
    /// recursion, and more than one is refused by `eval` anyway.
    fn term(&mut self) -> Result<Node, LiteralError> {
        let mut signs = Vec::new();
        loop {
            self.skip_trivia()?;
            match self.peek() {
                // literal_eval takes one sign, never two: refuse long runs here
                // rather than build (and later drop) a deep chain of nodes.
                Some(_) if signs.len() == 2 => return Err(not_literal("more than one sign")),
                Some(c @ ('+' | '-')) => {
                    self.i += 1;
                    signs.push(c == '-');
                }
                _ => break,
            }
        }
        let node = self.primary()?;
        Ok(signs.into_iter().rev().fold(node, |n, negative| Node::Sign(negative, Box::new(n))))
    }

    /// Opens a bracket, refusing nesting deeper than Python's tokenizer
    /// allows (`MAXLEVEL`, 200): the parser recurses per level, and a
    /// header of 10 000 `(` must not overflow the stack.
    fn open_bracket(&mut self) -> Result<(), LiteralError> {
        if self.depth >= MAX_NESTING {
            return Err(self.syntax("too many nested parentheses"));
        }
        self.depth += 1;
        Ok(())
    }

    /// An atom, then any number of `()` calls.
    fn primary(&mut self) -> Result<Node, LiteralError> {
        let mut node = self.atom()?;
        while self.eat('(')? {
            if matches!(node, Node::Call(_)) {
                return Err(not_literal("a call of a call")); // only `set()` is a literal
            }
            self.open_bracket()?;
            self.expect(')')?;
            self.depth -= 1;
            node = Node::Call(Box::new(node));
        }
        Ok(node)
    }

    fn atom(&mut self) -> Result<Node, LiteralError> {
        self.skip_trivia()?;
        let Some(c) = self.peek() else { return Err(self.syntax("unexpected end of header")) };
        match c {
            '(' => self.bracketed(')').map(|(items, trailing_comma)| match (items.len(), trailing_comma) {
                (1, false) => items.into_iter().next().expect("one item"),
                _ => Node::Tuple(items),
            }),
            '[' => self.bracketed(']').map(|(items, _)| Node::List(items)),
            '{' => self.braced(),
            '.' if self.peek_at(1) == Some('.') && self.peek_at(2) == Some('.') => {
                self.i += 3;
                Ok(Node::Const(Value::Ellipsis))
            }
            '0'..='9' | '.' => self.number(),
            _ if self.string_starts() => self.strings(),
            _ if is_ident(c) => {
                let start = self.i;
                while self.peek().is_some_and(is_ident) {
                    self.i += 1;
                }
                let word: String = self.s[start..self.i].iter().collect();
                Ok(match word.as_str() {
                    "True" => Node::Const(Value::Bool(true)),
                    "False" => Node::Const(Value::Bool(false)),
                    "None" => Node::Const(Value::Nothing),
                    _ => Node::Name(word),
                })
            }
            _ => Err(self.syntax(&format!("unexpected character {c:?}"))),
        }
    }

    /// Comma-separated expressions up to `close`; also whether a comma
    /// came last (what makes `(x,)` a tuple).
    fn bracketed(&mut self, close: char) -> Result<(Vec<Node>, bool), LiteralError> {
        self.i += 1;
        self.open_bracket()?;
        let mut items = Vec::new();
        let mut trailing_comma = false;
        while !self.eat(close)? {
            items.push(self.expr()?);
            trailing_comma = self.eat(',')?;
            if !trailing_comma {
                self.expect(close)?;
                break;
            }
        }
        self.depth -= 1;
        Ok((items, trailing_comma))
    }

    /// A dict display, or a set display.
    fn braced(&mut self) -> Result<Node, LiteralError> {
        self.i += 1;
        self.open_bracket()?;
        let mut entries = Vec::new();
        let mut set = Vec::new();
        while !self.eat('}')? {
            let key = self.expr()?;
            let is_entry = self.eat(':')?;
            if (is_entry && !set.is_empty()) || (!is_entry && !entries.is_empty()) {
                return Err(self.syntax("a dict and a set mixed in one display"));
            }
            match is_entry {
                true => entries.push((key, self.expr()?)),
                false => set.push(key),
            }
            if !self.eat(',')? {
                self.expect('}')?;
                break;
            }
        }
        self.depth -= 1;
        Ok(if set.is_empty() { Node::Dict(entries) } else { Node::Set(set) })
    }

    fn string_starts(&self) -> bool {
        let prefix = self.s[self.i..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
        prefix <= 2 && matches!(self.peek_at(prefix), Some('\'' | '"'))
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Result<Node, LiteralError> {
        let mut text: Option<String> = None;
        let mut bytes: Option<Vec<u8>> = None;
        loop {
            self.skip_trivia()?;
            if !self.string_starts() {
                break;
            }
            match self.string()? {
                Piece::Str(s) if bytes.is_none() => text.get_or_insert_with(String::new).push_str(&s),
                Piece::Bytes(b) if text.is_none() => bytes.get_or_insert_with(Vec::new).extend(b),
                Piece::FString => return Err(LiteralError::NotLiteral("f-strings are not literals".into())),
                _ => return Err(self.syntax("cannot mix bytes and nonbytes literals")),
            }
        }
        Ok(Node::Const(match (text, bytes) {
            (Some(s), _) => Value::Str(s),
            (_, Some(b)) => Value::Bytes(b),
            _ => return Err(self.syntax("expected a string")),
        }))
    }

    fn string(&mut self) -> Result<Piece, LiteralError> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        let prefix: String = self.s[start..self.i].iter().collect::<String>().to_ascii_lowercase();
        let (raw, is_bytes, is_f) = match prefix.as_str() {
            "" | "u" => (false, false, false),
            "r" => (true, false, false),
            "b" => (false, true, false),
            "br" | "rb" => (true, true, false),
            "f" => (false, false, true),
            "fr" | "rf" => (true, false, true),
            _ => return Err(self.syntax("invalid string prefix")),
        };
        let quote = self.peek().expect("string_starts checked the quote");
        let triple = self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote);
        self.i += if triple { 3 } else { 1 };
        let mut out: Vec<char> = Vec::new();
        loop {
            let Some(c) = self.peek() else { return Err(self.syntax("unterminated string literal")) };
            if c == quote && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote))) {
                self.i += if triple { 3 } else { 1 };
                break;
            }
            if (c == '\n' || c == '\r') && !triple {
                return Err(self.syntax("unterminated string literal"));
            }
            self.i += 1;
            match c {
                '\\' if raw => {
                    // A raw string keeps the backslash, but it still escapes
                    // the next character from ending the string.
                    out.push('\\');
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                '\\' => self.escape(&mut out, is_bytes)?,
                _ if is_bytes && !c.is_ascii() => {
                    return Err(self.syntax("bytes can only contain ASCII literal characters"))
                }
                _ => out.push(c),
            }
        }
        Ok(match (is_f, is_bytes) {
            (true, _) => Piece::FString,
            (false, true) => Piece::Bytes(out.into_iter().map(|c| c as u32 as u8).collect()),
            (false, false) => Piece::Str(out.into_iter().collect()),
        })
    }

    /// The escape after a backslash in a non-raw literal (Python's
    /// `decode_unicode_with_escapes` and `_PyBytes_DecodeEscape`).
    fn escape(&mut self, out: &mut Vec<char>, is_bytes: bool) -> Result<(), LiteralError> {
        let Some(c) = self.peek() else { return Err(self.syntax("unterminated string literal")) };
        self.i += 1;
        let simple = match c {
            '\n' => None,
            '\r' => {
                if self.peek() == Some('\n') {
                    self.i += 1;
                }
                None
            }
            '\\' | '\'' | '"' => Some(c),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '0'..='7' => {
                let mut v = c.to_digit(8).expect("octal digit");
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.i += 1;
                        }
                        None => break,
                    }
                }
                let v = if is_bytes { v & 0xff } else { v };
                Some(char::from_u32(v).expect("at most 0o777"))
            }
            'x' => Some(self.hex_escape(2)?),
            'u' if !is_bytes => Some(self.hex_escape(4)?),
            'U' if !is_bytes => Some(self.hex_escape(8)?),
            'N' if !is_bytes => return Err(LiteralError::NotLiteral("\\N{...} escapes are not supported".into())),
            other => {
                out.push('\\'); // unknown escapes keep their backslash
                Some(other)
            }
        };
        out.extend(simple);
        Ok(())
    }

    fn hex_escape(&mut self, digits: usize) -> Result<char, LiteralError> {
        let hex: String = (0..digits).filter_map(|k| self.peek_at(k)).take_while(char::is_ascii_hexdigit).collect();
        if hex.len() != digits {
            return Err(self.syntax("truncated \\xXX, \\uXXXX or \\UXXXXXXXX escape"));
        }
        self.i += digits;
        let v = u32::from_str_radix(&hex, 16).expect("hex digits");
        match (v, char::from_u32(v)) {
            (_, Some(c)) => Ok(c),
            (0xd800..=0xdfff, None) => Ok('\u{fffd}'), // a lone surrogate: never equal to anything numpy reads
            _ => Err(self.syntax("illegal Unicode character")),
        }
    }

    /// A number token (Python's tokenizer rules, underscores included).
    fn number(&mut self) -> Result<Node, LiteralError> {
        let value = self.number_token()?;
        if self.peek().is_some_and(is_ident) {
            // "3L": a Python 2 long. numpy's `_filter_header` drops the L
            // when it directly follows the number (blanks allowed).
            let mut k = self.i;
            while matches!(self.s.get(k), Some(' ' | '\t' | '\x0c')) {
                k += 1;
            }
            let l_alone = self.s.get(k) == Some(&'L') && !self.s.get(k + 1).is_some_and(|&c| is_ident(c));
            if !(self.py2_filter && l_alone) {
                return Err(self.syntax("invalid decimal literal"));
            }
            self.i = k + 1;
        } else if self.py2_filter {
            let mut k = self.i;
            while matches!(self.s.get(k), Some(' ' | '\t' | '\x0c')) {
                k += 1;
            }
            if self.s.get(k) == Some(&'L') && !self.s.get(k + 1).is_some_and(|&c| is_ident(c)) {
                self.i = k + 1;
            }
        }
        Ok(Node::Const(value))
    }

    fn digits(&mut self, ok: impl Fn(char) -> bool) -> Result<String, LiteralError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if ok(c) {
                out.push(c);
                self.i += 1;
            } else if c == '_' && self.peek_at(1).is_some_and(&ok) && !out.is_empty() {
                self.i += 1;
            } else {
                break;
            }
        }
        Ok(out)
    }

    fn number_token(&mut self) -> Result<Value, LiteralError> {
        let radix = match (self.peek(), self.peek_at(1).map(|c| c.to_ascii_lowercase())) {
            (Some('0'), Some('x')) => 16,
            (Some('0'), Some('o')) => 8,
            (Some('0'), Some('b')) => 2,
            _ => 10,
        };
        if radix != 10 {
            self.i += 2;
            if self.peek() == Some('_') {
                self.i += 1;
            }
            let d = self.digits(|c| c.is_digit(radix))?;
            if d.is_empty() {
                return Err(self.syntax("invalid number literal"));
            }
            return Ok(Value::Int(i128::from_str_radix(&d, radix).ok()));
        }
        let whole = self.digits(|c| c.is_ascii_digit())?;
        let mut float = false;
        // A dot makes a float after digits (`5.`) or before them (`.5`).
        if self.peek() == Some('.') && (!whole.is_empty() || self.peek_at(1).is_some_and(|c| c.is_ascii_digit())) {
            self.i += 1;
            float = true;
            let _fraction = self.digits(|c| c.is_ascii_digit())?;
        }
        if matches!(self.peek(), Some('e' | 'E'))
            && (self.peek_at(1).is_some_and(|c| c.is_ascii_digit())
                || (matches!(self.peek_at(1), Some('+' | '-')) && self.peek_at(2).is_some_and(|c| c.is_ascii_digit())))
        {
            self.i += if matches!(self.peek_at(1), Some('+' | '-')) { 2 } else { 1 };
            float = true;
            let _exponent = self.digits(|c| c.is_ascii_digit())?;
        }
        if matches!(self.peek(), Some('j' | 'J')) {
            self.i += 1;
            return Ok(Value::Complex);
        }
        if float {
            return Ok(Value::Float);
        }
        if whole.len() > 1 && whole.starts_with('0') && whole.bytes().any(|b| b != b'0') {
            return Err(self.syntax("leading zeros in decimal integer literals are not permitted"));
        }
        if whole.len() > 4300 {
            return Err(self.syntax("integer literal exceeds Python's 4300-digit limit"));
        }
        Ok(Value::Int(whole.parse().ok()))
    }
}

/// One string literal, before concatenation.
enum Piece {
    Str(String),
    Bytes(Vec<u8>),
    FString,
}

fn not_literal(what: &str) -> LiteralError {
    LiteralError::NotLiteral(format!("malformed node or string: {what}"))
}

/// `literal_eval`'s `_convert`: which parsed nodes make a value.
fn eval(node: Node) -> Result<Value, LiteralError> {
    match node {
        Node::Const(v) => Ok(v),
        Node::Tuple(items) => Ok(Value::Tuple(items.into_iter().map(eval).collect::<Result<_, _>>()?)),
        Node::List(items) => Ok(Value::List(items.into_iter().map(eval).collect::<Result<_, _>>()?)),
        Node::Set(items) => {
            let items: Vec<Value> = items.into_iter().map(eval).collect::<Result<_, _>>()?;
            match items.iter().all(hashable) {
                true => Ok(Value::Set(items)),
                false => Err(LiteralError::NotLiteral("unhashable set element".into())),
            }
        }
        Node::Dict(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let k = eval(k)?;
                if !hashable(&k) {
                    return Err(LiteralError::NotLiteral("unhashable dict key".into()));
                }
                out.push((k, eval(v)?));
            }
            Ok(Value::Dict(out))
        }
        Node::Call(f) if matches!(&*f, Node::Name(n) if n == "set") => Ok(Value::Set(Vec::new())),
        Node::Sign(negative, x) => signed_number(negative, *x),
        Node::AddSub(left, right) => {
            let left = match *left {
                Node::Sign(negative, x) => signed_number(negative, *x)?,
                other => number(other)?,
            };
            match (left, number(*right)?) {
                (Value::Int(_) | Value::Float, Value::Complex) => Ok(Value::Complex),
                _ => Err(not_literal("only real ± imaginary may be added")),
            }
        }
        Node::Name(n) => Err(not_literal(&n)),
        Node::Call(_) => Err(not_literal("a call")),
    }
}

/// A constant int, float or complex (not a bool), as `_convert_num` wants.
fn number(node: Node) -> Result<Value, LiteralError> {
    match node {
        Node::Const(v @ (Value::Int(_) | Value::Float | Value::Complex)) => Ok(v),
        _ => Err(not_literal("expected a number")),
    }
}

fn signed_number(negative: bool, operand: Node) -> Result<Value, LiteralError> {
    Ok(match number(operand)? {
        Value::Int(Some(n)) if negative => Value::Int(n.checked_neg()),
        other => other,
    })
}

/// True for values Python can hash (dict keys, set elements).
fn hashable(v: &Value) -> bool {
    match v {
        Value::List(_) | Value::Set(_) | Value::Dict(_) => false,
        Value::Tuple(items) => items.iter().all(hashable),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Value {
        literal_eval(text, false).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    #[test]
    fn numpys_own_header_parses() {
        let v = ok("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }          \n");
        let Value::Dict(d) = v else { panic!() };
        assert_eq!(d[2].1, Value::Tuple(vec![Value::Int(Some(3)), Value::Int(Some(4))]));
    }

    #[test]
    fn python_syntax_that_literal_eval_accepts() {
        assert_eq!(ok("'<' \"f\" '8'"), Value::Str("<f8".into()));
        assert_eq!(ok("'\\x3cf8'"), Value::Str("<f8".into()));
        assert_eq!(ok("r'\\x'"), Value::Str("\\x".into()));
        assert_eq!(ok("'''a\nb'''"), Value::Str("a\nb".into()));
        assert_eq!(ok("(0x1_0, 0o7, 0b1, 1_000, -0, +3)"), {
            let i = |n| Value::Int(Some(n));
            Value::Tuple(vec![i(16), i(7), i(1), i(1000), i(0), i(3)])
        });
        assert_eq!(ok("((2),)"), Value::Tuple(vec![Value::Int(Some(2))]));
        assert_eq!(
            ok("{1: 2, # c\n 3: 4}"),
            Value::Dict(vec![(Value::Int(Some(1)), Value::Int(Some(2))), (Value::Int(Some(3)), Value::Int(Some(4)))])
        );
        assert_eq!(ok("1.5e-3"), Value::Float);
        assert_eq!(ok("-1+2j"), Value::Complex);
        assert_eq!(ok("set()"), Value::Set(vec![]));
        assert_eq!(ok("..."), Value::Ellipsis);
        assert_eq!(ok("\n# leading comment\n[1, \\\n 2]"), Value::List(vec![Value::Int(Some(1)), Value::Int(Some(2))]));
        assert_eq!(ok("000"), Value::Int(Some(0)));
        assert_eq!(ok("340282366920938463463374607431768211456"), Value::Int(None));
    }

    #[test]
    fn what_literal_eval_refuses() {
        for bad in [
            "x",
            "f'x'",
            "1 * 2",
            "--1",
            "-True",
            "1+2",
            "1+2j+3",
            "{[1]: 2}",
            "{[1]}",
            "01",
            "0x",
            "1__0",
            "3L",
            "'a' b'b'",
            "b'\u{e9}'",
            "'unterminated",
            "'a\nb'",
            "\n  1",
            "len()",
            "(1, 2",
            "{1: 2, 3}",
            "1 2",
            "'\\N{LESS-THAN SIGN}'",
            "'\\x3'",
            "1\n2",
        ] {
            assert!(literal_eval(bad, false).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn blank_lines_indentation_and_continuations_follow_pythons_tokenizer() {
        for good in ["{}   ", "{}\n  # c", "{}\n   \n", "{}\\\n   ", "\\\n{}", "{}\n\x0c", "\n\x0c{}", " \n{}", "{}\r"]
        {
            assert_eq!(literal_eval(good, false), Ok(Value::Dict(vec![])), "{good:?}");
        }
        for bad in ["{}\n   ", "{}\\\n", "\n  {}", "\x0c  {}", "\n\x0c {}", "{}\r\n  ", "{}\n\\\n", "#c\n  {}", ""] {
            assert!(literal_eval(bad, false).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn deep_nesting_and_long_sign_runs_are_refused_without_recursing() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(literal_eval(&deep, false), Err(LiteralError::Syntax(r)) if r.contains("nested")));
        let ok = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(literal_eval(&ok, false), Ok(Value::Int(Some(1))), "Python allows 200 levels");
        let over = format!("{}1{}", "(".repeat(201), ")".repeat(201));
        assert!(literal_eval(&over, false).is_err(), "and refuses 201");
        let signs = format!("{}1", "-".repeat(10_000));
        assert!(literal_eval(&signs, false).is_err());
        let lists = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(literal_eval(&lists, false).is_err());
    }

    #[test]
    fn python_2_longs_parse_only_through_numpys_filter() {
        assert!(matches!(literal_eval("(3L, 4 L)", false), Err(LiteralError::Syntax(_))));
        assert_eq!(literal_eval("(3L, 4 L)", true), Ok(Value::Tuple(vec![Value::Int(Some(3)), Value::Int(Some(4))])));
        assert!(literal_eval("(3LL,)", true).is_err());
    }
}
